"""``package.module:attribute`` names: a backbone builder (``--model``) or a score class (``--score``) of
the user's, used without editing this repository.

A plug-in's code is the user's, not ours: an exception it raises (importing it, its ``fit``, its
``score``) ends the run with one line naming the plug-in as the user gave it (RECLAG_DEBUG=1 shows the
traceback instead), and its stored patterns are keyed on its code as well as its ``version``.

For users (``__all__``): ``load_object`` and ``load_module`` load a name as the scripts do, with the same
one-line errors (a notebook can check that ``"mymod:MyScore"`` loads), and ``DEBUG_ENV`` names the variable
that shows a plug-in's traceback. The rest is the registries' bookkeeping (``scores``, ``models``)."""
import contextlib
import hashlib
import importlib
import inspect
import marshal
import os
import sys
from pathlib import Path

from ood.errors import UserError

__all__ = ["load_object", "load_module", "DEBUG_ENV"]

DEBUG_ENV = "RECLAG_DEBUG"
DEBUG_HINT = f"set {DEBUG_ENV}=1 for the traceback"

# plug-in score class -> (how the user named it on the command line, digest of its code when loaded)
_SCORES = {}


def add_score_plugin(cls, origin):
    """Note that ``cls`` is a user's score, given as ``--score <origin>`` (``scores.register`` calls this
    for every class that is not built in). Its code is digested now, when it has just been imported, so
    that a file edited while the run goes on cannot key a pattern fitted by the code loaded before."""
    if cls not in _SCORES:
        _SCORES[cls] = (origin, code_digest(cls))


def plugin_origin(cls):
    """``package.module:Class`` as the user gave the plug-in score ``cls``; None for a built-in score."""
    entry = _SCORES.get(cls if isinstance(cls, type) else type(cls))
    return entry[0] if entry else None


def plugin_code(cls):
    """The digest of a plug-in score's code (see ``code_digest``); None for a built-in score."""
    entry = _SCORES.get(cls if isinstance(cls, type) else type(cls))
    return entry[1] if entry else None


def describe_score(score):
    """A score as error messages name it: ``Name``, and for a plug-in also how the user gave it."""
    origin = plugin_origin(score)
    return f"{score.name} (--score {origin})" if origin else score.name


def running(score, what):
    """The context to run ``what`` ("fit", "score on iSUN") of ``score`` in: ``user_code`` for a plug-in,
    nothing for a built-in score (its exceptions are our bugs and keep their tracebacks)."""
    origin = plugin_origin(score)
    return user_code(f"--score {origin}: its {what}") if origin else contextlib.nullcontext()


def code_digest(cls):
    """What a plug-in's stored patterns are keyed on beside its ``version``: sha256 of the files of the
    modules that define ``cls`` and each class it derives from (scores.base.Score included), so that
    editing its ``fit`` refits its patterns even when ``version`` was not bumped; a class without a file
    (defined in a notebook, say) is keyed on its source text, else on its methods' compiled code. Code in
    other modules that ``fit`` calls is not followed: bump ``version`` when only that changes."""
    h = hashlib.sha256()
    for klass in cls.__mro__:
        if klass is object:
            continue
        h.update(f"{klass.__module__}.{klass.__qualname__}\0".encode())
        h.update(_code_bytes(klass))
    return h.hexdigest()[:16]


def _code_bytes(klass):
    path = getattr(sys.modules.get(klass.__module__), "__file__", None)
    if path:
        try:
            return Path(path).read_bytes()
        except OSError:
            pass
    try:
        return inspect.getsource(klass).encode()
    except (OSError, TypeError):
        pass
    parts = []
    for name, value in sorted(vars(klass).items()):
        code = getattr(getattr(value, "__func__", value), "__code__", None)
        if code is not None:
            parts.append(name.encode() + b"\0" + marshal.dumps(code))
    return b"\0".join(parts)


def is_plugin_name(name):
    return ":" in name and not name.startswith("tv:")


def load_object(name, what):
    """The object ``attribute`` of ``package.module``, importable from the current directory or
    PYTHONPATH; ``what`` ("model builder", "score class") goes into the error message. The current
    directory is put on ``sys.path`` once, by the scripts' entry (ood.runtime.entry.script_run), not here: a
    load from deep inside a run should not change the interpreter's import path."""
    module, _, attr = name.partition(":")
    if not module or not attr:
        raise UserError(f"cannot load {what} {name!r}: write it as package.module:{'Class' if 'class' in what else 'function'}.")
    return _imported(module, attr.split("."), name, what)


def load_module(name, what):
    """The module ``package.module`` of the user's (``--data_plugin``: one that declares data sets),
    imported as ``load_object`` imports a plug-in's: an error is one line naming it."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise UserError(f"cannot load {what} {name!r}: give a module as package.module, importable from the "
                        f"current directory or PYTHONPATH.")
    return _imported(name, [], name, what)


def _imported(module, attrs, name, what):
    try:
        obj = importlib.import_module(module)
        for part in attrs:
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        if debugging():
            raise
        raise UserError(f"cannot load {what} {name!r} ({type(e).__name__}: {e}). Write it as "
                        f"package.module{':attribute' if attrs else ''}, with the module importable from the "
                        f"current directory or PYTHONPATH.") from None
    except Exception as e:  # a syntax error in the user's module, or its own code failing at import
        if debugging():
            raise
        raise UserError(f"cannot load {what} {name!r}: importing {module} raised {one_line(e)} "
                        f"({DEBUG_HINT}).") from None
    return obj


def debugging():
    """True when the user asked (``RECLAG_DEBUG=1``) for the full traceback of a plug-in's error rather
    than the one-line message: a plug-in's author debugging it needs the stack, its user does not."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def one_line(e):
    """``Type: message`` of an exception on one line (a plug-in's message may span several)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@contextlib.contextmanager
def user_code(what):
    """Run a plug-in's own code (its ``fit``, its ``score``): an exception it raises ends the run with
    one line, ``<what> raised <Type>: <message>``, as bad input does, since it is not this project's bug
    and its traceback would only bury the one thing to fix. A UserError passes unchanged, and
    RECLAG_DEBUG=1 lets the original exception through. Built-in scores are not run through this: their
    exceptions are our bugs and keep their tracebacks."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        if debugging():
            raise
        raise UserError(f"{what} raised {one_line(e)} ({DEBUG_HINT}).") from None
