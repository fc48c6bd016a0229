"""ood.api: the scripts as Python calls give the rows the scripts give, and ``score_features`` scores
features a user brings (arrays, no files) with the metrics an independent computation gives."""
import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

import generate_stored_pattern
import test_score_ood_detection
from ood import api
from ood.errors import UserError

RUN = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1", "--batch_size", "20",
       "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet", "--resize_val", "16", "--dataset_path", "data",
       "--ood", "iSUN"]
SCORES = ["MSP", "Energy", "ReAct", "RecLag"]
RECLAG = ["--reclag_hidden", "2", "--reclag_epochs", "30"]


def _plain(rows):
    """Rows as results.json stores them (tuples as lists), for exact comparison."""
    return json.loads(json.dumps(rows, sort_keys=True))


def synthetic(seed=0, n_train=120, n_test=60, n_ood=50, d=8, c=3):
    """Features of a made-up network: class clusters for the ID sets, a shifted blob for the OOD set."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (c, d))

    def id_set(n):
        y = rng.integers(0, c, n)
        return {"features": centres[y] + rng.normal(0, 1, (n, d)), "labels": y}
    head = {"weight": centres / 3, "bias": np.zeros(c)}
    return id_set(n_train), id_set(n_test), {"blob": {"features": rng.normal(0, 1.5, (n_ood, d))}}, head


def independent_metrics(id_scores, ood_scores):
    """AUROC and FPR95 (ID positive, the share of OOD accepted at the largest threshold keeping 95 % of
    ID) with scikit-learn's ROC, for continuous scores."""
    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    values = np.r_[id_scores, ood_scores]
    fpr, tpr, _ = roc_curve(labels, values, drop_intermediate=False)
    return roc_auc_score(labels, values), float(fpr[np.argmax(tpr >= 0.95)])


def test_score_features_gives_sklearns_auroc_and_fpr95():
    train, test, ood, head = synthetic()
    rows = api.score_features(train, test, ood, head, scores=["MSP", "Energy"])
    assert [r["score"] for r in rows] == ["MSP", "Energy"] and {r["ood_dataset"] for r in rows} == {"blob"}
    logits = {k: v["features"] @ head["weight"].T + head["bias"] for k, v in (("id", test), ("blob", ood["blob"]))}
    msp = {k: np.exp(v - v.max(1, keepdims=True)).max(1) / np.exp(v - v.max(1, keepdims=True)).sum(1)
           for k, v in logits.items()}
    energy = {k: np.log(np.exp(v).sum(1)) for k, v in logits.items()}
    for row, values in zip(rows, (msp, energy)):
        auroc, fpr95 = independent_metrics(values["id"], values["blob"])
        assert 0.6 < auroc < 1  # a test that can tell a wrong sign or a swapped set
        assert row["auroc"] == pytest.approx(auroc, abs=1e-6)
        assert row["fpr95"] == pytest.approx(fpr95, abs=1e-9)
        assert row["n_id"] == 60 and row["n_ood"] == 50 and row["fpr_variant"] == "standard"
        expected_accuracy = float((logits["id"].argmax(1) == test["labels"]).mean())
        assert row["id_accuracy"] == pytest.approx(expected_accuracy)


def test_score_features_settings_with_and_without_prefix_and_intervals():
    train, test, ood, head = synthetic(seed=1)
    plain = api.score_features(train, test, ood, head, scores=["ReAct", "KNN"], percentile=80, k=5)
    prefixed = api.score_features(train, test, ood, head, scores=["ReAct", "KNN"], react_percentile=80, knn_k=5)
    assert _plain(plain) == _plain(prefixed)
    assert plain[0]["settings"]["percentile"] == 80 and plain[1]["settings"]["k"] == 5
    default = api.score_features(train, test, ood, head, scores=["ReAct"])
    assert default[0]["settings"]["percentile"] != 80
    boot = api.score_features(train, test, ood, head, scores=["MSP"], bootstrap=200)
    lo, hi = boot[0]["auroc_ci"]
    assert lo <= boot[0]["auroc"] <= hi and boot[0]["bootstrap"]["resamples"] == 200
    assert "auroc_ci" not in plain[0]  # no intervals unless asked
    unlabelled = api.score_features(train, {"features": test["features"]}, ood, head, scores=["MSP"])
    assert unlabelled[0]["id_accuracy"] is None and plain[0]["id_accuracy"] is not None


def test_score_features_refuses_what_it_cannot_use():
    train, test, ood, head = synthetic(seed=2)
    with pytest.raises(UserError, match="belongs to HE and RecLag"):  # one name, two scores: not guessed
        api.score_features(train, test, ood, head, scores=["RecLag", "HE"], beta=2)
    with pytest.raises(UserError, match="unknown setting 'hiden'"):
        api.score_features(train, test, ood, head, scores=["RecLag"], hiden=2)
    with pytest.raises(UserError, match="must lie in"):
        api.score_features(train, test, ood, head, scores=["ReAct"], percentile=150)
    with pytest.raises(UserError, match="features must be N x 8"):
        api.score_features(train, {"features": np.zeros((4, 7))}, ood, head, scores=["MSP"])
    with pytest.raises(UserError, match="NaN"):
        bad = np.array(ood["blob"]["features"])
        bad[3, 1] = np.nan
        api.score_features(train, test, {"blob": {"features": bad}}, head, scores=["MSP"])
    with pytest.raises(UserError, match="unknown score"):
        api.score_features(train, test, ood, head, scores=["NoSuchScore"])


def test_score_features_without_training_labels_says_so():
    train, test, ood, head = synthetic(seed=3)
    with pytest.warns(UserWarning, match="no labels"):
        rows = api.score_features({"features": train["features"]}, test, ood, head, scores=["RecLag"],
                                  hidden=2, epochs=20)
    assert rows[0]["score"] == "RecLag" and 0 <= rows[0]["auroc"] <= 1


@pytest.mark.slow
def test_api_and_cli_give_identical_rows_on_the_same_cache(fmnist_run):
    """evaluate(...) with keyword arguments named as the flags writes the rows the script writes, and
    score_features on the cached features (as a user would pass them) gives the same metrics and
    intervals for the same scores and settings."""
    generate_stored_pattern.main(RUN + ["--score", *SCORES, *RECLAG])
    cli = test_score_ood_detection.main(RUN + ["--score", *SCORES, *RECLAG, "--results_dir", "cli"])
    flags = {"dataset": "fashionmnist", "model": "wrn", "layers": 10, "widen_factor": 1, "batch_size": 20,
             "workers": 0, "device": "cpu", "amp": "off", "quiet": True, "resize_val": 16, "dataset_path": "data",
             "ood": ["iSUN"], "score": SCORES, "reclag_hidden": 2, "reclag_epochs": 30,
             "results_dir": "api"}
    rows = api.evaluate(**flags)
    assert _plain(rows) == _plain(cli)
    stored = json.loads((fmnist_run / "api/results.json").read_text())["rows"]
    assert _plain(stored) == _plain(json.loads((fmnist_run / "cli/results.json").read_text())["rows"])

    store = fmnist_run / "stored_pattern/fashionmnist/wrn"
    load = lambda name: torch.load(store / f"features/{name}.pt", weights_only=True)  # noqa: E731
    head = torch.load(store / "head.pt", weights_only=True)
    mine = api.score_features(load("train"), load("test"), {"iSUN": load("iSUN")},
                              head, scores=SCORES, hidden=2, epochs=30, bootstrap=1000, dataset="fashionmnist")
    by_key = {(r["score"], r["ood_dataset"]): r for r in cli}
    assert len(mine) == len(cli) == 4
    for r in mine:
        theirs = by_key[(r["score"], r["ood_dataset"])]
        assert r["settings"] == theirs["settings"] and r["id_features"] == theirs["id_features"]
        for key in ("auroc", "fpr95", "aupr_in", "aupr_out", "id_accuracy"):
            assert r[key] == pytest.approx(theirs[key], abs=1e-9), (r["score"], key)
        for key in ("auroc_ci", "fpr95_ci"):
            assert r[key] == pytest.approx(theirs[key], abs=1e-9), (r["score"], key)
        assert r.get("vs", {}).keys() == theirs.get("vs", {}).keys()


@pytest.mark.slow
def test_api_checks_flags_as_the_script_does(fmnist_run):
    with pytest.raises(UserError, match="invalid choice: 'nope'"):
        api.evaluate(dataset_path="data", dataset="fashionmnist", protocol="nope")
    with pytest.raises(UserError, match="unknown argument 'no_such_flag'"):
        api.evaluate(dataset_path="data", no_such_flag=1)
    with pytest.raises(UserError, match="unknown data set 'qmnist'"):
        api.evaluate(dataset_path="data", dataset="qmnist", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the API uses no moved path
        done = api.verify(dataset_path="data", target="fashionmnist", ood=["iSUN"],
                          expect=["fashionmnist/train=100", "fashionmnist/test=40", "iSUN=10"])
    assert done.report.ok and done.target == "fashionmnist"


def test_to_argv_names_flags_as_the_parser_does():
    p = api.parser("aggregate", [])
    assert api.to_argv({"results": ["a", "b"], "out": "x", "plot": False, "ddof": 1}, p) == \
        ["a", "b", "--out", "x", "--no_plot", "--ddof", "1"]
    assert api.to_argv({"results": "a", "out": "x", "plot": True, "quiet": True}, p) == ["a", "--out", "x", "--quiet"]
    p = api.parser("verify", [])
    assert api.to_argv({"target": "cifar10"}, p) == ["--for", "cifar10"]
    p = api.parser("evaluate", [])  # --channels_last / --no_channels_last share one destination, default None
    assert api.to_argv({"channels_last": False}, p) == ["--no_channels_last"]
    assert api.to_argv({"channels_last": True}, p) == ["--channels_last"]
    assert api.to_argv({"channels_last": None, "plot": False}, p) == []



def test_score_features_under_openoods_defaults_fits_react_on_val():
    train, test, ood, head = synthetic(seed=4)
    with pytest.raises(UserError, match="fits on the ID val split"):
        api.score_features(train, test, ood, head, scores=["ReAct"], benchmark="openood")
    val = synthetic(seed=5)[1]
    rows = {r["score"]: r for r in api.score_features(train, test, ood, head, scores=["ReAct", "MSP"],
                                                        benchmark="openood", val=val)}
    assert rows["ReAct"]["settings"]["fit_on"] == "val" and rows["MSP"]["settings"] == {"precision": "float32"}
    assert rows["MSP"]["fpr_variant"] == "openood"  # the benchmark's convention, as --benchmark openood
    on_train = api.score_features(train, test, ood, head, scores=["ReAct"], benchmark="openood", val=val,
                                  fit_on="train")
    assert "fit_on" not in on_train[0]["settings"]  # train: what ReAct did before the setting existed
