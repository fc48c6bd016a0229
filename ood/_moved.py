"""Where the modules of the flat ``ood/`` of earlier versions now live, and the shims that keep their old
import paths working for a user's code (with a FutureWarning naming the new path).

``MOVED`` is the one table: an old path imports the module at its new path (the same module object, so
``isinstance`` checks and monkeypatching see one module). Two old modules share their name with the
package that replaced them (``ood.evaluation``, ``ood.training``); those packages forward the old
module's names through ``forward``. Nothing in the project imports an old path: a test checks that."""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "ood.accel": "ood.system.accel", "ood.device": "ood.system.device", "ood.progress": "ood.system.progress",
    "ood.inputs": "ood.system.inputs",
    "ood.package_sets": "ood.data.package_sets", "ood.openood": "ood.data.openood",
    "ood.download": "ood.data.download", "ood.verify": "ood.data.verify",
    "ood.checkpoints": "ood.training.checkpoints", "ood.recipes": "ood.training.recipes",
    "ood.reference_autoaugment": "ood.training.reference_autoaugment",
    "ood.fingerprint": "ood.cache.fingerprint", "ood.features": "ood.cache.features",
    "ood.metrics": "ood.evaluation.metrics", "ood.uncertainty": "ood.evaluation.uncertainty",
    "ood.comparisons": "ood.evaluation.comparisons", "ood.scoring": "ood.evaluation.scoring",
    "ood.results": "ood.reporting.results", "ood.reports": "ood.reporting.reports",
    "ood.commit": "ood.reporting.commit", "ood.aggregate": "ood.reporting.aggregate",
    "ood.cli": "ood.runtime.options", "ood.setup": "ood.runtime.setup", "ood.run": "ood.runtime.run",
    "ood.launch": "ood.runtime.launch",
}
# The old modules whose name is now a package's: their names are forwarded from the package.
RENAMED_TO_PACKAGE = {"ood.evaluation": "ood.evaluation.protocols", "ood.training": "ood.training.trainer"}
# Names that left a module for another: {module: {name: where it lives now}} (forwarded by ``forward``).
MOVED_NAMES = {
    "ood.errors": {"cli_main": "ood.runtime.entry", "script_run": "ood.runtime.entry"},
    "ood.cache.fingerprint": {name: "ood.data.sources" for name in
                              ("source_files", "source_root", "note_source", "source_digest")},
}


def _warn(old, new):
    """A FutureWarning pointing at the user's import line: the first frame outside this module (warnings
    itself skips the frames of Python's import machinery)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    warnings.warn(f"{old} moved to {new}; import it from there (the old path will be removed).", FutureWarning,
                  stacklevel=level)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the module at its new path."""

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        _warn(spec.name, MOVED[spec.name])
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # the import machinery stamps the alias's spec on the module
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state  # give it back its own


def install():
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())


def forward(package):
    """A module ``__getattr__`` for ``package``: a name it lacks is looked up where it lives now
    (``MOVED_NAMES``), or in the module that used to live at its path (``RENAMED_TO_PACKAGE``), with a
    FutureWarning."""
    def __getattr__(name):
        new = MOVED_NAMES.get(package, {}).get(name) or RENAMED_TO_PACKAGE.get(package)
        if new is None or name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(new)
        if name.startswith("__") or not hasattr(module, name):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(f"{package}.{name}", f"{new}.{name}")
        return getattr(module, name)
    return __getattr__
