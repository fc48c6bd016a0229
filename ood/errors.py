"""Errors a user can cause, and how the command-line front ends report them."""
import functools
import sys
import warnings


class UserError(Exception):
    """Bad input from the user (missing data, wrong path, mismatched checkpoint, unknown name).

    The front ends print the message as one paragraph, without a traceback, and exit with status 2.
    """


def cli_main(fn):
    """Decorator for a script's ``main(argv=None)``: turn a UserError into exit status 2."""
    @functools.wraps(fn)
    def wrapper(argv=None):
        warnings.formatwarning = lambda message, category, *_: f"warning: {message}\n"
        try:
            return fn(argv)
        except UserError as e:
            prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "error"
            print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
    return wrapper
