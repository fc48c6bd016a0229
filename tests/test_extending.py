"""docs/extending.md works as written. Its ``# <name>.py`` blocks are written into the working directory as
the modules they name, the commands of its ``bash`` blocks run through the scripts' ``main(argv)`` on small
generated data, and its other Python blocks run as they are.

A command gets only the run environment added: ``--device cpu --amp off --workers 0 --quiet`` always,
``--epochs 1 --batch_size 20`` when it trains (the last value of a flag wins), ``--subset 40`` when it
scores, and for ``verify_data.py`` the image counts of the generated data (``--expect``). Whatever the
modules register (scores, backbones, ID and OOD sets, benchmarks) is unregistered after each test, as if
it had run in its own process."""
import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

import datagen
import generate_stored_pattern
import models
import sweep_scores
import test_score_ood_detection
import train_model
import verify_data
from models import registry as model_registry
from ood import data as D
from scores.base import Score

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
SCRIPTS = {"train_model.py": train_model, "generate_stored_pattern.py": generate_stored_pattern,
           "test_score_ood_detection.py": test_score_ood_detection, "sweep_scores.py": sweep_scores,
           "verify_data.py": verify_data}
ENV = ["--device", "cpu", "--amp", "off", "--workers", "0", "--quiet"]
ADDED = {"train_model.py": ENV + ["--epochs", "1", "--batch_size", "20"],
         "generate_stored_pattern.py": ENV + ["--subset", "40"],
         "test_score_ood_detection.py": ENV + ["--subset", "40"],
         "sweep_scores.py": ENV + ["--subset", "40"],
         "verify_data.py": []}
MODULE_HEADER = re.compile(r"#\s*(\w+)\.py\s*$")
SHAPES = ("circle", "square", "triangle")


# ----------------------------------------------------------------------------------------------------
# Reading the page
# ----------------------------------------------------------------------------------------------------
def blocks(text):
    """[(section heading, language, code)] of the fenced blocks of a markdown text, in order; the
    heading is that of the enclosing ``## `` section ("" before the first)."""
    out, heading, lang, lines = [], "", None, []
    for line in text.splitlines():
        if lang is None and line.startswith("## "):
            heading = line[3:].strip()
        elif lang is None and line.startswith("```"):
            lang, lines = line[3:].strip() or "text", []
        elif lang is not None and line.startswith("```"):
            out.append((heading, lang, "\n".join(lines) + "\n"))
            lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, "an unclosed code block"
    return out


def module_name(code):
    """``mymod`` for a block whose first line is ``# mymod.py`` (a whole module); None otherwise."""
    m = MODULE_HEADER.fullmatch(code.splitlines()[0].strip()) if code.strip() else None
    return m.group(1) if m else None


def modules(text):
    """{module name: source} of the page's whole-module blocks."""
    found = {}
    for _, lang, code in blocks(text):
        name = module_name(code) if lang == "python" else None
        if name:
            assert name not in found, f"two blocks are {name}.py"
            found[name] = code
    return found


def section(text, starts):
    """(commands, python snippets) of the section whose heading starts with ``starts``: each command an
    argv (``python script.py ...``, continuation lines joined, comments dropped), each snippet a Python
    block that is not a whole module."""
    chosen = [(lang, code) for heading, lang, code in blocks(text) if heading.startswith(starts)]
    assert chosen, f"docs/extending.md has no section {starts!r} with code"
    commands = []
    for lang, code in chosen:
        if lang == "bash":
            for line in code.replace("\\\n", " ").splitlines():
                argv = shlex.split(line, comments=True)
                if argv:
                    assert argv[0] == "python" and argv[1] in SCRIPTS, f"not a script's command: {line}"
                    commands.append(argv[1:])
    snippets = [code for lang, code in chosen if lang == "python" and not module_name(code)]
    return commands, snippets


def test_the_page_is_read_as_the_tests_expect():
    text = DOC.read_text()
    assert set(modules(text)) == {"myscore", "mynet", "mysets", "mybench"}
    for starts, scripts in (("1.", {"train_model.py", "test_score_ood_detection.py", "sweep_scores.py"}),
                            ("2.", {"train_model.py", "test_score_ood_detection.py"}),
                            ("3.", {"verify_data.py", "train_model.py", "test_score_ood_detection.py"}),
                            ("4.", {"verify_data.py", "train_model.py", "test_score_ood_detection.py",
                                    "sweep_scores.py"})):
        commands, _ = section(text, starts)
        assert {c[0] for c in commands} == scripts, starts
    assert any("--data_plugin" in c for c in section(text, "3.")[0])
    assert len(section(text, "From Python")[1]) == 1 and len(section(text, "2.")[1]) == 1
    # the parser itself: a continuation line is joined, a comment dropped, a header names a module
    assert blocks("## X\n```bash\npython a.py --x \\\n    1  # note\n```\n") == \
        [("X", "bash", "python a.py --x \\\n    1  # note\n")]
    assert module_name("# m.py\nx = 1\n") == "m" and module_name("# m.py is here\n") is None


# ----------------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def registrations_undone(names):
    """Everything registered inside is unregistered at the end (ID and OOD sets, benchmarks, backbones;
    conftest's ``_score_registry_as_it_was`` does the scores), and the modules ``names`` are forgotten, so
    that the next import registers again, as a new process would."""
    saved = [(registry, dict(registry)) for registry in (D.ID_SETS, D.OOD_SETS, D.BENCHMARKS,
                                                        model_registry._REGISTRY, model_registry._FAMILIES)]
    for name in names:
        sys.modules.pop(name, None)
    try:
        yield
    finally:
        for registry, before in saved:
            registry.clear()
            registry.update(before)
        for name in names:
            sys.modules.pop(name, None)


@pytest.fixture
def page(tmp_path, monkeypatch):
    """The page's text, with its modules written into tmp_path (the working directory, and on sys.path for
    the Python blocks) and their registrations undone afterwards."""
    text = DOC.read_text()
    written = modules(text)
    for name, code in written.items():
        (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    with registrations_undone(list(written)):
        yield text


def run(argv, *added):
    """A documented command (``script.py`` and its arguments) run through the script's ``main``, with
    the run environment added; returns what ``main`` returns."""
    script, args = argv[0], argv[1:]
    return SCRIPTS[script].main(args + ADDED[script] + list(added))


def run_snippet(code):
    """A Python block of the page, run as a notebook cell would; returns its namespace and what it printed."""
    out, namespace = io.StringIO(), {"__name__": "__main__"}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), namespace)
    return namespace, out.getvalue()


def write_shapes(root, val=False):
    """The example's ID set (3 class folders: 20 training, 8 test, 6 validation images each) and OOD sets."""
    for split, n, seed in (("train", 20, 1), ("test", 8, 2)) + ((("val", 6, 3),) if val else ()):
        datagen.write_image_folder(root / "shapes" / split, n=n, seed=seed, subdirs=SHAPES)
    datagen.write_image_folder(root / "scribbles", n=10, seed=4, subdirs=("a", "b"))
    if val:
        datagen.write_image_folder(root / "shapebench" / "blobs", n=10, seed=5)
        datagen.write_image_folder(root / "shapebench" / "val_blobs", n=6, seed=6)


def test_registrations_are_undone(page):
    """Importing the page's modules registers what they say (within ``page``); the fixture then undoes it."""
    import mybench
    import mynet
    import myscore
    import mysets
    assert D.get_id_set("shapes") is mysets.SHAPES and D.resolve_ood("doodles") is mysets.SCRIBBLES
    assert D.get_benchmark("shapebench") is mybench.SHAPEBENCH
    assert models.get_spec("mynet").builder is mynet.builder
    assert issubclass(myscore.CosineProto, Score)
    with registrations_undone(["mysets"]):
        import mysets  # noqa: F811  (imported afresh: registers again, the same declaration)
        assert "shapes" in D.ID_SETS
    assert "shapes" in D.ID_SETS  # the outer registration is kept


def test_registrations_do_not_leak():
    """No earlier test of this module left a set, benchmark or backbone of the page registered."""
    assert "shapes" not in D.ID_SETS and "scribbles" not in D.OOD_SETS
    assert "shapebench" not in D.BENCHMARKS and "mynet" not in model_registry._REGISTRY
    assert not {"mysets", "mybench", "mynet", "myscore"} & set(sys.modules)


def test_from_python_scores_features_with_the_users_score(page):
    [snippet] = section(page, "From Python")[1]
    namespace, printed = run_snippet(snippet)
    rows = namespace["rows"]
    assert sorted(r["score"] for r in rows) == ["CosineProto", "MSP"]
    mine = next(r for r in rows if r["score"] == "CosineProto")
    assert mine["ood_dataset"] == "noise" and mine["settings"] == {"shrink": 0.5, "temperature": 1.0}
    assert mine["auroc"] > 0.9 and len(mine["auroc_ci"]) == 2  # clusters against far noise; bootstrap intervals
    assert len(printed.splitlines()) == 2 and "CosineProto noise AUROC" in printed


def test_score_example(page, small_fmnist):
    commands, _ = section(page, "1.")
    results = [run(c) for c in commands]
    rows = results[1]
    mine = [r for r in rows if r["score"] == "CosineProto"]
    assert {r["ood_dataset"] for r in mine} == {"Digits", "GaussianNoise"}
    assert all(r["settings"] == {"shrink": 0.5, "temperature": 1.0} for r in mine)
    assert {r["score"] for r in rows} == {"MSP", "CosineProto"}
    assert len(list(Path("stored_pattern/fashionmnist/cnn/patterns").glob("cosineproto-*.pt"))) >= 1
    swept = results[2]  # the declared grid, on both sets (chosen on Digits, reported on GaussianNoise)
    assert sorted({r["settings"]["shrink"] for r in swept}) == [0.0, 0.25, 0.5]
    assert {r["ood_dataset"] for r in swept} == {"Digits", "GaussianNoise"} and len(swept) == 6


def test_backbone_example(page, small_fmnist):
    commands, [snippet] = section(page, "2.")
    results = [run(c) for c in commands]
    for name in ("mynet_builder", "mynet"):  # as a plug-in, then under its registered name
        ck = torch.load(Path("checkpoints/fashionmnist") / f"{name}.pt", weights_only=True)
        assert ck["model"]["body.0.weight"].shape == (8, 1, 3, 3), name  # --model_arg / --mynet_width 8
    for rows, model in ((results[1], "mynet:builder"), (results[3], "mynet")):
        assert {(r["model"], r["ood_dataset"]) for r in rows} == {(model, "Digits")}
        assert {r["score"] for r in rows} == {"MSP", "Energy"}
    namespace, _ = run_snippet(snippet)
    assert namespace["phi"].shape == (2, 16)


def test_data_set_example(page, tmp_path, monkeypatch, capsys):
    write_shapes(tmp_path / "data")
    commands, _ = section(page, "3.")
    verify, *others = commands
    counts = ["--expect", "shapes/train=60", "--expect", "shapes/test=24", "--expect", "Scribbles=20"]
    assert run(verify) == 1  # the declared counts (3000 training images, ...) are not these
    assert "Shapes train" in capsys.readouterr().out
    assert run(verify, *counts) == 0
    assert "OK: all 4 sets needed by 'shapes'" in capsys.readouterr().out
    results = [run(c) for c in others]
    assert Path("checkpoints/shapes/cnn.pt").is_file()
    rows = results[1]
    assert {r["ood_dataset"] for r in rows} == {"Scribbles", "GaussianNoise"}  # the declared default_ood
    assert {(r["id_dataset"], r["num_classes"]) for r in rows} == {("shapes", 3)}
    assert {(r["score"], r["ood_dataset"]) for r in results[2]} == {("MSP", "Scribbles")}  # by its alias


def test_benchmark_example(page, tmp_path, capsys):
    write_shapes(tmp_path / "data", val=True)
    commands, _ = section(page, "4.")
    verify, train, evaluate, sweep = commands
    assert run(verify) == 0
    out = capsys.readouterr().out
    assert "benchmark 'shapebench'" in out and "Blobs (Shapes, near)" in out and "Shapes val" in out
    # train_model.py trains on the paper-level set of mysets.py (which it names with --data_plugin)
    run(train)
    rows = run(evaluate)
    assert {(r["benchmark"], r["ood_dataset"], r["ood_group"]) for r in rows} == \
        {("shapebench", "Blobs", "near"), ("shapebench", "Scribbles", "far")}
    assert {r["score"] for r in rows} == {"MSP", "Energy", "ReAct"}
    assert Path("results/shapebench-shapes/cnn/results.json").is_file()
    assert "Near-OOD" in rows.table and "Far-OOD" in rows.table
    swept = run(sweep)
    assert {r["ood_dataset"] for r in swept} == {"Blobs", "Scribbles"}  # the validation pair chose, not reported
    assert "the benchmark's validation pair" in capsys.readouterr().out
