"""sweep_scores.py: grid points equal single scoring runs, fits are shared, the selection looks at the
validation sets only, the operating point of RecLag, and clear errors for a bad grid."""
import json
from pathlib import Path

import pytest

import datagen
import sweep_scores
import test_score_ood_detection
import train_model
from ood.evaluation.sweep import select

COMMON = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1", "--batch_size", "20",
          "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]
OODS = ["--ood", "iSUN", "Digits", "GaussianNoise"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    datagen.write_fashion_mnist(base / "data", n_train=100, n_test=40)
    datagen.write_image_folder(base / "data" / "iSUN", n=10)
    import os
    cwd = os.getcwd()
    os.chdir(base)
    try:
        train_model.main(COMMON + ["--dataset_path", str(base / "data"), "--epochs", "3", "--lr", "0.05",
                                   "--augment", "none", "--resize_val", "16"])
    finally:
        os.chdir(cwd)
    return base


@pytest.fixture
def args(trained, monkeypatch):
    monkeypatch.chdir(trained)
    return COMMON + ["--dataset_path", str(trained / "data")] + OODS


def metrics(row):
    keys = ("score", "ood_dataset", "settings", "replicates", "auroc", "fpr95", "aupr_in", "aupr_out", "auroc_std",
            "n_id", "n_ood", "protocol")
    return {k: row.get(k) for k in keys}


def test_grid_points_equal_single_runs(args):
    rows = sweep_scores.main(args + ["--grid", "ReAct:percentile=80,95", "RecLag:hidden=3,6", "RecLag:seed=1,2",
                                     "--reclag_epochs", "2", "--results_dir", "sw"])
    assert len(rows) == (2 + 2) * 3
    single = test_score_ood_detection.main(args + ["--score", "ReAct", "--react_percentile", "95", "--results_dir", "a"])
    single += test_score_ood_detection.main(args + ["--score", "RecLag", "--reclag_hidden", "6", "--reclag_seed", "1",
                                                    "2", "--reclag_epochs", "2", "--results_dir", "b"])
    by = {(r["score"], json.dumps(r["settings"], sort_keys=True), r["ood_dataset"]): r for r in rows}
    for r in single:
        assert metrics(by[(r["score"], json.dumps(r["settings"], sort_keys=True), r["ood_dataset"])]) == metrics(r)
    saved = json.loads(Path("sw/sweep.json").read_text())
    assert saved["grid"] == {"ReAct": {"percentile": [80.0, 95.0]}, "RecLag": {"hidden": [3, 6], "seed": [1, 2]}}
    cost = saved["cost"]
    assert cost["seconds_per_point"] > 0 and cost["backbone_pass_total_seconds"] > 0
    assert len(cost["seconds_per_fit"]) == 2  # ReAct and RecLag were fitted; MSP-like scores need no fit
    for f in ("sweep.md", "sweep_react.png", "sweep_reclag.png"):
        assert (Path("sw") / f).stat().st_size > 100
    # a seed axis pools: one row per (hidden, OOD set) with both seeds' metrics
    reclag = [r for r in rows if r["score"] == "RecLag"]
    assert len(reclag) == 6 and all(len(r["replicate_metrics"]) == 2 for r in reclag)


def test_selection_looks_at_validation_sets_only():
    """The validation set prefers setting A, the test set B: A is chosen, whatever the test rows say."""
    class Cls:
        name = "X"

    def row(label, ood, auroc):
        return {"score": "X", "label": label, "ood_dataset": ood, "auroc": auroc, "fpr95": 1 - auroc,
                "settings": {"s": label}}
    rows = [row("A", "val", 0.9), row("B", "val", 0.8), row("A", "test", 0.5), row("B", "test", 0.99)]
    chosen = select(rows, {Cls: {}}, ["val"])
    assert chosen["X"]["label"] == "A"
    for flipped in (0.0, 0.7, 1.0):  # the test rows do not matter
        rows[2]["auroc"] = flipped
        assert select(rows, {Cls: {}}, ["val"])["X"]["label"] == "A"


def test_selected_table_and_operating_point(args):
    sweep_scores.main(args + ["--grid", "HE:beta=0.01,1", "RecLag:beta=1,5", "--reclag_epochs", "2",
                              "--select_on", "GaussianNoise", "--operating_point", "--results_dir", "sel"])
    md = Path("sel/selected.md").read_text()
    assert md.startswith("settings chosen on GaussianNoise only")
    assert "GaussianNoise" not in md.splitlines()[2] and "iSUN AUROC" in md  # validation set left out
    selected = json.loads(Path("sel/selected.json").read_text())
    assert selected["test"] == ["iSUN", "Digits"] and {r["ood_dataset"] for r in selected["rows"]} == {"iSUN", "Digits"}
    op = json.loads(Path("sel/reclag_operating_point.json").read_text())
    assert op["accept_at_lambda_95"]["id"] >= 0.95
    assert op["settings"]["beta"] == selected["selection"]["RecLag"]["settings"]["beta"]
    lines = Path("sel/reclag_operating_point.csv").read_text().splitlines()
    assert lines[0].startswith("log_lambda,lambda,ID test,iSUN") and len(lines) > 100
    assert Path("sel/reclag_operating_point.png").read_bytes()[:4] == b"\x89PNG"
    # a later sweep into the folder (the same grid, no selection) moves this one aside, selection included
    sweep_scores.main(args + ["--grid", "HE:beta=0.01,1", "--results_dir", "sel"])
    assert not Path("sel/selected.md").exists() and not Path("sel/reclag_operating_point.json").exists()
    [old] = Path("sel/previous").iterdir()
    assert json.loads((old / "selected.json").read_text()) == selected and (old / "sweep.json").exists()


@pytest.mark.parametrize("grid,message", [
    (["RecLag:width=3"], "RecLag has no setting 'width'"),
    (["RecLag:hidden=0"], "--grid RecLag:hidden 0"),
    (["RecLag-hidden=3"], "write SCORE:SETTING=V1,V2"),
    (["NoScore:x=1"], "unknown score 'NoScore'"),
])
def test_bad_grid_is_one_line(args, capsys, grid, message):
    with pytest.raises(SystemExit) as e:
        sweep_scores.main(args + ["--grid", *grid])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_setting_given_twice_sweeps_every_value(args):
    rows = sweep_scores.main(args + ["--grid", "ReAct:percentile=90", "ReAct:percentile=80,90", "--results_dir", "t"])
    assert sorted({r["settings"]["percentile"] for r in rows}) == [80.0, 90.0] and len(rows) == 2 * 3


def test_a_plugin_score_is_swept_with_its_flags(args):
    rows = sweep_scores.main(args + ["--grid", "plugin_scores:Prototype:power=1,2", "--prototype_shrink", "0.5",
                                     "--results_dir", "p"])
    assert {(r["score"], r["settings"]["power"], r["settings"]["shrink"]) for r in rows} == \
        {("Prototype", 1.0, 0.5), ("Prototype", 2.0, 0.5)}


def test_select_on_a_folder_of_ones_own(args, trained):
    rows = sweep_scores.main(args + ["--ood", "iSUN", f"val={trained / 'data' / 'iSUN'}", "Digits",
                                     "--grid", "ReAct:percentile=80,95", "--select_on", "VAL", "--results_dir", "v"])
    selected = json.loads(Path("v/selected.json").read_text())
    assert selected["validation"] == ["val"] and selected["test"] == ["iSUN", "Digits"] and rows


def test_a_declared_grid_through_an_implicit_value(args, tmp_path):
    """fDBD's declared grid sweeps distance_as_normalizer over true (its implicit value, left out of the
    rows' settings as before the setting existed) and false: the figure and the labels read the true
    rows as true, not as a missing setting."""
    rows = sweep_scores.main(args + ["--grid", "fDBD", "--results_dir", str(tmp_path / "fdbd")])
    labels = {r["label"] for r in rows}
    assert labels == {"fDBD (distance_as_normalizer=True)", "fDBD (distance_as_normalizer=False)"}
    assert (tmp_path / "fdbd" / "sweep_fdbd.png").exists()
    assert {json.dumps(r["settings"], sort_keys=True) for r in rows} == \
        {"{}", json.dumps({"distance_as_normalizer": False})}
