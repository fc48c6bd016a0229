"""Tests for ood/evaluation/uncertainty.py: the stratified bootstrap written as counts, the metrics of a weighted
resample (which must equal ``ood.evaluation.metrics.compute_metrics`` on the materialised resample), percentile
intervals and their Monte-Carlo error, the paired bootstrap, and DeLong's AUROC variance and test.

Everything here is seeded and small; the whole file runs in a few seconds on two CPU cores.
"""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from ood.evaluation.metrics import FPR_VARIANTS, compute_metrics, fpr_at_95_tpr
from ood.evaluation.uncertainty import (
    Bootstrap,
    curve_metrics,
    delong,
    delong_interval,
    delong_test,
    mc_error,
    newcombe_interval,
    paired,
    percentile_interval,
)

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")
EXACT = 1e-12  # "exact": the two computations sum the same terms in another order
Z95 = stats.norm.ppf(0.975)

# (n ID, m OOD): the degenerate sizes 1 and 2 on either side, unbalanced and moderately sized sets
SIZES = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 9), (9, 1), (2, 7), (7, 2), (20, 20), (57, 31), (31, 57),
         (400, 300)]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------

def make_scores(seed, n, m, ties=False, shift=1.0):
    """ID ~ N(shift, 1), OOD ~ N(0, 1). With ``ties`` the scores are rounded to a grid of 0.5, so that
    many ID scores equal OOD scores (and each other)."""
    rng = np.random.default_rng(seed)
    id_s, ood_s = rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, m)
    if ties:
        id_s, ood_s = np.round(id_s * 2) / 2, np.round(ood_s * 2) / 2
    return id_s, ood_s


def ones(k):
    """The counts of the sample itself: one resample drawing every sample once."""
    return np.ones((k, 1), dtype=np.int32)


def tie_safe(variant):
    """The metrics that must agree exactly even when ID and OOD scores are tied: everything except the
    FPR95 of the variants built on sklearn's ``roc_curve`` (which drops collinear points)."""
    return METRICS if variant in ("standard", "closest") else ("auroc", "aupr_in", "aupr_out")


def assert_same(expected, got, keys, where):
    for k in keys:
        value = float(got[k])
        assert abs(value - expected[k]) < EXACT, f"{where}: {k} = {value!r}, expected {expected[k]!r}"


def mw_auroc(x, y, axis=-1):
    """Mann-Whitney AUROC written independently of the module: the share of (ID, OOD) pairs with the ID
    score above, ties counting 1/2, by broadcasting all comparisons. Vectorised along ``axis`` (the
    form scipy.stats.bootstrap calls it in)."""
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    d = x[..., :, None] - y[..., None, :]
    return ((d > 0) + 0.5 * (d == 0)).mean(axis=(-2, -1))


def psi(x, y):
    return 1.0 if x > y else 0.5 if x == y else 0.0


def brute_components(id_s, ood_s):
    """DeLong's structural components by explicit double loops: V10_i = mean_j psi(x_i, y_j),
    V01_j = mean_i psi(x_i, y_j)."""
    n, m = len(id_s), len(ood_s)
    v10 = [sum(psi(id_s[i], ood_s[j]) for j in range(m)) / m for i in range(n)]
    v01 = [sum(psi(id_s[i], ood_s[j]) for i in range(n)) / n for j in range(m)]
    return v10, v01


def brute_cov(a, b):
    """Sample covariance (ddof 1) by an explicit loop."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    return sum((ai - ma) * (bi - mb) for ai, bi in zip(a, b)) / (len(a) - 1)


def brute_delong(id_k, ood_k):
    """AUROCs and the DeLong covariance S10 / n + S01 / m of k scores, all by loops."""
    comps = [brute_components(i, o) for i, o in zip(id_k, ood_k)]
    n, m = len(id_k[0]), len(ood_k[0])
    aucs = np.array([sum(v10) / n for v10, _ in comps])
    cov = np.array([[brute_cov(ca[0], cb[0]) / n + brute_cov(ca[1], cb[1]) / m for cb in comps]
                    for ca in comps])
    return aucs, cov


# --------------------------------------------------------------------------------------------------
# 1. counts of all ones give the sample's own metrics
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", FPR_VARIANTS)
@pytest.mark.parametrize("n,m", SIZES)
def test_unit_counts_equal_compute_metrics_continuous(variant, n, m):
    """On continuous scores, a resample drawing every sample once has exactly the metrics
    ``compute_metrics`` gives, for all four metrics of every FPR95 variant, down to sizes 1 and 2."""
    for seed in range(2):
        id_s, ood_s = make_scores(seed, n, m)
        got = curve_metrics(id_s, ood_s, ones(n), ones(m), variant)
        assert all(v.shape == (1,) for v in got.values())
        assert_same(compute_metrics(id_s, ood_s, variant), {k: v[0] for k, v in got.items()}, METRICS,
                     f"{variant} n={n} m={m} seed={seed}")


@pytest.mark.parametrize("variant", FPR_VARIANTS)
@pytest.mark.parametrize("n,m", SIZES)
def test_unit_counts_equal_compute_metrics_tied(variant, n, m):
    """With ID scores tied to OOD scores (rounded scores), AUROC and both AUPRs of every variant and the
    FPR95 of "standard" and "closest" still equal ``compute_metrics`` exactly. (The "strict" and
    "openood" FPR95 may differ here: sklearn's roc_curve drops collinear points, as the module says.)"""
    for seed in range(2):
        id_s, ood_s = make_scores(seed, n, m, ties=True, shift=0.5)
        got = curve_metrics(id_s, ood_s, ones(n), ones(m), variant)
        assert_same(compute_metrics(id_s, ood_s, variant), {k: v[0] for k, v in got.items()},
                     tie_safe(variant), f"{variant} n={n} m={m} seed={seed}")


@pytest.mark.parametrize("variant", FPR_VARIANTS)
def test_unit_counts_heavy_ties(variant):
    """Scores on three levels, constant scores and one class entirely tied with the other: the tie-safe
    metrics still match ``compute_metrics`` exactly."""
    rng = np.random.default_rng(7)
    cases = [
        (rng.integers(0, 3, 40).astype(float), rng.integers(0, 3, 25).astype(float)),
        (np.zeros(10), np.zeros(6)),
        (np.ones(3), np.r_[np.ones(4), np.zeros(2)]),
        (np.r_[2.0, 1.0, 1.0], np.ones(5)),
        (np.array([0.5]), np.array([0.5])),
        (np.array([0.5, 0.5]), np.array([0.5])),
    ]
    for i, (id_s, ood_s) in enumerate(cases):
        got = curve_metrics(id_s, ood_s, ones(id_s.size), ones(ood_s.size), variant)
        assert_same(compute_metrics(id_s, ood_s, variant), {k: v[0] for k, v in got.items()},
                     tie_safe(variant), f"{variant} case {i}")


# --------------------------------------------------------------------------------------------------
# 2. each resample's metrics equal those of the materialised resample
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", FPR_VARIANTS)
@pytest.mark.parametrize("n,m", [(2, 2), (2, 7), (9, 1), (150, 120)])
@pytest.mark.parametrize("ties", [False, True])
def test_resamples_equal_materialised(variant, n, m, ties):
    """For explicit bootstrap resamples (columns of ``Bootstrap.counts``), ``compute_metrics`` of the
    resampled score arrays built with ``np.repeat`` equals the matching entry of ``curve_metrics``: all
    metrics on continuous scores; the tie-safe ones when ID and OOD scores are tied. (Resampling itself
    only ties a sample with its own copies, which no variant is sensitive to.)"""
    boot = Bootstrap(resamples=70, seed=11)
    id_c, ood_c = boot.counts(n, "id"), boot.counts(m, "ood/x")
    id_s, ood_s = make_scores(n * 100 + m, n, m, ties=ties, shift=0.5)
    got = curve_metrics(id_s, ood_s, id_c, ood_c, variant)
    assert all(v.shape == (70,) for v in got.values())
    keys = tie_safe(variant) if ties else METRICS
    for b in (0, 1, 5, 64, 69):
        want = compute_metrics(np.repeat(id_s, id_c[:, b]), np.repeat(ood_s, ood_c[:, b]), variant)
        assert_same(want, {k: v[b] for k, v in got.items()}, keys, f"{variant} n={n} m={m} b={b}")


@pytest.mark.parametrize("variant", FPR_VARIANTS)
def test_many_samples_several_blocks(variant):
    """A large ID set (70 000 samples, 3 000 OOD, tied scores) makes the module work through the
    resamples in several blocks (the block holds about 2^20 counts): every resample's metrics are the
    same whether computed with the others or alone, and equal the materialised resample's (the
    tie-safe metrics; all of them for the standard and closest FPR95)."""
    n, m, b_all = 70_000, 3_000, 40
    id_s, ood_s = make_scores(31, n, m, ties=True)
    boot = Bootstrap(resamples=b_all, seed=4)
    id_c, ood_c = boot.counts(n, "id"), boot.counts(m, "ood")
    full = curve_metrics(id_s, ood_s, id_c, ood_c, variant)
    for b in (0, 15, 16, 17, 39):
        alone = curve_metrics(id_s, ood_s, id_c[:, [b]], ood_c[:, [b]], variant)
        for k in METRICS:
            assert abs(full[k][b] - alone[k][0]) < EXACT, (k, b)
    b = 17
    want = compute_metrics(np.repeat(id_s, id_c[:, b]), np.repeat(ood_s, ood_c[:, b]), variant)
    assert_same(want, {k: v[b] for k, v in full.items()}, tie_safe(variant), f"{variant} b={b}")


@pytest.mark.parametrize("variant", FPR_VARIANTS)
def test_other_recall_levels(variant):
    """``recall_level`` other than 0.95 gives ``fpr_at_95_tpr(..., variant, recall_level)`` of the
    materialised resample (continuous scores; 1.0 is no valid level for "strict"). 0.55 with 100 samples
    is a float trap: 0.55 * 100 = 55.00000000000001, yet 55 / 100 >= 0.55, so 55 samples reach it."""
    boot = Bootstrap(resamples=4, seed=6)
    for n, m in ((1, 3), (2, 2), (7, 5), (100, 100)):
        id_s, ood_s = make_scores(n + m, n, m, shift=0.5)
        id_c, ood_c = np.c_[ones(n), boot.counts(n, "id")], np.c_[ones(m), boot.counts(m, "ood")]
        for r in (0.5, 0.55, 0.9, 1.0):
            if variant == "strict" and r == 1.0:
                continue
            got = curve_metrics(id_s, ood_s, id_c, ood_c, variant, recall_level=r)["fpr95"]
            for b in range(id_c.shape[1]):
                want = fpr_at_95_tpr(np.repeat(id_s, id_c[:, b]), np.repeat(ood_s, ood_c[:, b]), variant, r)
                assert abs(got[b] - want) < EXACT, (n, m, r, b, got[b], want)


def test_shuffled_input_order_does_not_matter():
    """The metrics of a resample depend on which samples it draws, not on the order the scores come in:
    permuting scores and their counts together leaves every entry unchanged."""
    id_s, ood_s = make_scores(3, 60, 45, ties=True)
    boot = Bootstrap(resamples=20, seed=2)
    id_c, ood_c = boot.counts(60, "id"), boot.counts(45, "ood")
    rng = np.random.default_rng(0)
    pi, po = rng.permutation(60), rng.permutation(45)
    for variant in FPR_VARIANTS:
        a = curve_metrics(id_s, ood_s, id_c, ood_c, variant)
        b = curve_metrics(id_s[pi], ood_s[po], id_c[pi], ood_c[po], variant)
        for k in METRICS:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=EXACT)


# --------------------------------------------------------------------------------------------------
# 3. the counts: deterministic, shared by every score, a proper resample
# --------------------------------------------------------------------------------------------------

def test_counts_deterministic_and_tagged():
    """Counts are a function of (seed, resamples, n, tag) only: the same arguments give the same array
    (across instances, and whatever the interval level), a different tag, seed, size or number of
    resamples gives different ones. This is what pairs the bootstrap distributions of two scores."""
    a = Bootstrap(resamples=200, seed=3).counts(50, "id")
    assert np.array_equal(a, Bootstrap(resamples=200, seed=3).counts(50, "id"))
    assert np.array_equal(a, Bootstrap(resamples=200, seed=3, level=0.8).counts(50, "id"))
    assert not np.array_equal(a, Bootstrap(resamples=200, seed=3).counts(50, "ood"))
    assert not np.array_equal(a, Bootstrap(resamples=200, seed=4).counts(50, "id"))
    assert not np.array_equal(a[:49], Bootstrap(resamples=200, seed=3).counts(49, "id"))
    assert not np.array_equal(a[:, :100], Bootstrap(resamples=100, seed=3).counts(50, "id"))


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_counts_shape_and_sums(n):
    """(n, B) non-negative integer counts, each column (one resample) drawing exactly n samples."""
    c = Bootstrap(resamples=130, seed=5).counts(n, "svhn")
    assert c.shape == (n, 130) and np.issubdtype(c.dtype, np.integer)
    assert c.min() >= 0
    assert np.all(c.sum(axis=0) == n)
    if n == 1:
        assert np.all(c == 1)


def test_counts_are_uniform_draws_with_replacement():
    """Each sample's count in a resample of size n is Binomial(n, 1/n): mean 1 (exactly, as the columns
    sum to n) and variance 1 - 1/n; and every sample is drawn equally often overall. Tolerances are
    about 5 standard errors for 200 000 counts."""
    n, b = 100, 2000
    c = Bootstrap(resamples=b, seed=9).counts(n, "id").astype(float)
    assert c.mean() == 1.0
    assert abs(c.var() - (1 - 1 / n)) < 0.02
    per_sample = c.mean(axis=1)  # each ~ 1 +- sqrt((1 - 1/n) / b) = 0.022
    assert np.all(np.abs(per_sample - 1) < 0.11)
    # a sample's counts in two different resamples are independent (no column structure)
    assert abs(np.corrcoef(c[:, 0::2].ravel(), c[:, 1::2].ravel())[0, 1]) < 0.02


# --------------------------------------------------------------------------------------------------
# 4. the percentile interval agrees with scipy's bootstrap
# --------------------------------------------------------------------------------------------------

def test_percentile_interval_matches_scipy_bootstrap():
    """scipy.stats.bootstrap (independent resampling of the two samples, i.e. the stratified bootstrap;
    percentile method) of an independently written Mann-Whitney AUROC gives the same 95 % interval as
    ``percentile_interval`` of ``curve_metrics``' AUROC distribution. The two use different random
    draws, so each end differs by Monte-Carlo error only: the difference of two independent estimates
    has standard deviation sqrt(mc_ours^2 + mc_scipy^2), both estimated by ``mc_error``; we allow 4 of
    those (a correct implementation fails less than once in 10 000 seeds; the seeds are fixed anyway)."""
    id_s, ood_s = make_scores(21, 30, 25, ties=True, shift=0.8)
    b = 4000
    boot = Bootstrap(resamples=b, seed=1)
    ours = curve_metrics(id_s, ood_s, boot.counts(30, "id"), boot.counts(25, "ood"))["auroc"]
    ref = stats.bootstrap((id_s, ood_s), mw_auroc, n_resamples=b, paired=False, vectorized=True,
                          method="percentile", confidence_level=0.95, rng=np.random.default_rng(0))
    theirs = ref.bootstrap_distribution
    # the statistic itself, and the two bootstrap distributions' centre and spread
    labels = np.r_[np.ones(30), np.zeros(25)]
    assert abs(mw_auroc(id_s, ood_s) - roc_auc_score(labels, np.r_[id_s, ood_s])) < EXACT
    assert abs(ours.mean() - theirs.mean()) < 4 * np.hypot(ours.std(), theirs.std()) / np.sqrt(b)
    lo, hi = percentile_interval(ours, 0.95)
    tol = 4 * np.hypot(mc_error(ours, 0.95), mc_error(theirs, 0.95))
    assert 0 < tol < 0.03
    assert abs(lo - ref.confidence_interval.low) < tol, (lo, ref.confidence_interval.low, tol)
    assert abs(hi - ref.confidence_interval.high) < tol, (hi, ref.confidence_interval.high, tol)


def test_percentile_interval_is_the_central_quantiles():
    """``percentile_interval`` is the (a, 1 - a) quantile pair with a = (1 - level) / 2."""
    d = np.random.default_rng(0).standard_normal(999)
    np.testing.assert_allclose(percentile_interval(d, 0.9), np.quantile(d, [0.05, 0.95]), rtol=0, atol=EXACT)
    lo, hi = percentile_interval(d)
    assert lo < hi and abs(lo - np.quantile(d, 0.025)) < EXACT


# --------------------------------------------------------------------------------------------------
# 5. DeLong against brute force
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ties", [False, True])
def test_delong_matches_brute_force(ties):
    """``delong``'s midrank placements give the same AUROCs and covariance matrix (variances and the
    covariance of two scores on the same samples) as the structural components computed pair by pair,
    with continuous scores and with heavy ties (scores on 3 levels); AUROCs also equal sklearn's."""
    rng = np.random.default_rng(4)
    n, m = 23, 17
    if ties:
        a_id, a_ood = rng.integers(0, 3, n) + 0.0, rng.integers(0, 3, m) - 0.0
        b_id, b_ood = a_id + rng.integers(-1, 2, n), a_ood + rng.integers(-1, 2, m)
    else:
        a_id, a_ood = rng.normal(0.7, 1, n), rng.normal(0, 1, m)
        b_id, b_ood = a_id + rng.normal(0, 1, n), a_ood + rng.normal(0, 1, m)
    aucs, cov = delong([a_id, b_id], [a_ood, b_ood])
    want_aucs, want_cov = brute_delong([a_id, b_id], [a_ood, b_ood])
    assert aucs.shape == (2,) and cov.shape == (2, 2)
    np.testing.assert_allclose(aucs, want_aucs, rtol=0, atol=EXACT)
    np.testing.assert_allclose(cov, want_cov, rtol=0, atol=EXACT)
    labels = np.r_[np.ones(n), np.zeros(m)]
    for auc, i, o in zip(aucs, (a_id, b_id), (a_ood, b_ood)):
        assert abs(auc - roc_auc_score(labels, np.r_[i, o])) < EXACT
    # one score alone: the same variance as in the pair
    auc1, cov1 = delong(a_id, a_ood)
    assert cov1.shape == (1, 1)
    assert abs(cov1[0, 0] - want_cov[0, 0]) < EXACT and abs(auc1[0] - want_aucs[0]) < EXACT


def logit_ci(a, se):
    """The logit-scale interval of an AUROC a with standard error se, written out: centre logit(a) less the
    logit's second-order bias (2a - 1) s^2 / 2, s = se / (a (1 - a)), +- z s, back through the expit."""
    s = se / (a * (1 - a))
    centre = np.log(a / (1 - a)) - 0.5 * (2 * a - 1) * s ** 2
    return [1 / (1 + np.exp(-(centre - Z95 * s))), 1 / (1 + np.exp(-(centre + Z95 * s)))]


def test_delong_interval_and_test_from_brute_force():
    """``delong_interval`` is the logit-scale interval (``logit_ci``) with se from the brute-force variance
    (the mean of replicates: w' C w with w = 1/k); ``delong_test`` is the z test of the difference, whose
    variance is var_a + var_b - 2 cov_ab."""
    rng = np.random.default_rng(8)
    n, m = 15, 12
    base_id, base_ood = rng.normal(1, 1, n), rng.normal(0, 1, m)
    r1 = (base_id + rng.normal(0, 0.5, n), base_ood + rng.normal(0, 0.5, m))
    r2 = (base_id + rng.normal(0, 0.5, n), base_ood + rng.normal(0, 0.5, m))
    c = (base_id + rng.normal(0, 2, n), base_ood + rng.normal(0, 2, m))
    aucs, cov = brute_delong([r1[0], r2[0], c[0]], [r1[1], r2[1], c[1]])

    one = delong_interval(r1[0], r1[1])
    se = np.sqrt(cov[0, 0])
    assert abs(one["se"] - se) < EXACT
    np.testing.assert_allclose(one["ci"], logit_ci(aucs[0], se), atol=1e-9)

    reps = delong_interval([r1[0], r2[0]], [r1[1], r2[1]])
    se_mean, auc_mean = np.sqrt(cov[:2, :2].mean()), aucs[:2].mean()
    assert abs(reps["se"] - se_mean) < EXACT
    np.testing.assert_allclose(reps["ci"], logit_ci(auc_mean, se_mean), atol=1e-9)

    t = delong_test([r1[0], r2[0]], [r1[1], r2[1]], [c[0]], [c[1]])
    w = np.array([0.5, 0.5, -1.0])
    d, sd = w @ aucs, np.sqrt(w @ cov @ w)
    assert abs(t["diff"] - d) < EXACT
    assert abs(t["p"] - 2 * stats.norm.sf(abs(d) / sd)) < 1e-9
    np.testing.assert_allclose(t["ci"], [d - Z95 * sd, d + Z95 * sd], atol=1e-9)


# --------------------------------------------------------------------------------------------------
# 6. bootstrap and DeLong agree on a moderate sample
# --------------------------------------------------------------------------------------------------

def test_bootstrap_se_agrees_with_delong():
    """With n = m = 2000 and B = 1000 the bootstrap standard error of AUROC is within 10 % of DeLong's
    (the bootstrap SE itself has a relative Monte-Carlo error of about 1 / sqrt(2B) = 2.2 %, and both
    estimate the same asymptotic variance), and the percentile interval's ends are within
    0.1 z se (the SE tolerance carried to the ends; AUROC's bootstrap distribution is nearly
    symmetric at this size) plus 3 Monte-Carlo errors of DeLong's normal interval."""
    n = m = 2000
    id_s, ood_s = make_scores(5, n, m)
    boot = Bootstrap(resamples=1000, seed=3)
    dist = curve_metrics(id_s, ood_s, boot.counts(n, "id"), boot.counts(m, "ood"))["auroc"]
    dl = delong_interval(id_s, ood_s)
    se_boot = dist.std(ddof=1)
    assert abs(se_boot / dl["se"] - 1) < 0.10, (se_boot, dl["se"])
    tol = 0.1 * Z95 * dl["se"] + 3 * mc_error(dist)
    lo, hi = percentile_interval(dist)
    assert abs(lo - dl["ci"][0]) < tol and abs(hi - dl["ci"][1]) < tol, ((lo, hi), dl["ci"], tol)


# --------------------------------------------------------------------------------------------------
# 7. edge cases
# --------------------------------------------------------------------------------------------------

def test_one_ood_sample():
    """With one OOD sample DeLong's covariance is undefined (NaN; no interval, no test), while the
    bootstrap still works: every resample draws that sample, its metrics match the materialised
    resample, and the percentile interval contains the point estimate."""
    id_s, ood_s = make_scores(2, 40, 1)
    aucs, cov = delong(id_s, ood_s)
    assert np.isfinite(aucs).all() and np.isnan(cov).all()
    assert delong_interval(id_s, ood_s) == {"se": None, "ci": None}
    t = delong_test([id_s], [ood_s], [id_s * 2], [ood_s * 2])
    assert t["p"] is None and t["ci"] is None
    boot = Bootstrap(resamples=500, seed=1)
    oc = boot.counts(1, "ood")
    assert np.all(oc == 1)
    point = compute_metrics(id_s, ood_s)
    ic = boot.counts(40, "id")
    dist = curve_metrics(id_s, ood_s, ic, oc)
    for b in (0, 1, 499):
        want = compute_metrics(np.repeat(id_s, ic[:, b]), ood_s)
        assert_same(want, {k: v[b] for k, v in dist.items()}, METRICS, f"m=1 b={b}")
    for k in METRICS:
        lo, hi = percentile_interval(dist[k])
        assert lo <= point[k] <= hi, (k, lo, point[k], hi)


def test_one_id_sample():
    """With one ID sample: DeLong undefined; every resample is the sample itself on the ID side, the
    resamples' metrics match the materialised ones, and the bootstrap interval contains the point
    estimate."""
    id_s, ood_s = np.array([0.3]), make_scores(6, 1, 30)[1]
    assert delong_interval(id_s, ood_s) == {"se": None, "ci": None}
    assert np.isnan(delong(id_s, ood_s)[1]).all()
    boot = Bootstrap(resamples=500, seed=1)
    oc = boot.counts(30, "ood")
    dist = curve_metrics(id_s, ood_s, boot.counts(1, "id"), oc)
    for b in (0, 1, 499):
        want = compute_metrics(id_s, np.repeat(ood_s, oc[:, b]))
        assert_same(want, {k: v[b] for k, v in dist.items()}, METRICS, f"n=1 b={b}")
    point = compute_metrics(id_s, ood_s)
    for k in METRICS:
        lo, hi = percentile_interval(dist[k])
        assert lo <= point[k] <= hi, (k, lo, point[k], hi)


@pytest.mark.parametrize("variant", FPR_VARIANTS)
def test_all_scores_equal(variant):
    """Constant scores: AUROC is 0.5 in every resample, DeLong's variance is 0 (its interval then Newcombe's
    score interval, never the point [0.5, 0.5]), and a constant score tested against itself has p = 1."""
    id_s, ood_s = np.full(20, 3.0), np.full(12, 3.0)
    boot = Bootstrap(resamples=100, seed=1)
    dist = curve_metrics(id_s, ood_s, boot.counts(20, "id"), boot.counts(12, "ood"), variant)
    assert np.all(dist["auroc"] == 0.5)
    point = compute_metrics(id_s, ood_s, variant)
    for k in tie_safe(variant):
        assert np.all(np.abs(dist[k] - point[k]) < EXACT), k  # every resample is the same constant set
    aucs, cov = delong(id_s, ood_s)
    assert aucs[0] == 0.5 and cov[0, 0] == 0.0
    d = delong_interval(id_s, ood_s)
    assert d["se"] == 0.0 and d["ci"][0] < 0.4 and d["ci"][1] > 0.6 and d["ci"] == newcombe_interval(0.5, 20, 12)
    assert delong_test([id_s], [ood_s], [id_s], [ood_s])["p"] == 1.0


def test_unknown_variant_rejected():
    with pytest.raises(ValueError, match="unknown FPR95 variant"):
        curve_metrics(np.ones(3), np.zeros(3), ones(3), ones(3), "nope")


# --------------------------------------------------------------------------------------------------
# 8. calibration and power of the two tests of a difference
# --------------------------------------------------------------------------------------------------

def _two_scores(seed, n, extra_noise, shift=1.0):
    """A = signal + e1, B = signal + e2 (+ extra noise); equal noise scales give equal true AUROCs. The
    signal is N(shift, 1) on ID samples and N(0, 1) on OOD samples, the noises N(0, 0.7)."""
    rng = np.random.default_rng(seed)
    sig_id, sig_ood = rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)
    a = (sig_id + rng.normal(0, 0.7, n), sig_ood + rng.normal(0, 0.7, n))
    b = (sig_id + rng.normal(0, 0.7, n) + rng.normal(0, extra_noise, n),
         sig_ood + rng.normal(0, 0.7, n) + rng.normal(0, extra_noise, n))
    return a, b


def _p_values(seed, n, extra_noise, resamples, shift=1.0):
    """(DeLong p, paired-bootstrap p) of "AUROC(A) = AUROC(B)"; both scores see the same resamples."""
    a, b = _two_scores(seed, n, extra_noise, shift)
    t = delong_test([a[0]], [a[1]], [b[0]], [b[1]])
    boot = Bootstrap(resamples=resamples, seed=seed)
    ic, oc = boot.counts(n, "id"), boot.counts(n, "ood")
    da, db = curve_metrics(a[0], a[1], ic, oc)["auroc"], curve_metrics(b[0], b[1], ic, oc)["auroc"]
    return t["p"], paired(da, db, t["diff"])["p"]  # DeLong's diff is the observed AUROC difference


def test_tests_are_calibrated_under_the_null():
    """Two scores with the same true AUROC (same signal, independent noise of the same scale), n = m =
    150, 300 seeds: both DeLong's test and the paired bootstrap (300 resamples) reject at 5 % in about 5 %
    of the seeds. For a correct level-5 % test the rejection count is Binomial(300, 0.05): mean 15, sd
    3.8; the band 1 %..11 % (3..33 rejections) is -3.2 sd..+4.8 sd, which a calibrated test leaves with
    probability 4e-5, while a test whose SE is off by a factor sqrt(2) either way (rejecting ~17 %, or
    ~0.6 %) falls outside it."""
    seeds = range(300)
    ps = np.array([_p_values(s, 150, 0.0, 300) for s in seeds])
    rates = (ps < 0.05).mean(axis=0)
    assert 0.01 <= rates[0] <= 0.11, f"DeLong rejection rate {rates[0]:.3f}"
    assert 0.01 <= rates[1] <= 0.11, f"paired bootstrap rejection rate {rates[1]:.3f}"
    # p-values are proper: in (0, 1], the bootstrap's at least 2 / (B + 1)
    assert np.all((ps > 0) & (ps <= 1)) and ps[:, 1].min() >= 2 / 301 - 1e-15


def test_tests_find_a_planted_difference():
    """B = A + much extra noise (signal shift 2: true AUROC Phi(2 / sqrt(2 x 1.49)) = 0.88 for A against
    Phi(2 / sqrt(2 x 7.74)) = 0.69 for B, n = m = 150): both tests find the difference significant at 5 %
    in at least 90 % of 60 seeds (the difference is 5.7 DeLong standard errors on average: power > 99 %)."""
    ps = np.array([_p_values(s, 150, 2.5, 200, shift=2.0) for s in range(1000, 1060)])
    power = (ps < 0.05).mean(axis=0)
    assert power[0] >= 0.9 and power[1] >= 0.9, power


def test_score_against_itself_has_p_one():
    """A score compared with itself: DeLong's difference has variance 0 and p = 1; the paired bootstrap
    differences are all 0 and p = 1, interval [0, 0]."""
    a, _ = _two_scores(0, 80, 0.0)
    t = delong_test([a[0]], [a[1]], [a[0]], [a[1]])
    assert t["p"] == 1.0 and t["diff"] == 0.0
    boot = Bootstrap(resamples=200, seed=0)
    d = curve_metrics(a[0], a[1], boot.counts(80, "id"), boot.counts(80, "ood"))
    for k in METRICS:
        r = paired(d[k], d[k], 0.0)
        assert r["p"] == 1.0 and r["ci"] == [0.0, 0.0] and r["diff"] == 0.0


# --------------------------------------------------------------------------------------------------
# 9. paired p-values and the Monte-Carlo error
# --------------------------------------------------------------------------------------------------

def test_paired_p_value():
    """``paired``'s p is 2 min(P*(d <= 0), P*(d >= 0)) with the +1 correction: 1 for identical
    distributions, 2 / (B + 1) when every resample favours one side, and symmetric in a and b."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=400)
    assert paired(a, a, 0.0)["p"] == 1.0
    far = paired(a + 100, a, 100.0)
    assert far["p"] == pytest.approx(2 / 401) and far["diff"] == 100.0 and far["ci"][0] > 99
    b = a + rng.normal(0.1, 1, 400)
    d = a - b
    want = 2 * min((np.sum(d <= 0) + 1) / 401, (np.sum(d >= 0) + 1) / 401)
    assert paired(a, b, 0.0)["p"] == pytest.approx(want)
    assert paired(b, a, 0.0)["p"] == pytest.approx(want)
    assert paired(a, b, 0.0)["ci"] == list(percentile_interval(d))


def test_mc_error_positive_and_shrinks_like_inverse_sqrt_b():
    """``mc_error`` is positive and falls like 1 / sqrt(B). Averaged over 20 draws of B standard normals
    it is close to the textbook standard deviation of an estimated 2.5 % / 97.5 % quantile,
    sqrt(q (1 - q) / B) / phi(z_q), at B = 1000, 4000 and 16000 (ratio 0.85..1.35: the estimate is
    slightly conservative, as it rounds the ranks outwards and reports the larger end), and the B = 1000
    value is about 4 times the B = 16000 one."""
    rng = np.random.default_rng(3)
    means = {}
    for b in (1000, 4000, 16000):
        errs = [mc_error(rng.standard_normal(b)) for _ in range(20)]
        assert min(errs) > 0
        means[b] = np.mean(errs)
        theory = np.sqrt(0.025 * 0.975 / b) / stats.norm.pdf(Z95)
        assert 0.85 < means[b] / theory < 1.35, (b, means[b], theory)
    assert 3.2 < means[1000] / means[16000] < 5.0, means


def test_mc_error_predicts_seed_to_seed_spread():
    """What ``mc_error`` claims: how far another bootstrap seed moves an interval end. Over 40 seeds of a
    1000-resample bootstrap of one AUROC (n = m = 200), the standard deviation of the interval's ends
    (the larger of the two) is within a factor 1.5 of the mean ``mc_error`` (the spread of 40 draws is
    itself uncertain by about 11 %, and the estimate is a little conservative)."""
    id_s, ood_s = make_scores(12, 200, 200)
    ends, errs = [], []
    for seed in range(40):
        boot = Bootstrap(resamples=1000, seed=seed)
        dist = curve_metrics(id_s, ood_s, boot.counts(200, "id"), boot.counts(200, "ood"))["auroc"]
        ends.append(percentile_interval(dist))
        errs.append(mc_error(dist))
    spread = np.asarray(ends).std(axis=0, ddof=1).max()
    ratio = np.mean(errs) / spread
    assert 1 / 1.5 < ratio < 1.5, (np.mean(errs), spread)


def test_cumulative_counts_are_exact_in_either_width():
    """A side's cumulative counts are summed in 16 bits where every column's total fits and in 32 bits
    otherwise: both exact, so the metrics do not depend on which."""
    from ood.evaluation.uncertainty import _Side
    rng = np.random.default_rng(0)
    values = rng.normal(size=50)
    for top in (3, 5000):  # column totals far below and above 65,535
        counts = rng.integers(0, top, (50, 40)).astype(np.int32)
        side = _Side(values, counts)
        want = np.vstack([np.zeros((1, 40)), np.cumsum(counts[side.order].astype(np.int64), axis=0)])
        got = np.hstack(side.blocks(16))
        assert np.array_equal(got, want)
    assert counts.sum(0).max() > np.iinfo(np.uint16).max


def test_threads_for_keeps_memory_within_its_budget():
    from ood.system.accel import threads_for
    import torch
    assert threads_for(5) == min(5, torch.get_num_threads())
    assert threads_for(0) == 1
    assert threads_for(8, bytes_each=3 << 30) == 1  # one task over the budget: one at a time
    assert threads_for(8, bytes_each=1 << 30, budget=2 << 30) <= 2
