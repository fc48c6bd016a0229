"""Output folders through the scripts: a rerun moves aside only the files the tool wrote (the user's own
files and folders stay), a run's outputs land as a unit (a full disk changes nothing, a run killed after
its commit point is finished by the next one, and the files of a folder always agree), and an output
location that cannot be written is one line and exit status 2, before any long work.

Tests run as root, for whom a chmod-ed folder is still writable: an unwritable folder is simulated by a
``tempfile.mkstemp`` that refuses it (PermissionError, as the kernel would), a full disk by a write that
raises ENOSPC."""
import csv
import functools
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import aggregate_results
import checks
import sweep_scores
import test_score_ood_detection
from ood.reporting.aggregate import find_results
from ood.errors import UserError
from ood.io import safe_name
from ood.evaluation.rows import table_groups

# the session's backbone is near chance: its warning line comes before the error line
exits_2 = functools.partial(checks.exits_2, ignore_warnings=True)


ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]
USER = {"notes.txt": b"my notes", "my_analysis.py": b"print('mine')\n", "mine/data.csv": b"a,b\n1,2\n",
        "plots/my_figure.svg": b"<svg/>"}


@pytest.fixture
def trained(trained_fmnist):
    """A WRN-10-1 trained at 16 px and a second checkpoint, other.pt (tests/conftest.py)."""
    return trained_fmnist


@pytest.fixture
def run_dir(trained, tmp_path, monkeypatch):
    for name in ("data", "checkpoints"):
        shutil.copytree(trained / name, tmp_path / name)
    shutil.copy(trained / "other.pt", tmp_path / "other.pt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def score(run_dir, *extra):
    """Score into res/ (iSUN and the folder set Mine)."""
    return test_score_ood_detection.main(TINY + ["--dataset_path", str(run_dir / "data"), "--ood", "iSUN",
                                                 f"Mine={run_dir / 'data/mine'}", "--results_dir", "res",
                                                 *extra])


def sweep(run_dir, *extra):
    return sweep_scores.main(TINY + ["--dataset_path", str(run_dir / "data"), "--ood", "iSUN",
                                     f"Mine={run_dir / 'data/mine'}", "--grid", "Energy:T=1,2",
                                     "--results_dir", "sw", *extra])


def snapshot(folder):
    """Every file below ``folder`` but the lock: relative path -> bytes."""
    folder = Path(folder)
    return {f.relative_to(folder).as_posix(): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != ".lock"}


def add_user_files(folder):
    for rel, data in USER.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def assert_user_files(folder):
    for rel, data in USER.items():
        assert (folder / rel).read_bytes() == data, rel


def assert_consistent(folder):
    """The files of a results folder tell one story: one checkpoint, the same rows in results.json,
    .csv, .md and .tex, plots and per-sample scores of those rows only, nothing staged left over."""
    folder = Path(folder)
    rows = json.loads((folder / "results.json").read_text())["rows"]
    labels = {r["label"] for r in rows}
    assert len({r["checkpoint"] for r in rows}) == 1
    in_csv = {line[0] for line in csv.reader((folder / "results.csv").read_text().splitlines())
              if line and line[0] != "score"}
    in_md = {line.split(" | ")[0][2:] for line in (folder / "results.md").read_text().splitlines()
             if line.startswith("| ") and not line.startswith("| Score")}
    tex = (folder / "results.tex").read_text()
    assert in_csv == labels and in_md == labels and all(f"\n{lab} & " in tex for lab in labels)
    plots = {p.name for p in (folder / "plots").glob("*_*.png")}
    tables = len(table_groups(rows))  # one forest plot per table
    assert plots <= {f"{kind}_{safe_name(lab)}.png" for lab in labels for kind in ("hist", "roc")} | \
        {f"forest_{i + 1}.png" for i in range(tables)}, plots
    if (folder / "scores.npz").exists():
        import numpy as np
        with np.load(folder / "scores.npz") as npz:
            assert {k.split("/")[0].split("@")[0] for k in npz.files if k != "__index__"} <= labels
    assert not list(folder.glob(".staging-*")) and not list(folder.rglob("*.tmp"))
    return rows


# ----------------------------------------------------------------------------------------------------
# Issue 17.6: only the tool's own files are archived
# ----------------------------------------------------------------------------------------------------
def test_rerun_with_another_checkpoint_archives_only_the_tools_files(run_dir, capsys):
    score(run_dir, "--score", "MSP", "Energy", "--save_scores", "--plot")
    res = run_dir / "res"
    written = set(snapshot(res))
    assert {"results.json", "scores.npz", "plots/hist_MSP.png", "plots/roc_Energy.png"} <= written
    add_user_files(res)
    capsys.readouterr()
    score(run_dir, "--score", "MSP", "--checkpoint", "other.pt")
    assert "moved to" in capsys.readouterr().out
    assert_user_files(res)
    assert (res / ".lock").exists()
    [old] = (res / "previous").iterdir()
    assert set(snapshot(old)) == written  # the tool's files, and only those
    rows = assert_consistent(res)
    assert [r["score"] for r in rows] == ["MSP", "MSP"]
    # plots/ stayed (it holds the user's figure), so plots follow; scores.npz went with the old results
    assert (res / "plots/hist_MSP.png").exists() and not (res / "scores.npz").exists()


def test_sweep_rerun_archives_only_the_sweeps_files(run_dir, capsys, monkeypatch):
    sweep(run_dir)
    sw = run_dir / "sw"
    written = snapshot(sw)
    assert {"sweep.json", "sweep.md", "sweep_energy.png"} <= set(written)
    add_user_files(sw)
    sweep(run_dir)
    assert "held an earlier sweep" in capsys.readouterr().out
    assert_user_files(sw)
    [old] = (sw / "previous").iterdir()
    assert snapshot(old) == written
    # a full disk while the next sweep is written changes nothing, the archive included
    before = snapshot(sw)
    real = Path.write_text

    def full(self, *a, **k):
        if "sweep.md" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)
    monkeypatch.setattr(Path, "write_text", full)
    exits_2(sweep_scores.main, TINY + ["--dataset_path", str(run_dir / "data"), "--ood", "iSUN",
                                       f"Mine={run_dir / 'data/mine'}", "--grid", "Energy:T=1,3",
                                       "--results_dir", "sw"], capsys, "the disk is full", "sw")
    assert snapshot(sw) == before and not list(sw.glob(".staging-*"))


# ----------------------------------------------------------------------------------------------------
# Issue 17.7: a run's outputs land as a unit
# ----------------------------------------------------------------------------------------------------
def test_disk_full_while_staging_changes_nothing(run_dir, capsys, monkeypatch):
    score(run_dir, "--score", "MSP", "--save_scores", "--plot")
    res = run_dir / "res"
    before = snapshot(res)
    real = Path.write_text

    def full(self, *a, **k):  # the tables are written, results.json is not
        if "results.json" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)
    monkeypatch.setattr(Path, "write_text", full)
    argv = TINY + ["--dataset_path", str(run_dir / "data"), "--ood", "iSUN", f"Mine={run_dir / 'data/mine'}",
                   "--results_dir", "res"]
    exits_2(test_score_ood_detection.main, argv + ["--score", "Energy"], capsys, "the disk is full", "res")
    assert snapshot(res) == before
    # the same with another checkpoint: nothing is moved to previous/ either
    exits_2(test_score_ood_detection.main, argv + ["--score", "Energy", "--checkpoint", "other.pt"], capsys,
            "the disk is full")
    assert snapshot(res) == before and not (res / "previous").exists()
    assert not list(res.glob(".staging-*")) and not list(res.rglob("*.tmp"))
    monkeypatch.undo()
    monkeypatch.chdir(run_dir)
    score(run_dir, "--score", "Energy")
    assert {r["score"] for r in assert_consistent(res)} == {"MSP", "Energy"}


def test_run_interrupted_while_placing_its_files_is_finished_by_the_next(run_dir, capsys, monkeypatch):
    """Interrupted after the commit point, just before its results.json is in place: the next run (of the
    first checkpoint again) finishes it, then moves it aside as results of another checkpoint."""
    score(run_dir, "--score", "MSP", "Energy", "--plot")
    first = json.loads(Path("res/results.json").read_text())["rows"][0]["checkpoint"]
    target = os.path.abspath("res/results.json")
    real = os.replace

    def interrupted(src, dst, *a, **k):
        if os.path.abspath(dst) == target:
            raise KeyboardInterrupt
        return real(src, dst, *a, **k)
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score(run_dir, "--score", "MSP", "Energy", "--plot", "--checkpoint", "other.pt")
    monkeypatch.setattr(os, "replace", real)
    capsys.readouterr()
    score(run_dir, "--score", "MSP")
    out = capsys.readouterr().out
    assert "finished writing the outputs of an interrupted earlier run" in out and "moved to" in out
    rows = assert_consistent("res")
    assert [r["score"] for r in rows] == ["MSP", "MSP"] and rows[0]["checkpoint"] == first
    assert not Path("res/plots").exists()  # the plots of the other checkpoint went with its results
    archives = sorted(Path("res/previous").iterdir())
    assert len(archives) == 2
    for folder in archives:
        assert_consistent(folder)
    other = json.loads((archives[1] / "results.json").read_text())["rows"]
    assert {r["checkpoint"] for r in other} != {first} and {r["score"] for r in other} == {"MSP", "Energy"}
    assert (archives[1] / "plots/hist_Energy.png").exists()


@pytest.mark.slow
def test_run_killed_after_archiving_is_finished_by_the_next(run_dir, capsys):
    """SIGKILL right after the earlier results were moved aside, before the new files are in place."""
    score(run_dir, "--score", "MSP", "Energy", "--plot")
    res = run_dir / "res"
    first = json.loads((res / "results.json").read_text())["rows"][0]["checkpoint"]
    argv = TINY + ["--dataset_path", str(run_dir / "data"), "--ood", "iSUN", f"Mine={run_dir / 'data/mine'}",
                   "--results_dir", "res", "--score", "MSP", "--plot", "--checkpoint", "other.pt"]
    code = ("import os, signal, sys\n"
            "import ood.reporting.commit\n"
            "ood.reporting.commit._place = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
            "import test_score_ood_detection\n"
            f"test_score_ood_detection.main({argv!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=run_dir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (res / "results.json").exists() and not (res / "plots").exists()  # archived, nothing placed
    assert len(list(res.glob(".staging-*"))) == 1
    with pytest.raises(UserError):  # a staged results.json is not a run to aggregate
        find_results([res])
    score(run_dir, "--score", "MSP")
    rows = assert_consistent(res)
    assert [r["checkpoint"] for r in rows] == [first, first]
    assert not (res / "plots").exists()
    archives = sorted((res / "previous").iterdir())
    assert [len(json.loads((a / "results.json").read_text())["rows"]) for a in archives] == [4, 2]
    assert (archives[1] / "plots/roc_MSP.png").exists() and not (archives[1] / "plots/roc_Energy.png").exists()


# ----------------------------------------------------------------------------------------------------
# Issue 17.8: outputs that cannot be written
# ----------------------------------------------------------------------------------------------------
def test_read_only_plots_folder_is_one_line_before_long_work(run_dir, capsys, monkeypatch, refuse_writes_under):
    score(run_dir, "--score", "MSP", "--plot")
    res = run_dir / "res"
    before = snapshot(res)
    refuse_writes_under(res / "plots")
    argv = TINY + ["--dataset_path", str(run_dir / "data"), "--ood", "iSUN", f"Mine={run_dir / 'data/mine'}",
                   "--results_dir", "res", "--score", "Energy", "--stored_pattern_dir", "sp2"]
    exits_2(test_score_ood_detection.main, argv, capsys, "res/plots", "Permission denied")
    assert not (run_dir / "sp2").exists()  # before any extraction
    # made read-only after the early check: still one line, and nothing in the folder changed
    import ood.reporting.results
    monkeypatch.setattr(ood.reporting.results, "check_targets", lambda *a: None)
    exits_2(test_score_ood_detection.main, argv, capsys, "res/plots", "Permission denied")
    assert snapshot(res) == before and not list(res.glob(".staging-*"))


def test_aggregate_into_an_unwritable_folder(run_dir, capsys, refuse_writes_under):
    score(run_dir, "--score", "MSP")
    Path("ro").mkdir()
    refuse_writes_under("ro")
    exits_2(aggregate_results.main, ["res", "--out", "ro/agg", "--no_plot"], capsys, "--out ro/agg",
            "Permission denied")
    assert not list(Path("ro").rglob("*"))
    Path("afile").write_text("x")
    exits_2(aggregate_results.main, ["res", "--out", "afile/agg", "--no_plot"], capsys, "--out afile/agg",
            "afile")
    Path("ro/agg/tables").mkdir(parents=True)
    refuse_writes_under("ro/agg/tables")
    exits_2(aggregate_results.main, ["res", "--out", "ro/agg", "--no_plot", "--quiet"], capsys, "ro/agg/tables")
    assert not list(Path("ro/agg").glob("aggregate.*"))
