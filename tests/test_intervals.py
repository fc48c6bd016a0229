"""Intervals, paired comparisons, ties with the best and the sources of variation, through the scripts
(test_score_ood_detection.py, aggregate_results.py) and the results folder. The statistics themselves
are tested in tests/test_uncertainty.py."""
import json

import numpy as np
import pytest

import aggregate_results
import test_score_ood_detection
from ood.reporting.results import ResultsFolder
from ood.evaluation.rows import dist_key
from ood.evaluation.uncertainty import Bootstrap, Resampled

TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]
METRICS = ("fpr95", "auroc", "aupr_in", "aupr_out")


def score(root, *extra):
    return test_score_ood_detection.main(TINY + ["--dataset_path", str(root / "data"), "--ood", "iSUN",
                                                 f"mine={root / 'data' / 'mine'}", *extra])


@pytest.mark.slow  # through the scripts (pytest.ini)
def test_rows_carry_intervals_comparisons_and_ties(fmnist_run, capsys):
    """Every row has its bootstrap intervals (containing the estimate for AUROC), DeLong's beside them,
    its distribution in bootstrap.npz; every score but RecLag is compared with RecLag; the tables say
    what the bold and the ± mean; a later run of one score leaves the folder's tables (averages and ties,
    recomputed from bootstrap.npz) exactly as they were."""
    rows = score(fmnist_run, "--score", "all", "--plot", "--reclag_seed", "1", "2")
    out = fmnist_run / "results/fashionmnist/wrn"
    assert len(rows) == 12
    with np.load(out / "bootstrap.npz") as npz:
        keys = json.loads(str(npz["__keys__"]))
        assert sorted(keys) == sorted(dist_key(r) for r in rows)
        assert all(npz[f"d{i}"].shape == (4, 1000) for i in range(len(keys)))
    for r in rows:
        assert r["bootstrap"] == {"resamples": 1000, "level": 0.95, "seed": 1}
        assert r["auroc_ci"][0] <= r["auroc"] <= r["auroc_ci"][1]
        for m in METRICS:
            lo, hi = r[f"{m}_ci"]
            assert 0 <= lo <= hi <= 1 and r[f"{m}_se"] >= 0
        lo, hi = r["auroc_delong_ci"]
        assert lo <= r["auroc"] <= hi and r["auroc_delong_se"] > 0
        if r["score"] == "RecLag":
            assert "vs" not in r and len(r["replicate_metrics"]) == 2
            continue
        vs = r["vs"]
        assert vs["reference"] == "RecLag"
        assert vs["auroc_diff"] == pytest.approx(r["auroc"] - next(
            x["auroc"] for x in rows if x["score"] == "RecLag" and x["ood_dataset"] == r["ood_dataset"]), abs=1e-12)
        assert all(0 < vs[k] <= 1 for k in ("auroc_p_delong", "auroc_p_bootstrap", "fpr95_p_bootstrap"))
        assert vs["auroc_diff_ci"][0] <= vs["auroc_diff_ci"][1]
    md = (out / "results.md").read_text()
    assert "half the width of the 95 % interval from the stratified bootstrap (1000 resamples" in md
    assert "AUROC's on the logit scale" in md and "FPR95's Wilson interval" in md
    assert "bold: the best and every score not significantly worse than another (paired bootstrap, all pairs" in md
    assert "| Score vs RecLag | iSUN ΔFPR95 | iSUN ΔAUROC |" in md and "DeLong's test" in md
    head = (out / "results.csv").read_text().splitlines()[0]
    assert "iSUN AUROC_low" in head and "Average AUROC_high" in head
    assert (out / "plots/forest_1.png").stat().st_size > 0

    before = {f: (out / f).read_text() for f in ("results.md", "results.csv", "results.tex")}
    score(fmnist_run, "--score", "MSP", "RecLag", "--reclag_seed", "1", "2")  # the same rows again: the same files
    assert {f: (out / f).read_text() for f in before} == before
    # a run without the reference: MSP's rows keep their comparison, from the stored distributions
    old = {r["ood_dataset"]: r["vs"] for r in rows if r["score"] == "MSP"}
    score(fmnist_run, "--score", "MSP")
    now = {r["ood_dataset"]: r["vs"] for r in json.loads((out / "results.json").read_text())["rows"]
           if r["score"] == "MSP"}
    assert now.keys() == old.keys()
    for o, v in old.items():  # the same numbers, up to the float32 of the stored distributions
        assert now[o]["auroc_p_delong"] is None and now[o]["reference"] == "RecLag"
        for k in ("auroc_diff_ci", "fpr95_diff_ci"):
            assert now[o][k] == pytest.approx(v[k], abs=1e-6)
        for k in ("auroc_p_bootstrap", "fpr95_p_bootstrap", "auroc_diff", "fpr95_diff"):
            assert now[o][k] == pytest.approx(v[k], abs=1e-6)
    capsys.readouterr()


@pytest.mark.slow  # through the scripts (pytest.ini)
def test_no_bootstrap_and_bad_reference(fmnist_run, capsys):
    """--bootstrap 0 writes the tables as before (no interval fields, no bootstrap.npz); a reference that
    is not among the run's scores, or one without resamples, is refused in one line before any work."""
    rows = score(fmnist_run, "--score", "MSP", "Energy", "--bootstrap", "0", "--compare_to", "none")
    out = fmnist_run / "results/fashionmnist/wrn"
    assert not any(k.endswith("_ci") or k in ("bootstrap", "vs") for r in rows for k in r)
    assert not (out / "bootstrap.npz").exists()
    assert "stratified-bootstrap" not in (out / "results.md").read_text()
    capsys.readouterr()
    for extra, phrase in ((["--compare_to", "RecLag"], "--compare_to RecLag: neither among this run's scores"),
                          (["--compare_to", "MSP", "--bootstrap", "0"], "--bootstrap 0 turns them off")):
        with pytest.raises(SystemExit) as e:
            score(fmnist_run, "--score", "MSP", "Energy", "--results_dir", "elsewhere", *extra)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and phrase in err, err
        assert not (fmnist_run / "elsewhere").exists()


@pytest.mark.slow  # through the scripts (pytest.ini)
def test_sampled_protocol_compares_by_bootstrap_only(fmnist_run, capsys):
    """Under --protocol sampled a row's interval is of its mean over the draws (no DeLong, which is of one
    set of images); the comparison has the paired bootstrap's p-values and no DeLong p-value."""
    rows = score(fmnist_run, "--score", "MSP", "Energy", "--protocol", "sampled", "--repeats", "3",
                 "--compare_to", "Energy", "--bootstrap", "300")
    for r in rows:
        assert "auroc_delong_ci" not in r and r["bootstrap"]["resamples"] == 300
        if r["score"] == "MSP":
            assert r["vs"]["auroc_p_delong"] is None and 0 < r["vs"]["auroc_p_bootstrap"] <= 1
    capsys.readouterr()


def _row(score, ood, auroc, fpr, boot):
    return {"id_dataset": "cifar10", "model": "wrn", "score": score, "ood_dataset": ood, "protocol": "full",
            "repeats": 1, "seed": None, "n_id": 400, "n_ood": 300, "auroc": auroc, "aupr_in": 0.5, "aupr_out": 0.5,
            "fpr95": fpr, "auroc_std": 0.0, "fpr95_std": 0.0, "fpr_variant": "standard", "input_size": 32,
            "feature_precision": "fp32", "subset": 0, "settings": {}, "bootstrap": boot.describe(),
            "auroc_ci": [auroc - 0.01, auroc + 0.01], "fpr95_ci": [fpr - 0.01, fpr + 0.01]}


def test_ties_with_the_best_are_paired(tmp_path):
    """A score a hair below the best on the same samples is tied with it (bold); a clearly worse one is
    not; an average column's ties come from the sets' distributions averaged resample by resample."""
    rng = np.random.default_rng(0)
    boot = Bootstrap(400)
    ids, oods = rng.normal(1.0, 1, 400), {o: rng.normal(0, 1, 300) for o in ("A", "B")}
    side = {}
    noisy = {"best": 0.0, "close": 0.05, "worse": 1.5}  # extra noise on the ID scores of the same samples
    rows, dists = [], {}
    for name, extra in noisy.items():
        ids_s = ids + rng.normal(0, extra, ids.size) if extra else ids
        side[name] = Resampled(ids_s, boot.counts(ids.size, "id"))
        for o, x in oods.items():
            d = side[name].metrics(x, boot.counts(x.size, o))
            from ood.evaluation.metrics import compute_metrics
            m = compute_metrics(ids_s, x)
            r = _row(name, o, m["auroc"], m["fpr95"], boot)
            rows.append(r)
            dists[dist_key(r)] = np.stack([d[k] for k in METRICS])
    md = ResultsFolder(tmp_path).write(rows, dists=dists)
    lines = {ln.split(" | ")[0][2:]: ln for ln in md.splitlines() if ln.startswith("| ") and "Score" not in ln}
    cells = {k: v.strip("| ").split(" | ")[1:] for k, v in lines.items()}
    auroc_cols = [1, 3, 5]  # A, B, Average
    assert all(cells["best"][i].startswith("**") for i in auroc_cols)
    assert all(cells["close"][i].startswith("**") for i in auroc_cols), cells["close"]
    assert not any(cells["worse"][i].startswith("**") for i in auroc_cols), cells["worse"]
    assert "±" in cells["best"][5]  # the average has its own interval


def _run_rows(auroc_by_seed, se, seed_dir):
    """A results.json of one training run: one score with two learner seeds, one OOD set."""
    reps = [{"fpr95": 0.5, "auroc": a, "aupr_in": 0.5, "aupr_out": 0.5} for a in auroc_by_seed]
    return {"rows": [{"id_dataset": "cifar10", "model": "wrn", "score": "RecLag", "ood_dataset": "SVHN",
                      "protocol": "full", "repeats": 1, "seed": None, "n_id": 100, "n_ood": 100,
                      "auroc": float(np.mean(auroc_by_seed)), "fpr95": 0.5, "aupr_in": 0.5, "aupr_out": 0.5,
                      "auroc_std": float(np.std(auroc_by_seed)), "fpr95_std": 0.0, "fpr_variant": "standard",
                      "input_size": 32, "feature_precision": "fp32", "subset": 0, "settings": {},
                      "replicates": {"seed": [1, 2]}, "replicate_metrics": reps, "checkpoint": seed_dir,
                      "auroc_se": se, "fpr95_se": 0.0, "aupr_in_se": 0.0, "aupr_out_se": 0.0,
                      "bootstrap": {"resamples": 1000, "level": 0.95, "seed": 1}}]}


@pytest.mark.slow  # through the scripts (pytest.ini)
def test_aggregate_separates_the_sources_of_variation(tmp_path, capsys):
    """Three training runs with two learner seeds each: the test-sample part is the runs' bootstrap
    standard errors, the learner part the within-run spread; without their bootstrap distributions the
    runs' own test-sample noise cannot be taken out of their spread, so the training part and the total
    are not given and the table says what they need (with them: tests/test_statistics2_f.py)."""
    runs = {"seed1": ([0.80, 0.81], 0.004), "seed2": ([0.90, 0.91], 0.005), "seed3": ([0.70, 0.72], 0.006)}
    for name, (a, se) in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_run_rows(a, se, name)))
    aggregate_results.main([str(tmp_path / n) for n in runs] + ["--out", str(tmp_path / "agg")])
    agg = json.loads((tmp_path / "agg/aggregate.json").read_text())
    v = next(r for r in agg["rows"] if r["ood_dataset"] == "SVHN")["variation"]["auroc"]
    within = np.mean([np.var(a, ddof=1) for a, _ in runs.values()])
    assert v["learner_seeds"] == pytest.approx(np.sqrt(within))
    assert v["training_seeds"] is None and v["total"] is None and v["dominant"] is None
    assert v["test_samples"] == pytest.approx(np.sqrt(np.mean([se ** 2 for _, se in runs.values()])))
    md = (tmp_path / "agg/aggregate.md").read_text()
    assert "Sources of variation of AUROC" in md and "with their bootstrap distributions (bootstrap.npz" in md
    assert "AUROC_sd_training_seeds" in (tmp_path / "agg/aggregate.csv").read_text().splitlines()[0]
    capsys.readouterr()


def test_sampled_draws_are_resampled_with_their_set():
    """The sampled protocol's draws overlap; each resample is of the whole OOD set, seen through every
    draw. With draws as large as the set, its bootstrap equals the full protocol's (resampling each draw
    apart would divide the OOD part of the variance by the number of draws)."""
    from ood.evaluation.protocols import bootstrap_distribution, plan_for, resampled_ids
    rng = np.random.default_rng(3)
    ids, ood = [rng.normal(0.8, 1, 1000)], [rng.normal(0, 1, 150)]
    boot = Bootstrap(500)
    sides = resampled_ids(ids, boot)
    full = bootstrap_distribution(sides, ood, "X", plan_for("full", None, 1000), boot)
    sampled = bootstrap_distribution(sides, ood, "X", plan_for("sampled", None, 1000, repeats=5), boot)
    assert np.allclose(full, sampled)  # every draw is the whole set of 150 (1000 / 5 = 200 > 150)


@pytest.mark.slow  # through the scripts (pytest.ini)
def test_comparisons_follow_the_folder_reference(fmnist_run, capsys):
    """A later run that replaces the reference's rows refreshes every comparison against them; a run
    against a reference already in the folder compares from the stored distributions; --compare_to none
    removes the comparisons of the tables it writes into."""
    out = fmnist_run / "results/fashionmnist/wrn"
    score(fmnist_run, "--score", "MSP", "Energy", "RecLag")
    score(fmnist_run, "--score", "RecLag", "--reclag_hidden", "20")  # a second RecLag variant, now the reference
    rows = json.loads((out / "results.json").read_text())["rows"]
    new_ref = {r["ood_dataset"]: dist_key(r) for r in rows if r["score"] == "RecLag" and r["settings"]["hidden"] == 20}
    for r in rows:
        if r["score"] != "RecLag":
            assert r["vs"]["reference_key"] == new_ref[r["ood_dataset"]] and r["vs"]["auroc_p_delong"] is None
        else:
            assert "vs" not in r
    md = (out / "results.md").read_text()
    msp = next(ln for ln in md.split("Paired differences")[1].splitlines() if ln.startswith("| MSP |"))
    assert "–" not in msp and ("pB=" in msp or "pB<" in msp)
    score(fmnist_run, "--score", "MSP", "--compare_to", "Energy")  # Energy's rows are in the folder
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert all(r["vs"]["reference"] == "Energy" for r in rows if r["score"] != "Energy")
    score(fmnist_run, "--score", "MSP", "--compare_to", "none")
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert not any("vs" in r for r in rows) and "Paired differences" not in (out / "results.md").read_text()
    capsys.readouterr()
