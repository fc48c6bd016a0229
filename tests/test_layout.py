"""The layers on disk: the project's import graph, built from the source (imports inside functions
included), has no cycle, its sub-packages import only downwards, no project module is imported from
inside a function, and nothing in the project uses an import path of the earlier flat layout (those
keep working for users, with a FutureWarning: tested below too)."""
import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from ood import _moved

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ood", "scores", "models")

# Each layer may import its own modules and those of lower layers, never a higher one.
LAYER = {"ood.errors": 0, "ood.params": 0, "ood.plugins": 0, "ood.io": 0, "ood._moved": 0,
         "scores": 1, "models": 1, "ood.system": 1,
         "ood.data": 2, "ood.training": 3, "ood.cache": 4, "ood.evaluation": 5, "ood.reporting": 6,
         "ood.runtime": 7, "ood.commands": 8, "ood.api": 9, "ood": 10}


def project_modules():
    mods = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def imported(module, path, node, mods):
    """The project modules an import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] in PACKAGES]
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source.split(".")[0] not in PACKAGES:
        return []
    return [f"{source}.{a.name}" if f"{source}.{a.name}" in mods else source for a in node.names]


def import_graph():
    """{module: {(imported module, inside a function)}} of every project module."""
    mods = project_modules()
    graph = {}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        graph[module] = {(target, id(node) in in_function)
                         for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                         for target in imported(module, path, node, mods) if target != module}
    return graph


def cycles(edges):
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer(module):
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYER:
            return LAYER[".".join(parts[:n])], ".".join(parts[:n])
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYER")


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_projects_modules():
    graph = import_graph()
    assert len(graph) > 60
    assert cycles({m: {t for t, _ in targets} for m, targets in graph.items()}) == []


def test_no_project_module_is_imported_inside_a_function():
    """An import inside a function is how a cycle hides; a package importing its own submodules to
    register them does so at its top level."""
    inside = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t, f in targets if f)
    assert inside == []


def test_sub_packages_import_only_downwards():
    upward = []
    for module, targets in import_graph().items():
        rank, home = layer(module)
        for target, _ in targets:
            target_rank, target_home = layer(target)
            if target_rank > rank or (target_rank == rank and target_home != home and rank != 0):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_the_project_uses_no_old_import_path():
    old = set(_moved.MOVED) | set(_moved.RENAMED_TO_PACKAGE)
    users = []
    for path in [*ROOT.glob("*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("tests/*.py"),
                 *(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):  # the packages ood.evaluation and ood.training are not old paths
                names = [a.name for a in node.names if a.name not in _moved.RENAMED_TO_PACKAGE]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if node.module in _moved.RENAMED_TO_PACKAGE:  # from ood.evaluation import <a module of it>
                    names = [f"{node.module}.{a.name}" for a in node.names
                             if not (ROOT / node.module.replace(".", "/") / f"{a.name}.py").exists()]
            else:
                continue
            users += [f"{path.relative_to(ROOT)}: {n}" for n in names if n in old or
                      (n and n.rsplit(".", 1)[0] in _moved.MOVED)]
    assert users == []


def test_every_moved_module_exists_at_its_new_path():
    for new in [*_moved.MOVED.values(), *_moved.RENAMED_TO_PACKAGE.values()]:
        assert (ROOT / (new.replace(".", "/") + ".py")).is_file(), new


def test_an_old_import_path_still_works_with_a_future_warning():
    """A user's ``from ood.features import FeatureStore`` gets the same object as the new path, and a
    FutureWarning that names the new path and points at the user's line (run in a fresh interpreter:
    this one has imported the new paths already)."""
    code = ("import warnings\nwarnings.simplefilter('always')\n"
            "from ood.metrics import compute_metrics\nimport ood.features as F\n"
            "from ood.evaluation import Evaluation\n"
            "import ood.evaluation.metrics as M, ood.cache.features as G, ood.evaluation.protocols as P\n"
            "from ood.errors import cli_main\nfrom ood.fingerprint import source_digest\n"
            "import ood.runtime.entry as E, ood.data.sources as S\n"
            "assert cli_main is E.cli_main and source_digest is S.source_digest\n"
            "assert compute_metrics is M.compute_metrics and F is G and Evaluation is P.Evaluation\n"
            "assert G.__spec__.name == 'ood.cache.features'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for old, new in [("ood.metrics", "ood.evaluation.metrics"), ("ood.features", "ood.cache.features"),
                     ("ood.evaluation.Evaluation", "ood.evaluation.protocols.Evaluation")]:
        assert f"FutureWarning: {old} moved to {new}" in out.stderr
    assert "<string>:3: FutureWarning" in out.stderr  # the user's line, not the import machinery's


def test_a_name_the_old_module_lacked_is_still_an_attribute_error():
    import ood.evaluation
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            ood.evaluation.no_such_name
