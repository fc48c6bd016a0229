"""Reliability round 4 (items 4-6), through the scripts: a second --save_scores run keeps the per-sample
scores of the rows it keeps; aggregate_results.py refuses a named folder without results; every table
of the scoring script shows the backbone's ID test accuracy and warns when it is near chance; the demo
gives each EPOCHS / SUBSET setting its own checkpoint, caches and results."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aggregate_results
import test_score_ood_detection

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]


@pytest.fixture
def run_dir(fmnist_run):
    """A working directory with a copy of the data and the trained checkpoint (tests/conftest.py)."""
    return fmnist_run


def score(run_dir, *extra):
    return test_score_ood_detection.main(TINY + ["--dataset_path", str(run_dir / "data"), *extra])


def exits_2(fn, argv, capsys, *phrases):
    """``fn(argv)`` ends with exit status 2 and one error line on stderr (warnings aside: the session's
    backbone is near chance), no traceback, containing ``phrases``."""
    with pytest.raises(SystemExit) as e:
        fn(argv)
    err = "\n".join(x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("warning: "))
    assert e.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for p in phrases:
        assert p in err, err
    return err


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
    err = exits_2(aggregate_results.main, ["seed3", "seed1", "seed4", "--out", "agg"], capsys,
                  "no results.json under seed3, seed4 ", "leave them out")
    assert not Path("agg/aggregate.md").exists()
    # a results.json without rows holds no results either
    _results(tmp_path / "seed5", 0.7, rows=False)
    exits_2(aggregate_results.main, ["seed1", "seed5", "--out", "agg"], capsys, "seed5/results.json holds no rows")
    assert not Path("agg/aggregate.md").exists()
    agg = aggregate_results.main(["seed1", "seed2", "--out", "agg", "--no_plot", "--quiet"])
    assert agg["groups"][0]["runs"] == ["seed1", "seed2"]
