"""Statistics round 2, items 4, 5 and 6 (part): the tables' ties with the best controlled for the number of
scores (family-wise error), the FPR95 comparison's test calibrated (paired permutation test), and a
--compare_to whose rows cannot be compared refused or warned about, not dropped.

The simulations are seeded and vectorised through the production code (ood.evaluation.uncertainty's curves from
counts, ood.evaluation.comparisons.tied_with_best); their measured numbers are in the docstrings and docs/method.md."""
import json

import numpy as np
import pytest
from scipy.stats import rankdata

import test_score_ood_detection
from checks import exits_2
from ood.evaluation.comparisons import tied_with_best
from ood.evaluation.metrics import compute_metrics
from ood.reporting.results import caption
from ood.evaluation.uncertainty import Bootstrap, Resampled, curve_metrics, paired, simultaneous_worse, swap_counts, swap_test

TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]


def score(root, *extra, ood=("iSUN", "mine")):
    sets = [o if o != "mine" else f"mine={root / 'data' / 'mine'}" for o in ood]
    return test_score_ood_detection.main(TINY + ["--dataset_path", str(root / "data"), "--ood", *sets, *extra])


def _with_itself(counts):
    """``counts`` with a column of ones in front: column 0 is the sample itself (the observed metric)."""
    return np.concatenate((np.ones((counts.shape[0], 1), counts.dtype), counts), axis=1)


# --------------------------------------------------------------------------------------------------
# item 4: ties with the best, family-wise
# --------------------------------------------------------------------------------------------------

def _tied_column(seed, k, n=200, noise=0.5, resamples=200):
    """One table column of k truly tied scores: each the same signal (N(1.5, 1) on n ID, N(0, 1) on n OOD
    samples) plus its own N(0, noise^2) noise, so every score has the same true AUROC and FPR95 and any
    two correlate at 0.8. Returns {metric: {score: (observed, bootstrap distribution)}}, all scores on
    the same resamples, as a table's cells are."""
    rng = np.random.default_rng(seed)
    sig_id, sig_ood = rng.normal(1.5, 1.0, n), rng.normal(0.0, 1.0, n)
    boot = Bootstrap(resamples, seed=seed)
    ic, oc = _with_itself(boot.counts(n, "id")), _with_itself(boot.counts(n, "X"))
    cells = {"auroc": {}, "fpr95": {}}
    for j in range(k):
        d = Resampled(sig_id + rng.normal(0, noise, n), ic).metrics(sig_ood + rng.normal(0, noise, n), oc)
        for m in cells:
            cells[m][f"s{j}"] = (float(d[m][0]), d[m][1:])
    return cells


@pytest.mark.slow  # 2.5 s and 5 s on one core
@pytest.mark.parametrize("k, sims", [(6, 400), (19, 300)])
def test_ties_family_wise_error_at_most_5_percent(k, sims):
    """k truly tied scores, n = m = 200, 200 resamples: the chance that the table leaves ANY of them
    unbolded (the family-wise error) is at most 5 %, for AUROC and FPR95 columns. Measured (seeds 0..):
    k = 6: AUROC 3.7 %, FPR95 1.8 % of 400 columns; k = 19: AUROC 2.7 %, FPR95 1.3 % of 300. The
    comparison of each score with the observed best at 5 %, as the tables did, left some tied score
    unbolded in 32.8 % / 12.8 % (k = 6) and 88.7 % / 43.3 % (k = 19) of the columns (each tied score
    in 7.8 % and 17.3 % of the AUROC columns)."""
    miss = np.zeros((sims, 2), dtype=bool)
    for s in range(sims):
        cells = _tied_column(s, k)
        miss[s] = [len(tied_with_best(cells["auroc"], False, 0.95)) < k,
                   len(tied_with_best(cells["fpr95"], True, 0.95)) < k]
    fwer = miss.mean(axis=0)
    assert fwer[0] <= 0.05 and fwer[1] <= 0.05, f"family-wise error AUROC {fwer[0]:.3f}, FPR95 {fwer[1]:.3f}"


def test_max_t_marks_a_clearly_worse_score_and_keeps_the_best():
    """The max-t still finds real differences: among 6 scores on the same samples, one with much more
    noise (true AUROC 0.80 against 0.88) is shown worse; the observed best never is; a column of one
    score marks nothing worse."""
    rng = np.random.default_rng(7)
    n = 400
    sig_id, sig_ood = rng.normal(1.5, 1.0, n), rng.normal(0.0, 1.0, n)
    boot = Bootstrap(300, seed=7)
    ic, oc = _with_itself(boot.counts(n, "id")), _with_itself(boot.counts(n, "X"))
    noise = [0.5] * 5 + [1.5]
    got = [Resampled(sig_id + rng.normal(0, e, n), ic).metrics(sig_ood + rng.normal(0, e, n), oc)["auroc"]
           for e in noise]
    x, d = np.array([g[0] for g in got]), np.stack([g[1:] for g in got])
    worse, c = simultaneous_worse(d, x, 0.95)
    assert worse[5] and not worse[np.argmax(x)]
    assert 1.96 < c < 4.0  # wider than one comparison's, as six scores make 15 pairs
    cells = {f"s{j}": (x[j], d[j]) for j in range(6)}
    assert "s5" not in tied_with_best(cells, False, 0.95) and f"s{np.argmax(x)}" in tied_with_best(cells, False, 0.95)
    assert not simultaneous_worse(d[:1], x[:1], 0.95)[0].any()


def test_caption_says_how_ties_are_controlled():
    """The caption of a table with intervals says that the bold is simultaneous over the column's pairs
    and what the 5 % bounds."""
    row = {"id_dataset": "cifar10", "model": "wrn", "input_size": 32, "protocol": "full", "fpr_variant": "standard",
           "label": "MSP", "score": "MSP", "seed": None, "bootstrap": {"resamples": 1000, "level": 0.95, "seed": 1}}
    text = caption([row])
    assert "all pairs of the column at once by the max-t" in text
    assert "at most 5 % chance that any score tied with the best is left unbolded" in text


# --------------------------------------------------------------------------------------------------
# item 5: the FPR95 comparison's test
# --------------------------------------------------------------------------------------------------

def _two_scores(seed, n, noise, extra=0.0):
    """A and B: the same signal (N(1.5, 1) on n ID and n OOD N(0, 1) samples) plus N(0, noise^2) noise
    each, B with N(0, extra^2) more. extra = 0: the same true FPR95 (the null)."""
    rng = np.random.default_rng(seed)
    sig_id, sig_ood = rng.normal(1.5, 1.0, n), rng.normal(0.0, 1.0, n)
    b_noise = np.hypot(noise, extra)
    a = (sig_id + rng.normal(0, noise, n), sig_ood + rng.normal(0, noise, n))
    b = (sig_id + rng.normal(0, b_noise, n), sig_ood + rng.normal(0, b_noise, n))
    return a, b


def _fpr_p_values(seed, n, noise, extra, swaps, bootstrap=False):
    """(permutation p, paired-bootstrap p or None) of "FPR95(A) = FPR95(B)"."""
    a, b = _two_scores(seed, n, noise, extra)
    boot = Bootstrap(swaps, seed=seed)
    t = swap_test([a[0]], [a[1]], [b[0]], [b[1]], boot, "X")
    if not bootstrap:
        return t["p"], None
    ic, oc = boot.counts(n, "id"), boot.counts(n, "X")
    da, db = Resampled(a[0], ic).metrics(a[1], oc)["fpr95"], Resampled(b[0], ic).metrics(b[1], oc)["fpr95"]
    return t["p"], paired(da, db, t["diff"])["p"]


@pytest.mark.parametrize("noise", [0.25, 1.0])  # 1.2 s each on one core
def test_fpr95_permutation_test_size_under_the_null(noise):
    """Two scores with the same true FPR95, n = m = 200, 100 swaps, 600 seeds: the permutation test
    rejects at 5 % in 3 % to 7 % of the seeds, whether the scores agree closely (noise 0.25: correlation
    0.94) or not (noise 1: 0.5). Measured: 5.3 % and 5.7 % (5.0 % at noise 0.5); the paired bootstrap
    rejects 0.3 %, 1.3 % and 1.5 % of the same seeds. The rejection count of a level-5 % test is
    Binomial(600, 0.05): sd 0.9 %."""
    p = np.array([_fpr_p_values(s, 200, noise, 0.0, 100)[0] for s in range(600)])
    rate = float(np.mean(p < 0.05))
    assert 0.03 <= rate <= 0.07, f"size {rate:.3f}"
    assert np.all((p > 0) & (p <= 1))


def test_fpr95_permutation_test_power():
    """A planted difference (B with N(0, 1) more noise: true FPR95 0.62 against 0.74 at 95 % TPR, noise
    0.5, n = m = 200), 300 seeds: the permutation test finds it at 5 % in 41.0 % of the seeds, the paired
    bootstrap in 26.3 % (both on the same samples; 100 swaps, 100 resamples). With half that noise, 11.0 %
    against 2.7 %."""
    ps = np.array([_fpr_p_values(s, 200, 0.5, 1.0, 100, bootstrap=True) for s in range(2000, 2300)])
    power = (ps < 0.05).mean(axis=0)
    assert power[0] >= 0.33 and power[0] > power[1] + 0.08, \
        f"power permutation {power[0]:.3f}, bootstrap {power[1]:.3f}"


@pytest.mark.parametrize("variant", ["standard", "strict", "closest", "openood"])
def test_swap_test_observed_difference_and_exact_cases(variant):
    """The permutation test's observed difference is the rows' FPR95 difference (ood.evaluation.metrics, continuous
    scores); a score against itself, or against a monotone transform of itself, has p = 1; p is
    symmetric in the two scores and never 0; a swap keeps each side's number of ID samples."""
    a, b = _two_scores(3, 150, 0.5, 1.0)
    boot = Bootstrap(300, seed=2)
    t = swap_test([a[0]], [a[1]], [b[0]], [b[1]], boot, "X", variant)
    want = compute_metrics(a[0], a[1], variant)["fpr95"] - compute_metrics(b[0], b[1], variant)["fpr95"]
    assert t["diff"] == pytest.approx(want, abs=1e-12) and t["swaps"] == 300
    back = swap_test([b[0]], [b[1]], [a[0]], [a[1]], boot, "X", variant)
    assert back["p"] == pytest.approx(t["p"]) and back["diff"] == pytest.approx(-t["diff"])
    assert 1 / 602 <= t["p"] <= 1
    same = swap_test([a[0]], [a[1]], [np.exp(a[0])], [np.exp(a[1])], boot, "X", variant)
    assert same == {"diff": 0.0, "p": 1.0, "swaps": 300}
    c = swap_counts(150, 300, 2, "id")
    assert c.shape == (300, 301) and np.all(c.sum(axis=0) == 150) and np.all(c[:150, 0] == 1)


def test_swap_test_replicates():
    """With replicates the difference is of the means over them (as a row's), the samples' replicates
    swapped together; different numbers of replicates cannot be swapped."""
    a1, b1 = _two_scores(4, 120, 0.5)
    a2, b2 = _two_scores(5, 120, 0.5)
    boot = Bootstrap(200, seed=1)
    t = swap_test([a1[0], a2[0]], [a1[1], a2[1]], [b1[0], b2[0]], [b1[1], b2[1]], boot, "X")
    fpr = lambda s: compute_metrics(s[0], s[1])["fpr95"]  # noqa: E731
    assert t["diff"] == pytest.approx((fpr(a1) + fpr(a2)) / 2 - (fpr(b1) + fpr(b2)) / 2, abs=1e-12)
    with pytest.raises(ValueError, match="as many replicates"):
        swap_test([a1[0], a2[0]], [a1[1], a2[1]], [b1[0]], [b1[1]], boot, "X")


def test_pool_counts_give_each_sides_metrics():
    """The pool's counts (a's values, then b's) select a's sample in column 0: the curves computed from
    them are a's own metrics, every variant (what the swap test's observed difference rests on); FPR95
    alone (``fpr_only``, what the swap test computes) is the same as with the other metrics."""
    a, b = _two_scores(6, 90, 0.5)
    pool_id, pool_ood = np.r_[a[0], b[0]], np.r_[a[1], b[1]]
    cid, cood = swap_counts(90, 10, 1, "id"), swap_counts(90, 10, 1, "X")
    for variant in ("standard", "strict", "closest", "openood"):
        got = curve_metrics(pool_id, pool_ood, cid, cood, variant)
        want = compute_metrics(a[0], a[1], variant)
        for k in ("fpr95", "auroc", "aupr_in", "aupr_out"):
            assert got[k][0] == pytest.approx(want[k], abs=1e-12), (variant, k)
        alone = Resampled(pool_id, cid).metrics(pool_ood, cood, variant, fpr_only=True)
        assert list(alone) == ["fpr95"] and np.array_equal(alone["fpr95"], got["fpr95"])


@pytest.mark.slow  # through the scripts (pytest.ini)
def test_comparisons_report_the_permutation_test(fmnist_run, capsys):
    """Through the scoring script: a row of every OOD image compared with a reference scored in the same
    run carries the FPR95 permutation p-value, and the comparison table labels it pP; refreshed from the
    stored distributions (reference not rescored) it falls back to the paired bootstrap's, pB."""
    rows = score(fmnist_run, "--score", "MSP", "Energy", "--compare_to", "Energy", "--bootstrap", "300")
    out = fmnist_run / "results/fashionmnist/wrn"
    for r in rows:
        if r["score"] == "MSP":
            assert 0 < r["vs"]["fpr95_p_permutation"] <= 1
    md = (out / "results.md").read_text()
    assert "pP the paired permutation test" in md
    msp = next(ln for ln in md.split("Paired differences")[1].splitlines() if ln.startswith("| MSP |"))
    assert "pP" in msp and "pD" in msp, msp
    score(fmnist_run, "--score", "Energy", "--bootstrap", "300", "--compare_to", "MSP")  # MSP from the folder
    rows = json.loads((out / "results.json").read_text())["rows"]
    energy = [r for r in rows if r["score"] == "Energy"]
    assert energy and all(r["vs"]["reference"] == "MSP" and r["vs"]["fpr95_p_permutation"] is None for r in energy)
    md = (out / "results.md").read_text()
    line = next(ln for ln in md.split("Paired differences")[1].splitlines() if ln.startswith("| Energy |"))
    assert "pP" not in line and "pB" in line, line
    capsys.readouterr()


# --------------------------------------------------------------------------------------------------
# item 6 (part): --compare_to a reference that cannot be compared
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow  # through the scripts (pytest.ini)
def test_compare_to_without_stored_distributions_is_refused(fmnist_run, capsys):
    """A --compare_to reference whose folder rows have no stored distributions (scored with --bootstrap
    0), or were bootstrapped otherwise than this run, is refused in one line before any scoring, and the
    folder is left as it was (before: the comparisons were silently dropped)."""
    out = fmnist_run / "results/fashionmnist/wrn"
    score(fmnist_run, "--score", "Energy", "--bootstrap", "0", "--compare_to", "none")
    before = (out / "results.json").read_text()
    capsys.readouterr()
    exits_2(lambda argv: score(fmnist_run, *argv), ["--score", "MSP", "--compare_to", "Energy"], capsys,
            "--compare_to Energy: its rows in", "have no stored bootstrap distributions", "add Energy to --score")
    assert (out / "results.json").read_text() == before
    score(fmnist_run, "--score", "Energy", "--bootstrap", "300")  # now with 300 resamples stored
    before = (out / "results.json").read_text()
    capsys.readouterr()
    exits_2(lambda argv: score(fmnist_run, *argv), ["--score", "MSP", "--compare_to", "Energy"], capsys,
            "were evaluated with bootstrap 300 resamples at level 0.95, seed 1, this run with bootstrap 1000",
            "not paired with this run's")
    exits_2(lambda argv: score(fmnist_run, *argv),
            ["--score", "MSP", "--compare_to", "Energy", "--bootstrap", "300", "--fpr_variant", "strict"], capsys,
            "were evaluated with fpr_variant standard, this run with fpr_variant strict")
    assert (out / "results.json").read_text() == before
    score(fmnist_run, "--score", "MSP", "--compare_to", "Energy", "--bootstrap", "300")  # the same settings: compared
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert all(r["vs"]["reference"] == "Energy" for r in rows if r["score"] == "MSP")
    assert "warning: --compare_to" not in capsys.readouterr().err


@pytest.mark.slow  # through the scripts (pytest.ini)
def test_compare_to_missing_on_some_sets_is_warned(fmnist_run, capsys):
    """A reference whose rows cover only some of this run's OOD sets: the run compares where it can and
    warns in one line naming the reference and the sets without a comparison, and what to do."""
    score(fmnist_run, "--score", "Energy", "--bootstrap", "300", ood=("iSUN",))
    capsys.readouterr()
    score(fmnist_run, "--score", "MSP", "--compare_to", "Energy", "--bootstrap", "300")
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: --compare_to")]
    assert len(err) == 1 and "no comparison with Energy on mine" in err[0] and "add Energy to --score" in err[0], err
    rows = json.loads((fmnist_run / "results/fashionmnist/wrn/results.json").read_text())["rows"]
    msp = {r["ood_dataset"]: r for r in rows if r["score"] == "MSP"}
    assert msp["iSUN"]["vs"]["reference"] == "Energy" and "vs" not in msp["mine"]


@pytest.mark.parametrize("variant", ["standard", "strict", "closest", "openood"])
@pytest.mark.parametrize("metric", ["fpr95", "auroc", "aupr_out"])
def test_swap_test_is_the_difference_of_both_sides_own_curves(variant, metric):
    """The swap test computes b's side from a's (b's counts are 1 - a's on the pool, so its cumulative
    counts are the row number minus a's): the same differences and p-value, to the last bit, as curves
    computed from b's own counts, the pool's halves exchanged; with ties within and across the classes."""
    rng = np.random.default_rng(7)
    n, m, swaps = 140, 90, 60
    ia, oa = np.round(rng.normal(1, 1, n), 1), np.round(rng.normal(0, 1, m), 1)
    ib, ob = np.round(ia + rng.normal(0, 0.6, n), 1), np.round(oa + rng.normal(0, 0.6, m), 1)
    boot = Bootstrap(swaps, seed=3)
    got = swap_test([ia], [oa], [ib], [ob], boot, "X", variant, metric)
    cid, cood = swap_counts(n, swaps, 3, "id"), swap_counts(m, swaps, 3, "X")
    ra, rb = rankdata(np.r_[ia, oa]), rankdata(np.r_[ib, ob])
    pool_id, pool_ood = np.r_[ra[:n], rb[:n]], np.r_[ra[n:], rb[n:]]
    mine = curve_metrics(pool_id, pool_ood, cid, cood, variant)[metric]
    theirs = curve_metrics(pool_id, pool_ood, np.r_[cid[n:], cid[:n]], np.r_[cood[m:], cood[:m]], variant)[metric]
    d = mine - theirs
    assert got["diff"] == d[0]
    obs, null, tol = abs(d[0]), np.abs(d[1:]), 1e-9 / max(n, m)
    p = (np.sum(null > obs + tol) + (np.sum(np.abs(null - obs) <= tol) + 1) / 2) / (swaps + 1)
    assert got["p"] == (1.0 if obs <= tol else min(1.0, p))
