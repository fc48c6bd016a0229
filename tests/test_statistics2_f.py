"""Statistics round 2, items 1 and 2: the aggregator's sources of variation (ood/reporting/aggregate.py, variation)
are unbiased on unbalanced designs (runs with different numbers of learner seeds) and count the seed x
test-sample interaction once. Seeded simulations of the nested model

    AUROC of fit (i, j) on the test set = mu + T_i + L_ij + S + I_i + J_ij

(T: training seed, L: learner seed, S: the test set's part shared by every fit, I and J: how the test
set's noise differs between training seeds and between learner seeds), whose bootstrap distributions
share their resamples across runs as ood/evaluation/uncertainty.py's do; a simulation of real AUROCs on a shared
test set; and the same through aggregate_results.py."""
import json
import shutil

import numpy as np
import pytest

import aggregate_results
import test_score_ood_detection
from ood.reporting.aggregate import variation
from ood.evaluation.protocols import METRICS
from ood.evaluation.rows import dist_key

AUROC = METRICS.index("auroc")
BOOT = {"resamples": 100, "level": 0.95, "seed": 1}


def _row(mean, reps, dist):
    """One run's row as load_runs reads it: its mean, its replicates' metrics, its bootstrap SE and
    distribution (in memory under "_dist")."""
    full = np.zeros((len(METRICS), dist.size))
    full[AUROC] = dist
    row = {"auroc": float(mean), "auroc_se": float(np.std(dist, ddof=1)), "_dist": full,
           "bootstrap": BOOT, "n_id": 100, "n_ood": 100}
    if len(reps) > 1:
        row["replicate_metrics"] = [{"auroc": float(x)} for x in reps]
    return row


def simulate(rng, counts, n_sets, sd_t=0.0, sd_l=0.0, sd_s=0.0, sd_i=0.0, sd_j=0.0, resamples=100):
    """``n_sets`` independent folders of runs, run i with ``counts[i]`` learner seeds, from the nested
    model (module docstring); each run's bootstrap distribution is of its mean, with the shared part
    drawn once per resample for all runs."""
    k = len(counts)
    shared = rng.normal(0, sd_s, (n_sets, 1))
    shared_b = rng.normal(0, sd_s, (n_sets, resamples))
    t, i = rng.normal(0, sd_t, (n_sets, k)), rng.normal(0, sd_i, (n_sets, k))
    folders = [[] for _ in range(n_sets)]
    for r, n in enumerate(counts):
        fits = 0.85 + shared + t[:, r:r + 1] + i[:, r:r + 1] + rng.normal(0, sd_l, (n_sets, n)) \
            + rng.normal(0, sd_j, (n_sets, n))
        means = fits.mean(1)
        dists = means[:, None] + shared_b + rng.normal(0, sd_i, (n_sets, resamples)) \
            + rng.normal(0, sd_j, (n_sets, n, resamples)).mean(1)
        for f in range(n_sets):
            folders[f].append(_row(means[f], fits[f], dists[f]))
    return folders


def variance(out, source):
    """A source's variance estimate before flooring at 0 (its square where only the SD is reported)."""
    if "variance" in out:
        return out["variance"][source]
    return None if out[source] is None else out[source] ** 2


DESIGNS = [(1, 1, 4, 4), (1, 2, 3, 10), (1, 1, 1, 6), (2, 8), (1, 5, 1, 5, 2), (2, 2, 3)]


def relative_bias(estimates, truth):
    """The mean estimate's relative error and its Monte-Carlo standard error."""
    estimates = np.asarray(estimates, float)
    return estimates.mean() / truth - 1, estimates.std(ddof=1) / np.sqrt(estimates.size) / truth


@pytest.mark.slow  # 6 designs x 2000 folders: about 10 s
def test_training_seed_variance_is_unbiased_on_unbalanced_designs():
    """The issue's item 1: with 1, 1, 4, 4 learner seeds (and other unbalanced designs) the learner
    variance is subtracted times the mean of 1/count (ANOVA moments of unweighted means), not divided by
    the mean count: the training seeds' variance is within 10 % of the truth on average over the
    designs, and within Monte-Carlo error (4 standard errors) of it in each."""
    rng = np.random.default_rng(20250101)
    truth, errors = 0.01 ** 2, []
    for counts in DESIGNS:
        est = [variance(variation(rows, "auroc"), "training_seeds")
               for rows in simulate(rng, counts, 2000, sd_t=0.01, sd_l=0.015, sd_s=0.004, sd_i=0.004)]
        bias, se = relative_bias(est, truth)
        assert abs(bias) < 4 * se, (counts, bias, se)
        errors.append(bias)
    assert abs(np.mean(errors)) < 0.10, errors


def test_training_seed_variance_of_the_issue_design():
    """1, 1, 4, 4 learner seeds, the folder the issue names: unbiased where the mean count was +36 % or
    more (the learner variance / 4 taken out where 0.625 times it is due)."""
    rng = np.random.default_rng(5)
    est = [variance(variation(rows, "auroc"), "training_seeds")
           for rows in simulate(rng, (1, 1, 4, 4), 2500, sd_t=0.01, sd_l=0.015)]
    bias, se = relative_bias(est, 0.01 ** 2)
    assert abs(bias) < max(0.10, 4 * se), (bias, se)


def test_no_variance_goes_to_training_seeds_whose_expected_auroc_is_the_same():
    """The issue's item 2: every training seed has the same expected AUROC, the test set is shared and
    each seed's AUROC errs on it in its own way (I). The between-run spread that this noise makes is the
    test samples' (each run's bootstrap holds it), not the training seeds': their variance is 0 on
    average and their share small; the total is the variance of one new fit on a new test set."""
    rng = np.random.default_rng(7)
    sd = {"sd_l": 0.006, "sd_s": 0.01, "sd_i": 0.008}
    truth = sum(v ** 2 for v in sd.values())
    outs = [variation(rows, "auroc") for rows in simulate(rng, (2, 2, 2, 2), 2000, **sd)]
    training = np.mean([variance(o, "training_seeds") for o in outs])
    share = np.mean([o["training_share"] for o in outs])
    total = np.mean([variance(o, "total") for o in outs])
    assert abs(training) < 0.03 * truth, training / truth
    assert share < 0.10, share
    assert abs(total / truth - 1) < 0.05, total / truth


@pytest.mark.slow  # 4 designs x 1500 folders: about 6 s
def test_total_is_unbiased_with_every_source():
    """Every source present (training and learner seeds, the shared test set, both interactions),
    unbalanced: the total's variance is within 5 % of the truth in every design."""
    rng = np.random.default_rng(11)
    sd = {"sd_t": 0.008, "sd_l": 0.01, "sd_s": 0.006, "sd_i": 0.005, "sd_j": 0.003}
    truth = sum(v ** 2 for v in sd.values())
    for counts in DESIGNS[:4]:
        outs = [variation(rows, "auroc") for rows in simulate(rng, counts, 1500, **sd)]
        total = np.mean([variance(o, "total") for o in outs])
        assert abs(total / truth - 1) < 0.05, (counts, total / truth)


def auroc_folders(rng, counts, n_sets, n=50, resamples=100, a=0.7, b=0.3):
    """Folders of runs that score one shared test set (n ID, n OOD images) per folder, with real AUROCs
    and a stratified bootstrap whose resamples every run shares, as ood/evaluation/uncertainty.py's are; fit (i, j)
    scores an image latent + a * noise of training seed i + b * noise of learner seed j."""
    z_id, z_ood = rng.normal(0, 1, (n_sets, n)), rng.normal(-1.2, 1, (n_sets, n))
    c_id, c_ood = (np.stack([np.bincount(s, minlength=n) for s in rng.integers(0, n, (n_sets * resamples, n))])
                   .reshape(n_sets, resamples, n).astype(float) for _ in range(2))  # how often each image is drawn
    folders = [[] for _ in range(n_sets)]
    for k in counts:
        u_id, u_ood = rng.normal(0, 1, (2, n_sets, n))
        fits, boots = [], []
        for _ in range(k):
            w_id, w_ood = rng.normal(0, 1, (2, n_sets, n))
            s_id, s_ood = z_id + a * u_id + b * w_id, z_ood + a * u_ood + b * w_ood
            above = (s_id[:, :, None] > s_ood[:, None, :]).astype(float)  # (sets, ID, OOD)
            fits.append(above.mean((1, 2)))
            boots.append(np.einsum("sbm,sbm->sb", c_id @ above, c_ood) / n ** 2)
        fits, dist = np.stack(fits, 1), np.mean(boots, 0)
        for f in range(n_sets):
            folders[f].append(_row(fits[f].mean(), fits[f], dist[f]))
    return folders


def fresh_auroc_variance(rng, n_fits, n=50, a=0.7, b=0.3):
    """The truth for the total: the variance of one fit's AUROC over new seeds and new test sets."""
    s_id = rng.normal(0, 1, (n_fits, n)) + np.sqrt(a ** 2 + b ** 2) * rng.normal(0, 1, (n_fits, n))
    s_ood = rng.normal(-1.2, 1, (n_fits, n)) + np.sqrt(a ** 2 + b ** 2) * rng.normal(0, 1, (n_fits, n))
    return float(np.var((s_id[:, :, None] > s_ood[:, None, :]).mean((1, 2)), ddof=1))


def test_real_aurocs_of_seeds_with_the_same_expected_auroc():
    """Item 2 with real AUROCs: 1, 1, 4, 4 learner seeds, every fit's expected AUROC the same, the seeds'
    scores erring on the shared test images in their own ways. The training seeds' variance is 0 on
    average (within 10 % of the total; it was +35 %) and their share below 10 % (the SD floored at 0 keeps
    a little; it was 23 %); the total is within 10 % of the variance of one new fit's AUROC on a new test
    set (it was +39 %)."""
    rng = np.random.default_rng(3)
    truth = fresh_auroc_variance(rng, 20000)
    outs = [variation(rows, "auroc") for rows in auroc_folders(rng, (1, 1, 4, 4), 400)]
    assert abs(np.mean([variance(o, "training_seeds") for o in outs])) < 0.10 * truth
    assert np.mean([o["training_share"] for o in outs]) < 0.10
    assert abs(np.mean([variance(o, "total") for o in outs]) / truth - 1) < 0.10


def test_training_seeds_need_paired_distributions():
    """Without the runs' bootstrap distributions, or with distributions drawn from other resamples, the
    runs' own test-sample noise cannot be told apart from the training seeds' variance: that part and
    the total are not given (rather than given with the noise in them)."""
    rows = simulate(np.random.default_rng(2), (2, 2, 2), 1, sd_t=0.01, sd_l=0.01, sd_s=0.01, sd_i=0.01)[0]
    assert variation(rows, "auroc")["training_seeds"] is not None
    for changed in ([{**r, "_dist": None} for r in rows],
                    [{**r, "bootstrap": {**BOOT, "seed": 2}} if i == 0 else r for i, r in enumerate(rows)],
                    [{**r, "n_id": 99} if i == 0 else r for i, r in enumerate(rows)]):
        out = variation(changed, "auroc")
        assert out["training_seeds"] is None and out["total"] is None and out["learner_seeds"] is not None


def _write_run(folder, seed, sets):
    """A results.json of one training run (one score, its learner seeds' AUROCs and bootstrap distribution
    per OOD set: ``sets``) and its bootstrap.npz, as test_score_ood_detection.py writes them."""
    rows, dists = [], []
    for ood, (reps, dist) in sets.items():
        row = {"id_dataset": "cifar10", "model": "wrn", "score": "RecLag", "ood_dataset": ood,
               "protocol": "full", "repeats": 1, "seed": None, "n_id": 100, "n_ood": 100,
               "auroc": float(np.mean(reps)), "fpr95": 0.5, "aupr_in": 0.5, "aupr_out": 0.5,
               "auroc_std": float(np.std(reps)), "fpr95_std": 0.0, "fpr_variant": "standard", "input_size": 32,
               "feature_precision": "fp32", "subset": 0, "settings": {}, "checkpoint": f"seed{seed}",
               "replicates": {"seed": list(range(1, len(reps) + 1))}, "bootstrap": BOOT,
               "auroc_se": float(np.std(dist, ddof=1)), "fpr95_se": 0.0, "aupr_in_se": 0.0, "aupr_out_se": 0.0}
        if len(reps) > 1:
            row["replicate_metrics"] = [{"fpr95": 0.5, "auroc": a, "aupr_in": 0.5, "aupr_out": 0.5} for a in reps]
        full = np.full((len(METRICS), dist.size), 0.5, np.float32)
        full[AUROC] = dist
        rows.append(row)
        dists.append(full)
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"rows": rows}))
    np.savez_compressed(folder / "bootstrap.npz", __keys__=np.array(json.dumps([dist_key(r) for r in rows])),
                        **{f"d{i}": d for i, d in enumerate(dists)})


def expected(reps, dists):
    """The decomposition's formulas (docs/method.md) on runs' replicate AUROCs and distributions."""
    n = np.array([len(a) for a in reps])
    within = sum((len(a) - 1) * np.var(a, ddof=1) for a in reps if len(a) > 1) / (n - 1).sum()
    cov = np.cov(np.stack(dists).astype(float), ddof=1)
    own = np.mean(np.diag(cov)) - (cov.sum() - np.trace(cov)) / (len(reps) * (len(reps) - 1))
    training = np.var([np.mean(a) for a in reps], ddof=1) - within * np.mean(1 / n) - own
    return within, training, np.mean(np.diag(cov))


def test_aggregate_results_on_an_unbalanced_folder(tmp_path, capsys):
    """aggregate_results.py on four runs with 1, 1, 4, 4 learner seeds and paired bootstrap distributions:
    the learner part is ANOVA's within-run mean square, the training part the variance of the runs'
    means less the learner variance times the mean of 1 / count and less the runs' own test-sample
    noise (the distributions' mean variance less their mean covariance), the total their sum; the same
    for the average over the OOD sets, from the sets' averaged distributions."""
    rng = np.random.default_rng(4)
    shared = rng.normal(0, 0.004, (2, 100))
    runs = {1: [0.80], 2: [0.86], 3: [0.78, 0.83, 0.80, 0.85], 4: [0.88, 0.84, 0.90, 0.83]}
    sets = {s: {o: (list(np.add(a, shift)), np.float32(np.mean(a) + shift + shared[k] + rng.normal(0, 0.003, 100)))
                for k, (o, shift) in enumerate((("SVHN", 0.0), ("iSUN", -0.05)))} for s, a in runs.items()}
    for s in runs:
        _write_run(tmp_path / f"seed{s}", s, sets[s])
    aggregate_results.main([str(tmp_path / f"seed{s}") for s in runs] + ["--out", str(tmp_path / "agg"), "--no_plot",
                                                                          "--quiet"])
    rows = {r["ood_dataset"]: r for r in json.loads((tmp_path / "agg/aggregate.json").read_text())["rows"]}
    for ood in ("SVHN", "Average"):
        v = rows[ood]["variation"]["auroc"]
        per_run = [[sets[s][o] for o in (("SVHN",) if ood == "SVHN" else ("SVHN", "iSUN"))] for s in runs]
        within, training, test = expected([np.mean([x[0] for x in p], 0) for p in per_run],
                                          [np.mean([x[1].astype(float) for x in p], 0) for p in per_run])
        assert v["learner_seeds"] == pytest.approx(np.sqrt(within), rel=1e-6)
        assert v["training_seeds"] == pytest.approx(np.sqrt(training), rel=1e-4)
        assert v["test_samples"] == pytest.approx(np.sqrt(test), rel=1e-4)
        assert v["total"] == pytest.approx(np.sqrt(within + training + test), rel=1e-4)
        assert v["variance"]["training_seeds"] == pytest.approx(training, rel=1e-4)
    within, training, _ = expected(runs.values(), [sets[s]["SVHN"][1] for s in runs])
    old = np.var([np.mean(a) for a in runs.values()], ddof=1) - within / 4  # the issue's: / the mean count
    assert rows["SVHN"]["variation"]["auroc"]["training_seeds"] < 0.9 * np.sqrt(old)
    capsys.readouterr()


TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]


@pytest.mark.slow  # through the scripts (pytest.ini)
def test_runs_of_other_seeds_share_their_resamples(fmnist_run, trained_fmnist, capsys):
    """Two training runs scored with their own --seed (as the reproduce scripts do) draw the same
    bootstrap resamples, so aggregate_results.py can take their own test-sample noise out of their
    spread: the training seeds' part is given. (The resamples followed --seed, and the runs were never
    paired.)"""
    shutil.copy(trained_fmnist / "other.pt", fmnist_run / "other.pt")
    for seed, ckpt in ((1, "checkpoints/fashionmnist/wrn.pt"), (7, "other.pt")):
        test_score_ood_detection.main(TINY + ["--dataset_path", str(fmnist_run / "data"), "--ood", "iSUN",
                                              f"mine={fmnist_run / 'data' / 'mine'}", "--score", "MSP",
                                              "--seed", str(seed), "--checkpoint", ckpt,
                                              "--results_dir", f"seed{seed}"])
    rows = [json.loads((fmnist_run / f"seed{s}/results.json").read_text())["rows"] for s in (1, 7)]
    assert all(r["bootstrap"]["seed"] == 1 for run in rows for r in run)
    aggregate_results.main(["seed1", "seed7", "--out", "agg", "--no_plot", "--quiet"])
    agg = json.loads((fmnist_run / "agg/aggregate.json").read_text())["rows"]
    assert {r["ood_dataset"] for r in agg} == {"iSUN", "mine", "Average"}
    assert all(r["variation"]["auroc"]["training_seeds"] is not None for r in agg)
    capsys.readouterr()
