"""The score registry through the scripts: a user's score as a plug-in end to end, unknown names, the
flags derived from the declarations, and every setting in every results row."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aggregate_results
import scores
import test_score_ood_detection
import train_model

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY = ["--dataset", "cifar10", "--model", "wrn", "--layers", "10", "--widen_factor", "1", "--resize_val", "16",
        "--batch_size", "32", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]


@pytest.fixture
def trained(data, workdir):
    common = TINY + ["--dataset_path", str(data)]
    train_model.main(common + ["--epochs", "3", "--lr", "0.05", "--augment", "none"])
    return common


@pytest.fixture
def plugin_path(monkeypatch):
    """The test module's plug-ins importable; the registry restored afterwards."""
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setattr(scores, "_BY_KEY", dict(scores._BY_KEY))


def test_plugin_score_end_to_end(trained, workdir, plugin_path):
    args = trained + ["--ood", "iSUN", "Textures", "--score", "MSP", "plugin_scores:Prototype",
                      "--prototype_shrink", "0.25", "--save_scores"]
    rows = test_score_ood_detection.main(args)
    proto = [r for r in rows if r["score"] == "Prototype"]
    assert len(proto) == 2 and proto[0]["settings"] == {"power": 1.0, "shrink": 0.25}
    # its stored pattern is keyed like a built-in one: a changed fit setting refits, another does not
    patterns = workdir / "stored_pattern/cifar10/wrn/patterns"
    assert len(list(patterns.glob("prototype-*.pt"))) == 1
    test_score_ood_detection.main(args + ["--prototype_power", "2"])
    assert len(list(patterns.glob("prototype-*.pt"))) == 1
    test_score_ood_detection.main(args[:-3] + ["--prototype_shrink", "0.5"])
    assert len(list(patterns.glob("prototype-*.pt"))) == 2
    # the results folder now holds three variants of Prototype, labelled by what differs
    saved = json.loads((workdir / "results/cifar10/wrn/results.json").read_text())["rows"]
    labels = {r["label"] for r in saved if r["score"] == "Prototype"}
    assert labels == {"Prototype (power=1.0, shrink=0.25)", "Prototype (power=2.0, shrink=0.25)",
                      "Prototype (power=1.0, shrink=0.5)"}
    assert "Prototype (power=2.0, shrink=0.25)/iSUN" in set(np.load(workdir / "results/cifar10/wrn/scores.npz").files)
    # the aggregator takes it like any other score
    agg = aggregate_results.main([str(workdir / "results"), "--out", str(workdir / "agg"), "--no_plot", "--quiet",
                                  "--allow_mixed"])
    assert "Prototype" in {r["score"] for r in agg["rows"]}


def test_unknown_score_names_the_valid_ones(trained, capsys, plugin_path):
    with pytest.raises(SystemExit) as e:
        test_score_ood_detection.main(trained + ["--ood", "iSUN", "--score", "RecLagg"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown score 'RecLagg'. Did you mean RecLag?" in err
    assert all(name in err for name in scores.names()) and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        test_score_ood_detection.main(trained + ["--ood", "iSUN", "--score", "plugin_scores:Nothing"])
    assert e.value.code == 2 and "cannot load score class" in capsys.readouterr().err


@pytest.mark.slow
def test_every_setting_is_a_flag_and_in_every_row(trained):
    help_text = subprocess.run([sys.executable, str(ROOT / "test_score_ood_detection.py"), "--help"],
                               capture_output=True, text=True, cwd=ROOT).stdout
    for cls in scores.registered():
        for p in cls.params:
            assert p.flag(cls.key()) in help_text
    rows = test_score_ood_detection.main(trained + ["--ood", "iSUN", "--score", "extended", "--results_dir", "r"])
    by_score = {r["score"]: r for r in rows}
    assert list(by_score) == scores.names()
    for cls in scores.registered():
        # a setting at an ``implicit`` value (what the score did before the setting existed) is left out
        declared = {p.name for p in cls.params if not p.replicate and p.default_for() not in p.implicit}
        assert set(by_score[cls.name]["settings"]) == declared
        assert set(by_score[cls.name].get("replicates", {})) == {p.name for p in cls.params if p.replicate}


def test_replicate_seeds_are_pooled_in_one_row(trained):
    rows = test_score_ood_detection.main(trained + ["--ood", "iSUN", "--score", "RecLag", "--reclag_seed", "1", "2",
                                                    "3", "--reclag_epochs", "2", "--results_dir", "r"])
    [row] = rows
    assert row["replicates"] == {"seed": [1, 2, 3]} and len(row["replicate_metrics"]) == 3
    aurocs = [m["auroc"] for m in row["replicate_metrics"]]
    assert row["auroc"] == pytest.approx(sum(aurocs) / 3)
    assert row["auroc_std"] == pytest.approx(torch.tensor(aurocs, dtype=torch.float64).std(unbiased=False).item())
