"""``package.module:attribute`` names: a backbone builder (``--model``) or a score class (``--score``) of
the user's, used without editing this repository."""
import importlib
import sys
from pathlib import Path

from .errors import UserError


def is_plugin_name(name):
    return ":" in name and not name.startswith("tv:")


def load_object(name, what):
    """The object ``attribute`` of ``package.module``, importable from the current directory or
    PYTHONPATH; ``what`` ("model builder", "score class") goes into the error message."""
    module, _, attr = name.partition(":")
    if not module or not attr:
        raise UserError(f"cannot load {what} {name!r}: write it as package.module:{'Class' if 'class' in what else 'function'}.")
    if str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot load {what} {name!r} ({type(e).__name__}: {e}). Write it as "
                        f"package.module:attribute, with the module importable from the current directory or "
                        f"PYTHONPATH.") from None
    return obj
