"""Reliability round 4 (items 4-6), through the scripts: a second --save_scores run keeps the per-sample
scores of the rows it keeps; aggregate_results.py refuses a named folder without results; every table
of the scoring script shows the backbone's ID test accuracy and warns when it is near chance; the demo
gives each EPOCHS / SUBSET setting its own checkpoint, caches and results."""
import functools
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import aggregate_results
import checks
import test_score_ood_detection
from ood.reporting.reports import CHANCE_MARGIN

# the session's backbone is near chance: its warning line comes before the error line
exits_2 = functools.partial(checks.exits_2, ignore_warnings=True)
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]


@pytest.fixture
def run_dir(fmnist_run):
    """A working directory with a copy of the data and the trained checkpoint (tests/conftest.py)."""
    return fmnist_run


def score(run_dir, *extra):
    return test_score_ood_detection.main(TINY + ["--dataset_path", str(run_dir / "data"), *extra])


def snapshot(folder):
    return {f.relative_to(folder).as_posix(): f.read_bytes() for f in sorted(Path(folder).rglob("*"))
            if f.is_file() and f.name != ".lock"}


# ----------------------------------------------------------------------------------------------------
# Item 4: per-sample scores are merged as rows are
# ----------------------------------------------------------------------------------------------------
def test_second_save_scores_run_keeps_the_per_sample_scores_of_kept_rows(run_dir):
    """The issue's case: MSP against iSUN, then MSP against a set of one's own, both with --save_scores:
    results.json keeps the iSUN row, so scores.npz keeps MSP/iSUN. A later run that replaces the iSUN row
    (other pictures, without --save_scores: the file follows) replaces MSP/iSUN and keeps MSP/Mine."""
    mine = f"Mine={run_dir / 'data/mine'}"
    score(run_dir, "--ood", "iSUN", "--score", "MSP", "--results_dir", "res", "--save_scores")
    with np.load("res/scores.npz") as npz:
        isun = npz["MSP/iSUN"]
    score(run_dir, "--ood", mine, "--score", "MSP", "--results_dir", "res", "--save_scores")
    rows = json.loads(Path("res/results.json").read_text())["rows"]
    assert sorted(r["ood_dataset"] for r in rows) == ["Mine", "iSUN"]
    with np.load("res/scores.npz") as npz:
        assert {"MSP/id", "MSP/iSUN", "MSP/Mine"} <= set(npz.files)
        np.testing.assert_array_equal(npz["MSP/iSUN"], isun)
        mine_scores = npz["MSP/Mine"]
    assert len(mine_scores) == 8 and len(isun) == 10
    rng = np.random.default_rng(9)
    for f in sorted((run_dir / "data/iSUN/images").iterdir()):  # other pictures: other iSUN scores
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(f)
    score(run_dir, "--ood", "iSUN", "--score", "MSP", "--results_dir", "res")
    score(run_dir, "--ood", "iSUN", "--score", "MSP", "--results_dir", "fresh", "--save_scores")
    with np.load("res/scores.npz") as kept, np.load("fresh/scores.npz") as fresh:
        np.testing.assert_array_equal(kept["MSP/iSUN"], fresh["MSP/iSUN"])
        assert not np.array_equal(kept["MSP/iSUN"], isun)
        np.testing.assert_array_equal(kept["MSP/Mine"], mine_scores)
    assert sorted(r["ood_dataset"] for r in json.loads(Path("res/results.json").read_text())["rows"]) == \
        ["Mine", "iSUN"]


def test_unreadable_scores_npz_is_refused_not_overwritten(run_dir, capsys):
    """A scores.npz that cannot be read (truncated, foreign) is one line and exit status 2, and the folder
    is left as it was: writing a new one over it would lose the per-sample scores of the rows kept."""
    score(run_dir, "--ood", "iSUN", "--score", "MSP", "--results_dir", "res", "--save_scores")
    data = Path("res/scores.npz").read_bytes()
    Path("res/scores.npz").write_bytes(data[:len(data) // 2])
    before = snapshot("res")
    argv = TINY + ["--dataset_path", str(run_dir / "data"), "--ood", f"Mine={run_dir / 'data/mine'}",
                   "--score", "MSP", "--results_dir", "res", "--save_scores"]
    exits_2(test_score_ood_detection.main, argv, capsys, "res/scores.npz", "cannot be read", "move it away")
    assert snapshot("res") == before and not list(Path("res").glob(".staging-*"))


# ----------------------------------------------------------------------------------------------------
# Item 5: a folder named to aggregate_results.py that holds no results
# ----------------------------------------------------------------------------------------------------
def _results(folder, auroc, rows=True):
    folder.mkdir(parents=True)
    row = {"id_dataset": "cifar10", "model": "wrn", "protocol": "full", "score": "MSP", "ood_dataset": "SVHN",
           "fpr95": 1 - auroc, "auroc": auroc, "fpr95_std": 0.0, "auroc_std": 0.0, "checkpoint": str(folder)}
    (folder / "results.json").write_text(json.dumps({"rows": [row] if rows else []}))


def test_aggregate_refuses_a_named_folder_without_results(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _results(tmp_path / "seed1", 0.9)
    _results(tmp_path / "seed2", 0.8)
    (tmp_path / "seed3").mkdir()  # a seed whose run failed
    (tmp_path / "seed4/previous/20260101-000000").mkdir(parents=True)  # only an archive: not a run either
    (tmp_path / "seed4/previous/20260101-000000/results.json").write_text("{}")
    args = ["seed1", "seed2", "seed3", "--out", "agg", "--no_plot"]
    err = exits_2(aggregate_results.main, args, capsys, "no results.json under seed3 ", "leave it out")
    assert "seed1" not in err and "seed2" not in err
    exits_2(aggregate_results.main, ["seed3", "seed1", "seed4", "seed3", "--out", "agg"], capsys,
            "no results.json under seed3, seed4 ", "leave them out")
    assert not Path("agg/aggregate.md").exists()
    # a results.json without rows holds no results either
    _results(tmp_path / "seed5", 0.7, rows=False)
    exits_2(aggregate_results.main, ["seed1", "seed5", "--out", "agg"], capsys, "seed5/results.json holds no rows")
    assert not Path("agg/aggregate.md").exists()
    agg = aggregate_results.main(["seed1", "seed2", "--out", "agg", "--no_plot", "--quiet"])
    assert agg["groups"][0]["runs"] == ["seed1", "seed2"]


# ----------------------------------------------------------------------------------------------------
# Item 6: the ID test accuracy in every table, a warning when it is near chance
# ----------------------------------------------------------------------------------------------------
def _accuracy(store):
    test = torch.load(store / "features/test.pt", weights_only=True)
    return float((test["logits"].argmax(1) == test["labels"]).double().mean())


def _row_of(md, label):
    return next(ln for ln in md.splitlines() if ln.startswith(f"| {label} |"))


def _with_head(checkpoint, weight, bias, dest):
    ck = torch.load(checkpoint, weights_only=True)
    ck["model"]["fc.weight"], ck["model"]["fc.bias"] = weight, bias
    torch.save(ck, dest)


def test_tables_show_the_id_accuracy(run_dir, capsys):
    """The session's tiny backbone (three epochs on 100 images) is near chance; its head replaced by the
    nearest class mean of its own ID features classifies them: the tables show that accuracy, no warning."""
    score(run_dir, "--ood", "iSUN", "--score", "MSP", "--results_dir", "first")
    test = torch.load(run_dir / "stored_pattern/fashionmnist/wrn/features/test.pt", weights_only=True)
    mu = torch.stack([test["features"][test["labels"] == k].mean(0) for k in range(10)])
    _with_head("checkpoints/fashionmnist/wrn.pt", mu, -0.5 * (mu ** 2).sum(1), "learned.pt")
    capsys.readouterr()
    score(run_dir, "--ood", "iSUN", "--score", "MSP", "Energy", "--results_dir", "res", "--checkpoint", "learned.pt",
          "--stored_pattern_dir", "sp")
    out, err = capsys.readouterr()
    acc = _accuracy(run_dir / "sp/fashionmnist/wrn")
    assert acc >= CHANCE_MARGIN / 10  # learned: no warning
    assert "near chance" not in out + err + Path("res/results.md").read_text()
    for md in (Path("res/results.md").read_text(), out):
        assert "| ID Acc. |" in md and "ID Acc.: the backbone's ID test accuracy in %" in md
        for label in ("MSP", "Energy"):
            assert _row_of(md, label).endswith(f" | {100 * acc:.2f} |")
    assert "ID_accuracy" in Path("res/results.csv").read_text().splitlines()[0]
    assert "& ID Acc." in Path("res/results.tex").read_text()
    rows = json.loads(Path("res/results.json").read_text())["rows"]
    assert all(r["id_accuracy"] == pytest.approx(acc, abs=1e-12) and r["num_classes"] == 10 for r in rows)


def test_near_chance_backbone_is_warned_in_the_caption_and_on_stderr(run_dir, capsys):
    """A head that always answers class 0: 10 % on the balanced test set, chance for 10 classes."""
    ck = torch.load("checkpoints/fashionmnist/wrn.pt", weights_only=True)["model"]
    _with_head("checkpoints/fashionmnist/wrn.pt", torch.zeros_like(ck["fc.weight"]),
               torch.eye(10)[0] * 5.0, "chance.pt")
    score(run_dir, "--ood", "iSUN", "--score", "MSP", "--results_dir", "res", "--checkpoint", "chance.pt",
          "--stored_pattern_dir", "sp")
    out, err = capsys.readouterr()
    warning = "the backbone's ID test accuracy, 10.00 %, is near chance (10.00 % for 10 classes; near: below 1.5"
    assert f"warning: {warning}" in err
    md = Path("res/results.md").read_text()
    for text in (md, out):  # the caption's first words
        assert any(line.startswith(f"WARNING: {warning}") for line in text.splitlines()), text
        assert _row_of(text, "MSP").endswith(" | 10.00 |")
    assert r"WARNING: the backbone's ID test accuracy, 10.00 \%, is near chance" in Path("res/results.tex").read_text()


# ----------------------------------------------------------------------------------------------------
# Item 6: each demo setting its own checkpoint, caches and results
# ----------------------------------------------------------------------------------------------------
def _demo_calls(tmp_path, **env):
    """The script calls scripts/demo.sh makes, with a stand-in for Python that records its arguments:
    [(script name, {option: value})]."""
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$CALLS"\n')
    fake.chmod(0o755)
    data = tmp_path / "data"
    (data / "FashionMNIST/raw").mkdir(parents=True, exist_ok=True)
    (data / "FashionMNIST/raw/train-images-idx3-ubyte").write_bytes(b"")  # found: nothing to install
    base = {k: v for k, v in os.environ.items() if k not in ("EPOCHS", "SUBSET")}
    proc = subprocess.run(["bash", str(ROOT / "scripts/demo.sh")], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**base, "PYTHON": str(fake), "CALLS": str(log), "DATA": str(data),
                                             "OUT": "out", **env})
    assert proc.returncode == 0, proc.stderr
    calls = []
    for line in log.read_text().splitlines():
        if line.startswith("-c "):
            continue
        script, *args = line.split()
        calls.append((Path(script).name, {a: b for a, b in zip(args, args[1:] + [""]) if a.startswith("--")}))
    assert [s for s, _ in calls] == ["train_model.py", "generate_stored_pattern.py"] + \
        ["test_score_ood_detection.py"] * 2
    return calls


def _paths(calls):
    """{option: the values the demo's scripts were given} of its output options."""
    out = {}
    for _, args in calls:
        for k in ("--checkpoint", "--stored_pattern_dir", "--results_dir"):
            if k in args:
                out.setdefault(k, set()).add(args[k])
    return out


def test_demo_settings_have_their_own_checkpoint_caches_and_results(tmp_path):
    full = _paths(_demo_calls(tmp_path))
    quick = _paths(_demo_calls(tmp_path, EPOCHS="1", SUBSET="600"))
    other = _paths(_demo_calls(tmp_path, EPOCHS="1", SUBSET="300"))
    # the full demo keeps the names the documentation gives; each run one checkpoint and one cache
    assert full == {"--checkpoint": {"out/checkpoints/fashionmnist/cnn.pt"},
                    "--stored_pattern_dir": {"out/stored_pattern"},
                    "--results_dir": {"out/results/fashionmnist/cnn", "out/results/fashionmnist/cnn/extended"}}
    assert quick == {"--checkpoint": {"out/checkpoints/fashionmnist/cnn_epochs1_subset600.pt"},
                     "--stored_pattern_dir": {"out/stored_pattern_epochs1_subset600"},
                     "--results_dir": {"out/results/fashionmnist/cnn_epochs1_subset600",
                                       "out/results/fashionmnist/cnn_epochs1_subset600/extended"}}
    for a, b in ((full, quick), (quick, other), (full, other)):
        for k in a:
            assert a[k].isdisjoint(b[k]), (k, a[k], b[k])
