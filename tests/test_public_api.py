"""The public names. A plug-in, a notebook or docs/extending.md may rely on the names in PUBLIC: each
imports from the path given there. A module's ``__all__`` is exactly its names here, all of them exist,
and none is private. docs/extending.md imports and cites no other name of this project, and neither does
the docstring of ood/api.py.

PUBLIC is written out by hand, not read from the modules: a name added to or dropped from an ``__all__``
fails here until this table (and the documentation that cites it) says so too."""
import ast
import importlib
import importlib.util
import inspect
import re
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
OURS = ("ood", "scores", "models")  # the project's top-level packages

# documented path -> the names importable from it
PUBLIC = {
    "ood.api": ("score_features", "evaluate", "sweep", "extract", "train", "aggregate", "verify", "parse", "parser",
                "COMMANDS"),
    "ood.errors": ("UserError",),
    "ood.params": ("Param", "Context", "Rule", "per_dataset", "up_to", "ParamError"),
    "ood.plugins": ("load_object", "load_module", "DEBUG_ENV"),
    "ood.io": ("atomic_path", "write_text", "save_torch", "load_torch", "locked", "check_writable_dir",
               "check_writable_file", "file_digest", "sha256_file", "safe_name", "DiskFull", "is_disk_full"),
    "ood.data": (
        # declarations and their registries
        "OODSet", "IDSet", "Archive", "Benchmark", "register_ood", "register_id", "register_benchmark",
        "OOD_SETS", "ID_SETS", "BENCHMARKS", "PAPER", "DRIVE", "CIFAR_OOD", "IMAGENET_OOD", "PREPROCESSING",
        "get_id_set", "get_benchmark", "benchmark_names", "resolve_ood", "builtin_ood", "benchmark_ood", "id_key",
        "benchmark_help", "dataset_help", "ood_help",
        # layouts
        "Layout", "ImageFolderTree", "IMAGE_FOLDER", "TorchvisionLayout", "CifarPickles", "IdxFiles", "SVHNFile",
        "HeldOutClasses", "cifar_labels",
        # image files
        "load_image", "image_folder", "count_image_folder", "BadImage", "bad_image_message", "download_errors",
        "ToUint8",
        # the data sets a run builds
        "test_transform", "train_transform", "build_id_dataset", "held_out", "subset", "dataset_labels",
        "ClassSubset",
        # normalisation statistics
        "CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD"),
    "scores": ("Score", "score_key", "register", "registered", "paper_scores", "names", "get", "resolve_names",
               "instances", "given_settings", "load_plugins", "add_score_args", "REGISTERED", "GROUPS"),
    "scores.base": ("Score", "score_key", "correct_by_class", "missing_classes_warning"),
    "models": ("register_backbone", "register", "register_family", "ModelSpec", "Weights", "build_model", "get_spec",
               "registered", "model_names", "all_options", "resolve_options", "parse_model_arg",
               "can_load_pretrained", "pretrained_id", "check_runs"),
    "models.registry": ("register_backbone", "register", "register_family", "ModelSpec", "Weights", "build_model",
                        "get_spec", "registered", "model_names", "all_options", "resolve_options", "parse_model_arg",
                        "can_load_pretrained", "pretrained_id", "check_runs"),
    # what ood.api's calls return (its docstring's table names them); these modules have no __all__
    "ood.commands.extract": ("Extracted",),
    "ood.commands.sweep": ("Swept",),
    "ood.commands.aggregate": ("Aggregated",),
    "ood.commands.verify": ("Verified",),
}
TABLE = sorted({(path, name) for path, names in PUBLIC.items() for name in names})
WITH_ALL = ("ood.api", "ood.errors", "ood.params", "ood.plugins", "ood.io", "ood.data", "scores", "scores.base",
            "models", "models.registry")


# ----------------------------------------------------------------------------------------------------
# The checks (functions returning the problems found, so that they can be shown to find them)
# ----------------------------------------------------------------------------------------------------
def all_problems(module, documented):
    """What is wrong with ``module.__all__`` against the names ``documented`` for it."""
    listed = getattr(module, "__all__", None)
    if listed is None:
        return [f"{module.__name__} has no __all__"]
    problems = [f"{module.__name__}.__all__ lists {n!r} twice" for n in sorted(set(listed)) if listed.count(n) > 1]
    problems += [f"{module.__name__}.__all__ lists {n!r}, which it does not have" for n in listed
                 if not hasattr(module, n)]
    problems += [f"{module.__name__}.__all__ lists the private {n!r}" for n in listed if n.startswith("_")]
    problems += [f"{module.__name__}.__all__ lists {n!r}, which is not documented" for n in listed
                 if n not in documented]
    problems += [f"{module.__name__}.__all__ leaves out the documented {n!r}" for n in documented if n not in listed]
    return problems


def is_module(path):
    try:
        return importlib.util.find_spec(path) is not None
    except (ImportError, ValueError):
        return False


def ours(path):
    return path.split(".")[0] in OURS


def reference_problem(dotted, table, where):
    """The problem with a reference ``a.b.c`` to this project's code (a module, or a name of one and its
    attributes), or None: the longest importable prefix is the module, and the name after it must be in
    ``table`` for that module. A module alone is fine (a pointer to code to read)."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        module = ".".join(parts[:k])
        if is_module(module):
            if k == len(parts) or (module, parts[k]) in table:
                return None
            return f"{where}: {module}.{parts[k]} is not a public name"
    return f"{where}: {dotted} names no module of this project"


def code_problems(source, table, own_modules=(), where="code"):
    """The names of this project that Python ``source`` imports or uses and that ``table`` does not
    list: ``from X import Y`` needs (X, Y) in the table or X.Y a module; ``import X`` / ``X.Y`` needs
    X.Y public; the page's own modules and other packages are not checked."""
    problems, aliases = [], {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level or not ours(node.module) or node.module.split(".")[0] in own_modules:
                continue
            for alias in node.names:
                if (node.module, alias.name) in table:
                    continue
                if is_module(f"{node.module}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    continue
                problems.append(f"{where}: from {node.module} import {alias.name}: not a public name")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if ours(alias.name):
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
    inner = {id(child) for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):  # module.attribute uses (whole chains), through the names the imports bound
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.insert(0, base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                problem = reference_problem(".".join([aliases[base.id], *chain]), table, where)
                if problem:
                    problems.append(problem)
    return sorted(set(problems))


def defined_names(modules):
    """{name: [module paths]} of the public names that the modules define themselves (not imports)."""
    found = {}
    for path in modules:
        module = importlib.import_module(path)
        for name, value in vars(module).items():
            if name.startswith("_") or inspect.ismodule(value):
                continue
            if getattr(value, "__module__", None) in (None, path):  # a constant has none
                found.setdefault(name, []).append(path)
    return found


def prose_problems(text, table, modules, where):
    """The names of this project that backticked text cites and ``table`` does not list: a dotted
    ``ood.x.y`` is checked as ``reference_problem`` does; a bare name that a module of ``modules`` defines
    must be public under some path (``add_params`` is not; ``Param`` is)."""
    public = {name for _, name in table}
    defined = defined_names(modules)
    problems = []
    for span in re.findall(r"`+([^`]+)`+", text):
        for dotted in re.findall(r"(?<![\w./])((?:ood|scores|models)(?:\.[A-Za-z_]\w*)+)", span):
            problem = reference_problem(dotted, table, where)
            if problem:
                problems.append(problem)
        bare = span.strip()
        if bare.isidentifier() and bare in defined and bare not in public:
            problems.append(f"{where}: `{bare}` ({', '.join(defined[bare])}) is not a public name")
    return sorted(set(problems))


def python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def page_modules(text):
    """The modules the page's blocks are (``# mymod.py`` first lines): imports of them are the user's."""
    return {m.group(1) for code in python_blocks(text) if (m := re.match(r"#\s*(\w+)\.py\s*\n", code))}


# ----------------------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path,name", TABLE)
def test_each_public_name_imports_from_its_documented_path(path, name):
    namespace = {}
    exec(f"from {path} import {name}", namespace)  # the statement a user writes
    assert namespace[name] is getattr(importlib.import_module(path), name)


@pytest.mark.parametrize("path", WITH_ALL)
def test_all_lists_exactly_the_documented_names(path):
    assert all_problems(importlib.import_module(path), PUBLIC[path]) == []


def test_re_exports_are_the_same_objects():
    """Where two paths document one name (models and models.registry; scores and scores.base), they
    give the same object."""
    by_name = {}
    for path, name in TABLE:
        by_name.setdefault(name, []).append(getattr(importlib.import_module(path), name))
    for name, objects in by_name.items():
        if name not in ("register", "registered"):  # scores.register and models.register are different
            assert all(o is objects[0] for o in objects), name


def test_extending_imports_only_public_names():
    text = DOC.read_text()
    own = page_modules(text)
    assert own == {"myscore", "mynet", "mysets", "mybench"}
    problems, imported = [], set()
    for k, code in enumerate(python_blocks(text)):
        problems += code_problems(code, TABLE, own, f"docs/extending.md python block {k + 1}")
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and ours(node.module):
                imported |= {(node.module, a.name) for a in node.names}
    assert problems == []
    # the examples do import from the kernel, the data declarations, the scores and the backbones
    assert {("ood.params", "Param"), ("scores.base", "Score"), ("models", "register_backbone"),
            ("ood.data", "register_id"), ("ood.data", "register_benchmark"), ("ood.api", "score_features")} <= imported


def test_extending_cites_only_public_names():
    text = DOC.read_text()
    outside = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # the prose; the code is checked above
    assert prose_problems(outside, TABLE, WITH_ALL, "docs/extending.md") == []


def test_api_docstring_names_only_public_names():
    import ood.api
    doc = ood.api.__doc__
    table_lines = [line for line in doc.splitlines() if re.match(r"\w+\.py\s", line)]  # script  call  returns
    calls = {m for line in table_lines for m in re.findall(r"``(\w+)\(", line)}
    returns = {m for line in table_lines for m in re.findall(r"``([A-Z]\w+)``", line)}
    assert calls == {"train", "extract", "evaluate", "sweep", "aggregate", "verify"}
    assert returns == {"Extracted", "Swept", "Aggregated", "Verified"}
    public = {name for _, name in TABLE}
    assert calls <= set(PUBLIC["ood.api"]) and returns <= public
    assert prose_problems(doc, TABLE, WITH_ALL, "ood/api.py's docstring") == []
    assert {"score_features", "parse"} <= set(re.findall(r"``(\w+)``", doc))  # it names them, and they are public


def test_method_md_links_to_extending():
    text = (ROOT / "docs" / "method.md").read_text()
    section = text.split("## Adding a score", 1)[1].split("\n## ", 1)[0]
    assert "(extending.md)" in section


# ----------------------------------------------------------------------------------------------------
# The checks can fail
# ----------------------------------------------------------------------------------------------------
def test_the_checks_find_what_is_wrong():
    fake = types.ModuleType("fake")
    fake.__all__ = ["a", "a", "_b", "gone", "undocumented"]
    fake.a, fake._b, fake.undocumented, fake.left_out = 1, 2, 3, 4
    found = " | ".join(all_problems(fake, ("a", "_b", "gone", "left_out")))
    for words in ("'a' twice", "'gone', which it does not have", "the private '_b'",
                  "'undocumented', which is not documented", "leaves out the documented 'left_out'"):
        assert words in found
    assert all_problems(types.ModuleType("bare"), ()) == ["bare has no __all__"]

    code = ("import numpy as np\nimport ood.api\nfrom ood import api, data\nfrom ood.params import Param, add_params\n"
            "from ood.data.declarations import ID_SETS\nfrom mymod import anything\nimport models as m\n"
            "api.train(); api._arguments(); ood.api.score_features(); ood.api.to_argv(); data.register_id\n"
            "m.registry._REGISTRY; np.zeros(1)\n")
    assert code_problems(code, TABLE, {"mymod"}) == [
        "code: from ood.data.declarations import ID_SETS: not a public name",
        "code: from ood.params import add_params: not a public name",
        "code: models.registry._REGISTRY is not a public name",
        "code: ood.api._arguments is not a public name",
        "code: ood.api.to_argv is not a public name"]

    prose = ("Use `ood.api.score_features`, `ood.params.add_params(...)`, `ood.data.openood` (a module), "
             "`Param`, `add_params`, `ood.nothing.here`, `scores=[...]` and `tests/x.py`.")
    assert prose_problems(prose, TABLE, WITH_ALL, "text") == [
        "text: `add_params` (ood.params) is not a public name",
        "text: ood.nothing is not a public name",
        "text: ood.params.add_params is not a public name"]
