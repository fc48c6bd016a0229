"""The entry of every script: how a ``main(argv=None)`` reports a user's error (one line, exit status 2)
and what a run may change in the interpreter while it runs (undone when it returns)."""
import contextlib
import functools
import sys
import warnings
from pathlib import Path

from ood.errors import UserError
from ood.system import inputs


def cli_main(fn):
    """Decorator for a script's ``main(argv=None)``: turn a UserError into exit status 2, and run it in
    ``script_run`` (the one place where a run changes interpreter-wide state). A run that a launcher's
    job started records the code it ran (ood.system.inputs): the step's marker is keyed on it."""
    @functools.wraps(fn)
    def wrapper(argv=None):
        try:
            with script_run():
                result = fn(argv)
                inputs.note_code()
                return result
        except UserError as e:
            prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "error"
            print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
    return wrapper


@contextlib.contextmanager
def script_run():
    """What a script's run changes in the interpreter, set here at its entry and undone when it returns
    or fails, so that ``main()`` called from Python (tests, a notebook) leaves the interpreter as it was:

    - warnings print as one line, ``warning: <message>``, without the file and source line that point
      into this project's code (the user has nothing to fix there);
    - the current directory is on ``sys.path``, so that ``--score package.module:Class`` and
      ``--model package.module:builder`` find a plug-in module next to where the user runs the script
      (``python script.py`` puts only the script's own folder there). A plug-in imported during the run
      stays in ``sys.modules`` afterwards, as any import does."""
    formatwarning = warnings.formatwarning
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    warnings.formatwarning = lambda message, category, *_: f"warning: {message}\n"
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        warnings.formatwarning = formatwarning
        if added and cwd in sys.path:
            sys.path.remove(cwd)
