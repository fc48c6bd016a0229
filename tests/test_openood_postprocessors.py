"""Every score OpenOOD v1.5 also has, built as ``--benchmark openood`` builds it with no setting given,
gives OpenOOD's own per-sample scores and metrics: those of its postprocessors at their configured
``postprocessor_args``, run by OpenOOD's evaluator on seeded features (tests/fixtures/
openood_postprocessors.npz; how it was made, and the spec of each postprocessor: tests/fixtures/README.md
and openood_postprocessors.md). Also MSP and GEN on saturated logits, where OpenOOD's float32 ties."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import scores
from ood.evaluation.metrics import compute_metrics
from ood.params import Context

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "openood_postprocessors.npz")
CTX = Context(dataset="openood-cifar10", feature_dim=32, num_classes=10, benchmark="openood")
SCORED = ("test", "near", "far_sparse", "far_dense")
OOD = SCORED[1:]

# OpenOOD's postprocessor -> (our score, the settings the fixture could not take at OpenOOD's configured
# value: ViM's dim 256 needs d > 256 (the fixture's d is 32, OpenOOD ran it at 16); NNGuide's bank is made of
# the fixture loader's batches of 128, not the evaluator's 200), relative tolerance (what float32 against
# float64 leaves; tests/fixtures/openood_postprocessors.md, section 2)
SHARED = {
    "msp": ("MSP", {}, 0), "msp@sat": ("MSP", {}, 0), "ebo": ("Energy", {}, 2e-7), "ebo@sat": ("Energy", {}, 2e-7),
    "react": ("ReAct", {}, 2e-7), "ash": ("ASH-B", {}, 3e-7), "scale": ("SCALE", {}, 5e-7),
    "knn": ("KNN", {}, 5e-7), "gen": ("GEN", {}, 1e-6), "gen@sat": ("GEN", {}, 1e-6),
    "vim": ("ViM", {"dim": 16}, 3e-4), "dice": ("DICE", {}, 2e-7),
    "nnguide": ("NNGuide", {"bank_batch": int(FIXTURE["batch_size"])}, 5e-7), "fdbd": ("fDBD", {}, 2e-7),
    "mds": ("Mahalanobis", {}, 5e-7), "rmds": ("RMD", {}, 2e-5), "mls": ("MaxLogit", {}, 0),
    "mls@sat": ("MaxLogit", {}, 0), "she": ("SHE", {}, 3e-7),
}


# OpenOOD's argument names -> ours (postprocessor_args in configs/postprocessors/<name>.yml)
ARG_NAMES = {"p": "sparsity", "temperature": "T", "K": "k", "alpha": "bank_fraction", "percentile": "percentile",
             "gamma": "gamma", "M": "M", "dim": "dim", "distance_as_normalizer": "distance_as_normalizer"}


def inputs(split, saturated=False):
    scale = float(FIXTURE["inputs/sat_scale"]) if saturated else 1.0
    return {"features": torch.from_numpy(FIXTURE[f"inputs/{split}/features"]),
            "logits": torch.from_numpy(FIXTURE[f"inputs/{split}/logits{'_sat' if saturated else ''}"]),
            "labels": torch.from_numpy(FIXTURE[f"inputs/{split}/labels"])}, scale


def ours(run):
    """Our score's values on the scored sets, built under the benchmark's context and fitted on the split it
    says (``fit_split``: ReAct on the ID validation split, as OpenOOD)."""
    name, settings, _ = SHARED[run]
    saturated = run.endswith("@sat")
    scale = float(FIXTURE["inputs/sat_scale"]) if saturated else 1.0
    head = {"weight": torch.from_numpy(FIXTURE["inputs/fc_weight"]) * scale,
            "bias": torch.from_numpy(FIXTURE["inputs/fc_bias"]) * scale}
    score = scores.instances(scores.get(name), settings, CTX)[0]
    state = score.fit(inputs(score.fit_split(), saturated)[0], head) if score.needs_fit() else {}
    return score, {s: score.score(inputs(s, saturated)[0], state, head).double().numpy() for s in SCORED}


def ash_ties(percentile=90.0):
    """Rows where ASH-B's top k holds zeros: which of them OpenOOD's torch.topk picks is unspecified."""
    k = 32 - round(32 * percentile / 100)
    return {s: (FIXTURE[f"inputs/{s}/features"] > 0).sum(1) < k for s in SCORED}


@pytest.mark.parametrize("run", sorted(SHARED))
def test_per_sample_scores_equal_openoods_at_its_defaults(run):
    score, values = ours(run)
    args = {ARG_NAMES[k]: v for k, v in json.loads(str(FIXTURE[f"{run}/args"])).items() if k in ARG_NAMES}
    assert {k: score.settings[k] for k in args} == args  # OpenOOD's configured values, ViM's dim as it ran
    skip = ash_ties() if run == "ash" else {s: np.zeros(len(v), bool) for s, v in values.items()}
    tolerance = SHARED[run][2]
    for s in SCORED:
        theirs = FIXTURE[f"{run}/conf/{s}"].astype(np.float64)
        keep = ~skip[s]
        assert keep.sum() > 0.5 * len(keep)
        np.testing.assert_allclose(values[s][keep], theirs[keep], rtol=tolerance,
                                   atol=tolerance * max(1.0, np.abs(theirs).max()), err_msg=f"{run} on {s}")


@pytest.mark.parametrize("run", [r for r in sorted(SHARED) if r != "ash"])
def test_metrics_equal_openoods(run):
    """compute_metrics(..., "openood") of our scores gives OpenOOD's table: near, far and their means."""
    _, values = ours(run)
    table = FIXTURE[f"{run}/ood_metrics"]
    rows = [str(r) for r in FIXTURE[f"{run}/metric_rows"]]
    per_set = {o: compute_metrics(values["test"], values[o], "openood") for o in OOD}
    expected = {o: table[rows.index(o)] for o in OOD}
    for o in OOD:
        got = per_set[o]
        assert 100 * np.array([got["fpr95"], got["auroc"], got["aupr_in"], got["aupr_out"]]) == \
            pytest.approx(expected[o][:4], abs=1e-6), f"{run} against {o}"
    far = np.mean([[per_set[o][m] for m in ("fpr95", "auroc")] for o in ("far_sparse", "far_dense")], 0)
    assert 100 * far == pytest.approx(table[rows.index("farood")][:2], abs=1e-6)


def test_msp_on_saturated_logits_ties_as_openoods():
    """OpenOOD's float32 softmax gives exactly 1.0 on most saturated inputs, so they tie, and its other
    values are float32's: under the benchmark ours are the same numbers, bit for bit; the float64 softmax
    (rounded to float32 afterwards) differs in the last bits, which reorders near-ties."""
    score, values = ours("msp@sat")
    assert score.precision == "float32"
    for s in SCORED:
        theirs = FIXTURE[f"msp@sat/conf/{s}"]
        assert np.array_equal(values[s], theirs.astype(np.float64)), s
    assert (values["test"] == 1.0).sum() > 50
    plain = scores.instances(scores.get("MSP"), {}, Context(feature_dim=32, num_classes=10))[0]
    assert plain.precision == "float64"
    differ = [not np.array_equal(plain.score(inputs(s, saturated=True)[0], {}, None).numpy(),
                                 FIXTURE[f"msp@sat/conf/{s}"]) for s in SCORED]
    assert any(differ)


def test_the_benchmarks_defaults_are_declared_and_shown():
    """Each shared setting names OpenOOD's default beside its own, in --help and in the rows' settings."""
    expected = {("ReAct", "percentile"): 90.0, ("ReAct", "fit_on"): "val", ("ASH-B", "percentile"): 90.0,
                ("SCALE", "percentile"): 85.0, ("KNN", "k"): 50, ("KNN", "distance"): "squared",
                ("GEN", "gamma"): 0.1, ("GEN", "M"): 100, ("GEN", "precision"): "float32", ("ViM", "dim"): 256,
                ("DICE", "sparsity"): 90.0, ("NNGuide", "k"): 100, ("NNGuide", "bank"): "first",
                ("NNGuide", "bank_fraction"): 0.01, ("fDBD", "distance_as_normalizer"): True,
                ("fDBD", "reduction"): "sum", ("MSP", "precision"): "float32", ("Energy", "T"): 1.0}
    for (name, setting), value in expected.items():
        param = next(p for p in scores.get(name).params if p.name == setting)
        assert param.default_for(Context(dataset="openood-cifar10", benchmark="openood", feature_dim=512,
                                         num_classes=10)) == value, (name, setting)
        shown = "256 (below the feature size" if (name, setting) == ("ViM", "dim") else repr(value)
        assert f"under --benchmark openood: {shown}" in param.help_text()
    small = Context(dataset="openood-cifar10", benchmark="openood", feature_dim=128, num_classes=10)
    assert scores.instances(scores.get("ViM"), {}, small)[0].dim == 64  # 256 needs d > 256
    paper = Context(dataset="cifar10", feature_dim=512, num_classes=10)  # the paper's benchmark: as before
    assert scores.instances(scores.get("SCALE"), {}, paper)[0].percentile == 65
    assert scores.instances(scores.get("NNGuide"), {}, paper)[0].k == 10
    assert scores.instances(scores.get("ReAct"), {}, paper)[0].fit_split() == "train"


def test_fdbd_searches_its_normaliser_as_openood():
    """fdbd.yml sweeps distance_as_normalizer over true and false; with false the normaliser is ||phi||."""
    param = next(p for p in scores.get("fDBD").params if p.name == "distance_as_normalizer")
    assert param.grid_for(CTX) == (True, False)
    score = scores.instances(scores.get("fDBD"), {"distance_as_normalizer": False}, CTX)[0]
    head = {"weight": torch.from_numpy(FIXTURE["inputs/fc_weight"]), "bias": torch.from_numpy(FIXTURE["inputs/fc_bias"])}
    state = score.fit(inputs("train")[0], head)
    test = inputs("test")[0]
    by_norm = score.score(test, state, head).double()
    by_mean = scores.instances(scores.get("fDBD"), {}, CTX)[0].score(test, state, head).double()
    ratio = by_norm / by_mean
    expected = (test["features"].double() - state["mean"]).norm(dim=1) / test["features"].double().norm(dim=1)
    assert torch.allclose(ratio, expected, rtol=1e-5)


SHARED_SCORES = ["MSP", "Energy", "ReAct", "ASH-B", "SCALE", "KNN", "GEN", "ViM", "DICE", "NNGuide", "fDBD",
                 "Mahalanobis", "RMD", "MaxLogit", "SHE"]


@pytest.mark.slow
def test_through_the_scripts_each_row_is_at_openoods_defaults(tmp_path, monkeypatch):
    """On OpenOOD's CIFAR-10 layout in small, with a checkpoint in OpenOOD's key layout: every shared score
    run with no setting flag names OpenOOD's configured settings in its row, ReAct's threshold is read off
    the ID validation split (as OpenOOD's setup does) and MSP is OpenOOD's float32 softmax."""
    import datagen
    import test_score_ood_detection
    from test_openood import RUN, _checkpoint

    datagen.write_openood(tmp_path / "data", "cifar10")
    ckpt = _checkpoint(tmp_path / "c10.ckpt", "openood_resnet18_32x32", "cifar10", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning):  # KNN's K = 50 and NNGuide's 100 exceed the tiny training set
        rows = test_score_ood_detection.main(
            ["--benchmark", "openood", "--dataset", "cifar10", "--model", "openood_resnet18_32x32", "--checkpoint",
             str(ckpt), "--dataset_path", str(tmp_path / "data"), *RUN, "--score", *SHARED_SCORES,
             "--save_scores", "--bootstrap", "0"])
    settings = {r["score"]: r["settings"] for r in rows}
    assert settings["ReAct"] == {"percentile": 90.0, "threshold": "interpolated", "fit_on": "val", "T": 1.0}
    assert settings["SCALE"] == {"percentile": 85.0} and settings["ASH-B"] == {"percentile": 90.0}
    assert settings["NNGuide"] == {"k": 100, "bank_fraction": 0.01, "bank": "first"}
    assert settings["KNN"] == {"k": 50, "bank_fraction": 1.0, "distance": "squared"}
    assert settings["GEN"] == {"gamma": 0.1, "M": 100, "precision": "float32"} and settings["ViM"] == {"dim": 256}
    assert settings["DICE"] == {"sparsity": 90.0} and settings["fDBD"] == {"reduction": "sum"}
    assert settings["MSP"] == {"precision": "float32"} and settings["Energy"] == {"T": 1.0}
    store = tmp_path / "stored_pattern" / "openood-cifar10" / "openood_resnet18_32x32"
    saved = np.load(tmp_path / "results" / "openood-cifar10" / "openood_resnet18_32x32" / "scores.npz")
    test = torch.load(store / "features" / "test.pt", weights_only=True)
    val = torch.load(store / "features" / "val.pt", weights_only=True)  # the ID validation split, extracted
    head = torch.load(store / "head.pt", weights_only=True)
    threshold = np.percentile(val["features"].numpy().ravel(), 90)  # as OpenOOD's ReAct setup
    react = torch.logsumexp(test["features"].clamp(max=float(threshold)) @ head["weight"].T + head["bias"], 1)
    np.testing.assert_allclose(saved["ReAct/id"], react.numpy(), rtol=1e-6)
    msp = torch.softmax(test["logits"].float(), 1).max(1).values.numpy()
    assert np.array_equal(saved["MSP/id"], msp)
