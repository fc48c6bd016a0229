"""Reliability round 4 (e): progress without a terminal, the sweep's table on stdout, one style per score.

Under nohup or SLURM stderr is a file, tqdm's bars are off, and training, extraction and sweeps printed
nothing until they ended. These tests run the scripts with stderr captured (not a terminal) and the
interval between progress lines lowered (``ood.system.progress.EVERY``), and look for the plain lines."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.container import BarContainer

import aggregate_results
import scores
import sweep_scores
import test_score_ood_detection
import train_model
from ood.system import progress
from ood.reporting import reports

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off"]
TRAIN = ["--epochs", "2", "--lr", "0.05", "--augment", "none", "--resize_val", "16"]
RATE_ETA = r", [\d.]+ images/s, ETA \d+:\d\d:\d\d$"


def lines(text, start):
    return [x for x in text.splitlines() if x.startswith(start)]


def test_training_prints_progress_lines_without_a_terminal(small_fmnist, capsys, monkeypatch):
    monkeypatch.setattr(progress, "EVERY", 0.0)  # a line after every batch
    train_model.main(TINY + TRAIN + ["--dataset_path", str(small_fmnist)])
    out, err = capsys.readouterr()
    first = lines(err, "training epoch 1/2: ")
    assert [x.split(": ")[1].split(" ")[0] for x in first] == ["20/60", "40/60", "60/60"], err
    assert all(re.search(RATE_ETA, x) for x in first), err
    assert first[-1].startswith("training epoch 1/2: 60/60 images (100%), ") and first[-1].endswith("ETA 0:00:00")
    assert lines(err, "training epoch 2/2: 60/60 images (100%)")
    assert "images/s" not in out  # stdout keeps the run's own lines (the epochs' summaries)
    assert "epoch 2/2  lr" in out


def test_progress_lines_come_at_the_interval_and_at_each_epochs_end(small_fmnist, capsys):
    train_model.main(TINY + TRAIN + ["--dataset_path", str(small_fmnist)])
    err = capsys.readouterr().err
    # the default interval (30 s) is longer than this run: one line at the end of each epoch
    assert [x.split(" images")[0] for x in lines(err, "training epoch")] == [
        "training epoch 1/2: 60/60", "training epoch 2/2: 60/60"], err
    train_model.main(TINY + TRAIN + ["--dataset_path", str(small_fmnist), "--quiet", "--overwrite"])
    assert "images/s" not in capsys.readouterr().err  # --quiet: none


def test_extraction_prints_progress_lines_without_a_terminal(fmnist_run, capsys, monkeypatch):
    monkeypatch.setattr(progress, "EVERY", 0.0)
    test_score_ood_detection.main(TINY + ["--dataset_path", "data", "--ood", "iSUN", "mine=data/mine", "--score", "ReAct",
                                          "--results_dir", "r"])
    err = capsys.readouterr().err
    train = lines(err, "features train: ")
    assert len(train) == 5 and train[-1].startswith("features train: 100/100 images (100%)"), err
    assert all(re.search(RATE_ETA, x) for x in train), err
    # the evaluation sets, in one pass of one loader: 40 test, 10 iSUN and 8 "mine" images
    evaluation = lines(err, "features test, iSUN, custom-mine-")
    assert [x.split(": ")[1].split(" ")[0] for x in evaluation] == ["20/58", "40/58", "58/58"], err
    assert all(re.search(RATE_ETA, x) for x in evaluation), err


def test_a_terminal_keeps_its_tqdm_bar(monkeypatch, capsys):
    monkeypatch.setattr(progress, "EVERY", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert list(progress.track(range(4), "work", 4, size=lambda _: 1, unit="items")) == [0, 1, 2, 3]
    err = capsys.readouterr().err
    assert "\r" in err and "items/s, ETA" not in err  # tqdm's bar, not the plain lines


@pytest.mark.slow
def test_training_under_nohup_writes_progress_to_its_log(small_fmnist, tmp_path):
    """As nohup or SLURM run it: stderr is a file. The interval is lowered in the child."""
    log = tmp_path / "train.err"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ood import progress; progress.EVERY = 0.0; "
            "import train_model; train_model.main(sys.argv[2:])")
    with open(log, "w") as err:
        subprocess.run([sys.executable, "-c", code, str(ROOT), *TINY, *TRAIN, "--epochs", "1",
                        "--dataset_path", str(small_fmnist)], stderr=err, stdout=subprocess.DEVNULL, check=True,
                       cwd=tmp_path)
    text = log.read_text()
    assert "\r" not in text  # no bar redrawn in the log
    assert [x.split(" images")[0] for x in lines(text, "training epoch 1/1: ")] == [
        "training epoch 1/1: 20/60", "training epoch 1/1: 40/60", "training epoch 1/1: 60/60"], text
    assert all(re.search(RATE_ETA, x) for x in lines(text, "training epoch")), text


# ----------------------------------------------------------------------------------------------------
# the sweep: its progress, and its table on stdout
# ----------------------------------------------------------------------------------------------------
SWEEP = ["--dataset_path", "data", "--ood", "iSUN", "mine=data/mine", "GaussianNoise", "--grid", "Energy:T=0.5,1,2"]


def test_sweep_prints_progress_and_its_selected_table(fmnist_run, capsys, monkeypatch):
    monkeypatch.setattr(progress, "EVERY", 0.0)
    rows = sweep_scores.main(TINY + SWEEP + ["--select_on", "GaussianNoise", "--results_dir", "sw"])
    out, err = capsys.readouterr()
    points = lines(err, "sweep: ")
    assert [x.split(" grid")[0] for x in points] == ["sweep: 1/3", "sweep: 2/3", "sweep: 3/3"], err
    assert all(re.search(r", [\d.]+ grid points/s, ETA \d+:\d\d:\d\d$", x) for x in points), err
    # stdout: the table of the selected settings (as selected.md), then the summary line
    selected = Path("sw/selected.md").read_text()
    assert selected.startswith("settings chosen on GaussianNoise only") and selected in out
    chosen = json.loads(Path("sw/selected.json").read_text())["selection"]["Energy"]["label"]
    assert re.search(rf"^\| {re.escape(chosen)} \| [*\d.]+ \| [*\d.]+ \| [*\d.]+ \| [*\d.]+ \|", out, re.M), out
    assert out.index(selected) < out.index(f"{len(rows)} rows, 3 grid points")


def test_sweep_without_a_selection_prints_every_grid_point(fmnist_run, capsys):
    sweep_scores.main(TINY + SWEEP + ["--results_dir", "sw", "--quiet"])
    out, err = capsys.readouterr()
    assert Path("sw/sweep.md").read_text() in out
    assert sum(x.startswith("| Energy") for x in out.splitlines()) == 3
    assert "grid points/s" not in err and "images/s" not in err  # --quiet


# ----------------------------------------------------------------------------------------------------
# one style per score in every figure
# ----------------------------------------------------------------------------------------------------
def test_every_registered_score_has_a_style_of_its_own():
    names = scores.names()
    assert len(names) >= 19
    looks = reports.styles(names)
    assert len(set(looks.values())) == len(names)
    assert looks["MSP"] != looks["ASH-S"] and looks["RecLag"] != looks["KNN"]
    # and the labels of a figure with more variants than the registry has scores
    many = [f"{n} ({k})" for n in names for k in "ab"]
    assert len(set(reports.styles(many).values())) == len(many)


def _row(score, ood, auroc):
    return {"id_dataset": "cifar10", "model": "wrn", "score": score, "ood_dataset": ood, "protocol": "full",
            "repeats": 1, "seed": None, "n_id": 100, "n_ood": 50, "auroc": auroc, "aupr_in": auroc,
            "aupr_out": auroc, "fpr95": 1 - auroc, "auroc_std": 0.0, "fpr95_std": 0.0}


def test_the_aggregate_plot_draws_every_score_apart(tmp_path, monkeypatch):
    names = scores.names()
    rows = [_row(n, o, 0.6 + 0.01 * i) for i, n in enumerate(names) for o in ("SVHN", "iSUN")]
    (tmp_path / "res").mkdir()
    (tmp_path / "res/results.json").write_text(json.dumps({"rows": rows}))
    figures = []
    save = reports.save_figure
    monkeypatch.setattr(reports, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    aggregate_results.main([str(tmp_path / "res"), "--out", str(tmp_path / "agg"), "--quiet"])
    [fig] = figures
    for ax in fig.axes[:2]:  # the FPR95 and the AUROC panel
        looks = {c.get_label(): (tuple(c.patches[0].get_facecolor()), c.patches[0].get_hatch() or "")
                 for c in ax.containers if isinstance(c, BarContainer)}
        assert set(looks) == set(names) and len(set(looks.values())) == len(names), looks
    assert len(fig.legends[0].get_texts()) == len(names)
    assert (tmp_path / "agg/aggregate.png").read_bytes()[:4] == b"\x89PNG"


def test_a_score_keeps_its_style_in_every_panel_and_the_legend_lists_all(tmp_path, monkeypatch):
    """Two tables (backbones) with other scores: the one legend must hold for both panels' bars."""
    for model, names in (("wrn", ("MSP", "Energy")), ("resnet18", ("Energy", "RecLag", "KNN"))):
        (tmp_path / model).mkdir()
        rows = [{**_row(n, o, 0.7), "model": model} for n in names for o in ("SVHN", "iSUN")]
        (tmp_path / model / "results.json").write_text(json.dumps({"rows": rows}))
    figures = []
    save = reports.save_figure
    monkeypatch.setattr(reports, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    aggregate_results.main([str(tmp_path / "wrn"), str(tmp_path / "resnet18"), "--out", str(tmp_path / "agg"),
                            "--quiet"])
    [fig] = figures
    seen = {}
    for ax in fig.axes:
        for c in ax.containers:
            if isinstance(c, BarContainer):
                seen.setdefault(c.get_label(), set()).add(tuple(c.patches[0].get_facecolor()))
    assert set(seen) == {"MSP", "Energy", "RecLag", "KNN"} and all(len(v) == 1 for v in seen.values()), seen
    assert len({next(iter(v)) for v in seen.values()}) == 4
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == sorted(seen)
