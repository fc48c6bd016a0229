"""How sure a metric is: stratified bootstrap intervals, DeLong's AUROC variance, and paired comparisons
of two scores on the same samples (docs/method.md, "Uncertainty").

**The stratified bootstrap.** The ID test set and each OOD set are resampled separately, with
replacement, at their own sizes (so every resample keeps the ID : OOD ratio; Efron and Tibshirani 1993,
ch. 6). A resample is a row of counts (how often each image is drawn), and every metric of
``ood.evaluation.metrics`` is written here as a function of those counts: sorting the scores once, a resample's
ROC and precision-recall curves are cumulative sums of its counts over the distinct score values. So B
resamples cost B cumulative sums, not B sorts, and no resampled score array is ever built.

The counts depend only on the seed, the number of resamples, the set's name and size: **every score of a
run sees the same resamples** (one ID resample per b, shared by all OOD sets and scores). That is what
makes two scores' bootstrap distributions paired (their difference at each b is the difference on one
resampled test set) and lets the average over OOD sets be bootstrapped from the per-set distributions.

Each metric is computed from counts exactly as ``ood.evaluation.metrics`` computes it, with one exception:
sklearn's ``roc_curve`` drops collinear points (``drop_intermediate``), which the ``strict`` and
``openood`` FPR95 variants inherit; the resampled curves keep every point. The two differ only when ID
and OOD scores are tied (see ood/evaluation/metrics.py); the point estimate of a row is always the exact variant.

**Intervals.** A percentile interval collapses where the metric sits at its bound: an observed FPR95 of 0
has every resample at 0, an AUROC of 1 every resample at 1, and near the bound the distribution is too
skewed for its quantiles to cover. So the two metrics the tables show get intervals that keep their
coverage there (``auroc_interval``, ``fpr95_interval``), both from the bootstrap's variance; the AUPRs
keep the percentile interval. Their Monte-Carlo error (how much another seed would move an end) is
that of the bootstrap's standard error (``se_mc_error``); a percentile interval's is estimated from the
distribution's own order statistics (the binomial spread of the order statistic at that quantile, Hall
1992 §3.5). ``min_resamples`` is the fewest resamples that give an interval and a test at a level.

**The paired permutation test** (``swap_test``) of two scores' FPR95 on the same samples: under "the
two scores are exchangeable on every sample" swapping their values on any subset of samples leaves the
data's distribution unchanged, so the difference recomputed after random swaps (sign flips) is its null
distribution (Fisher 1935; Good 2005, ch. 3). The scores are swapped as their ranks among the set's ID
and OOD samples: FPR95 depends only on each score's order, and ranks put two scores on one scale. Each
swap is again a column of counts, over the pool of both scores' values, so the curves are computed as
for a resample. The paired bootstrap's FPR95 p-value is conservative (its distribution of the
difference is drawn towards 0 and too wide: a resample's duplicated ID samples move the 95 % threshold
in steps), which this test is not (tests/test_statistics2_h.py).

**Ties with the best** (``simultaneous_worse``): every pair of a column's scores is compared at once by
the bootstrap's max-t (single-step, Westfall and Young 1993, ch. 2; Romano and Wolf 2005): the critical
value is the 1 - alpha quantile of the largest studentised, centred difference over all pairs, so the
chance that any score tied with the best is shown worse than another is at most alpha.

**DeLong.** DeLong, DeLong and Clarke-Pearson (1988) give AUROC's variance in closed form from the
"placements" of each sample among the other class; for several scores on the same samples, their
covariance, hence the test of two correlated AUROCs. Placements are computed from midranks (Sun and Xu
2014), O((n + m) log(n + m)) per score.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np
from scipy.special import expit, log_ndtr
from scipy.stats import norm, rankdata

from ood.evaluation.metrics import FPR_VARIANTS

__all__ = ["Bootstrap", "curve_metrics", "percentile_interval", "mc_error", "paired", "swap_test",
           "simultaneous_worse", "delong", "delong_interval", "delong_test", "METRIC_ORDER", "auroc_interval",
           "fpr95_interval", "newcombe_interval", "min_resamples", "se_mc_error", "two_sided_p"]

METRIC_ORDER = ("fpr95", "auroc", "aupr_in", "aupr_out")  # rows of a distribution array (ood.evaluation.protocols.METRICS)
CHUNK_ELEMENTS = 1 << 20  # (samples x resamples) per block: each array of a block stays at a few MB


@dataclass(frozen=True)
class Bootstrap:
    """``resamples`` stratified resamples seeded by ``seed``; ``level`` the intervals' coverage."""
    resamples: int = 1000
    level: float = 0.95
    seed: int = 1

    def counts(self, n, tag):
        """(n, resamples) integers: how often each of ``n`` samples is drawn in each resample of the set
        ``tag`` ("id", or an OOD set's name and draw). A function of (seed, resamples, tag, n) only; the
        last few are kept, as every score of a run asks for the same ones (read-only arrays)."""
        return _counts(self.resamples, self.seed, n, tag)

    def describe(self):
        return {"resamples": self.resamples, "level": self.level, "seed": self.seed}


@lru_cache(maxsize=24)
def _counts(resamples, seed, n, tag):
    rng = np.random.default_rng([seed, resamples, n, zlib.crc32(tag.encode())])
    out = np.empty((n, resamples), dtype=np.int32)
    step = max(1, (1 << 22) // max(n, 1))  # resamples drawn at a time: the index array stays at 32 MB
    for lo in range(0, resamples, step):
        k = min(step, resamples - lo)
        idx = rng.integers(0, n, size=(k, n), dtype=np.int64)
        idx += np.arange(k, dtype=np.int64)[:, None] * n
        out[:, lo:lo + k] = np.bincount(idx.ravel(), minlength=k * n).reshape(k, n).T
    if out.max() < 256:
        out = out.astype(np.uint8)  # a quarter of the memory, as a rule
    out.flags.writeable = False
    return out


class _Side:
    """One class's scores sorted high to low, its distinct values, and the cumulative counts of its
    resamples in blocks of ``step`` resamples: ``blocks(step)[j][i, b]`` = how many of the top i samples
    resample b of block j drew (kept for the last step asked for)."""

    def __init__(self, values, counts):
        values = np.asarray(values, np.float64)
        self.order = np.argsort(-values, kind="stable")
        self.desc = values[self.order]
        self.ends = np.r_[np.flatnonzero(self.desc[1:] != self.desc[:-1]), self.desc.size - 1]
        self.counts, self._blocks = counts, {}

    def blocks(self, step):
        kept = self._blocks  # read once: threads scoring other OOD sets may replace it meanwhile
        if step in kept:
            return kept[step]
        out = []
        for lo in range(0, self.counts.shape[1], step):
            block = self.counts[self.order, lo:lo + step]
            cum = np.zeros((self.desc.size + 1, block.shape[1]), dtype=np.float64)
            # summed in 16 bits where no column's total exceeds them (3 times faster than in 32 on
            # a (20,000 x 32) block; the sums are exact either way)
            narrow = block.size == 0 or int(block.sum(axis=0, dtype=np.int64).max()) <= np.iinfo(np.uint16).max
            cum[1:] = np.cumsum(block, axis=0, dtype=np.uint16 if narrow else np.int32)
            out.append(cum)
        self._blocks = {step: out}  # one step at a time: the OOD sets of a run are alike in size
        return out

    def complement(self):
        """The same values drawn by the complementary counts, 1 - counts (counts of 0 and 1: the other
        score of a swap, ``swap_counts``): its cumulative counts are the row number minus these, exactly,
        without a second sort or sum. Its blocks are made as they are read, never kept."""
        return _Complement(self)


class _Complement:
    def __init__(self, side):
        self.side, self.order, self.desc, self.ends = side, side.order, side.desc, side.ends

    def blocks(self, step):
        rows = np.arange(self.desc.size + 1, dtype=np.float64)[:, None]
        return (rows - cum for cum in self.side.blocks(step))


def _step(n, m):
    """Resamples per block for n ID and m OOD samples: a power of two, at least 16."""
    return max(16, 1 << int(np.log2(max(1, CHUNK_ELEMENTS // max(n, m, 1)))))


class Resampled:
    """One score's ID scores under every resample: the ID side of the curves, sorted and summed once and
    shared by all the OOD sets the score is evaluated against (``metrics``)."""

    def __init__(self, id_s, id_counts):
        self.id = _Side(id_s, id_counts)

    def metrics(self, ood_s, ood_counts, variant="standard", r=0.95, fpr_only=False):
        """{metric: (B,) float64} against one OOD set's resamples (``ood_counts`` (m, B)); ``fpr_only``:
        {"fpr95": ...} alone, at half the cost."""
        return _metrics(self.id, _Side(ood_s, ood_counts), variant, r, fpr_only)


def _metrics(idn, ood, variant="standard", r=0.95, fpr_only=False, geo=None):
    """``Resampled.metrics`` of two prepared sides (``geo``: their ``_Geometry``, when already known)."""
    if variant not in FPR_VARIANTS:
        raise ValueError(f"unknown FPR95 variant {variant!r}; expected one of {FPR_VARIANTS}.")
    geo = geo or _Geometry(idn, ood)
    step = _step(geo.n, geo.m)
    out = {k: [] for k in (("fpr95",) if fpr_only else METRIC_ORDER)}
    for ci, co in zip(idn.blocks(step), ood.blocks(step)):
        for k, v in _block(ci, co, geo, variant, r, fpr_only).items():
            out[k].append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


class _Geometry:
    """Where each class's distinct values fall among the other class's sorted scores: the same for every
    resample, so computed once per (score, OOD set)."""

    def __init__(self, idn, ood):
        self.n, self.m = idn.desc.size, ood.desc.size
        self.id_at, self.ood_at = _group_rows(idn.ends, self.n), _group_rows(ood.ends, self.m)
        xv, yv = idn.desc[idn.ends], ood.desc[ood.ends]
        self.f_ge, self.f_gt = _above(ood.desc, xv, "ge"), _above(ood.desc, xv, "gt")
        self.i_ge, self.i_gt = _above(idn.desc, yv, "ge"), _above(idn.desc, yv, "gt")
        self.x_ties = not np.array_equal(self.f_ge, self.f_gt)  # an OOD score equals an ID score
        self.y_ties = not np.array_equal(self.i_ge, self.i_gt)


def _group_rows(ends, n):
    """Rows of the cumulative counts at each distinct value (>= it, > it): slices when no value repeats."""
    if ends.size == n:
        return slice(1, None), slice(0, -1)
    return ends + 1, np.r_[0, ends[:-1] + 1]


def curve_metrics(id_s, ood_s, id_counts, ood_counts, fpr_variant="standard", recall_level=0.95):
    """{metric: (B,) float64} for the resamples given by ``id_counts`` (n, B) and ``ood_counts`` (m, B):
    AUROC, the FPR95 of ``fpr_variant``, and the AUPRs (OpenOOD's trapezoid ones under "openood"), each as
    ood.evaluation.metrics defines it. Counts of all ones give the metrics of the sample itself."""
    return Resampled(id_s, id_counts).metrics(ood_s, ood_counts, fpr_variant, recall_level)


def _above(desc, values, side):
    """How many of the descending ``desc`` are > (side "gt") or >= (side "ge") each of ``values``."""
    asc = desc[::-1]
    return desc.size - np.searchsorted(asc, values, side="left" if side == "ge" else "right")


def _block(ci, co, g, variant, r, fpr_only=False):
    """The metrics of one block of resamples (columns), curve by curve (``fpr_only``: FPR95 alone). For
    each distinct ID value x (high to low): T = ID drawn >= x, T0 = ID drawn > x, F = OOD drawn >= x, F0 =
    OOD drawn > x; for each distinct OOD value y: U, U0 (OOD >= y, > y) and I, I0 (ID >= y, > y). Every
    ROC / precision-recall point of the resample is one of these, so every metric is a sum over them."""
    # every column draws the same number of ID samples (n of n for a resample, n of the 2n of a swap's
    # pool, ``swap_counts``); its OOD total can vary (a sampled draw's images counted in a resample of the
    # whole set), so it is each column's own
    n, m = int(round(ci[-1, 0])), np.maximum(co[-1], 1.0)
    T, T0 = ci[g.id_at[0]], ci[g.id_at[1]]
    U, U0 = co[g.ood_at[0]], co[g.ood_at[1]]
    F = co[g.f_ge]
    F0 = co[g.f_gt] if g.x_ties else F
    I0 = ci[g.i_gt] if variant == "openood" or not fpr_only else None
    ood_le = m - U0  # OOD positive on -score, a threshold at y selects the samples <= y
    res = {} if fpr_only else _areas(T, T0, U, U0, F, F0, I0, ci[g.i_ge] if g.y_ties else I0, ood_le, g, variant,
                                     n, m)
    b = np.arange(T.shape[1])
    if variant == "standard":  # the first threshold accepting >= k ID samples, k as in ood.evaluation.metrics
        res["fpr95"] = F[np.sum(T < _k_for(n, r), axis=0), b] / m
    elif variant == "strict":  # the first ROC point with TPR strictly above r
        res["fpr95"] = F[np.sum(T / n <= r, axis=0), b] / m
    elif variant == "closest":
        res["fpr95"] = _closest(T, T0, F, F0, n, r) / m
    else:  # openood: OOD positive, from the lowest threshold up, the first point with OOD recall >= r
        res["fpr95"] = (n - I0[np.sum(ood_le / m >= r, axis=0) - 1, b]) / n
    return res


def _areas(T, T0, U, U0, F, F0, I0, I, ood_le, g, variant, n, m):
    """AUROC and the AUPRs of one block (``_block``'s curves)."""
    dT, dU = T - T0, U - U0
    # AUROC: each drawn ID sample beats the OOD samples below it, ties counting half
    res = {"auroc": 1.0 - np.einsum("gb,gb->b", dT, 0.5 * (F + F0) if g.x_ties else F) / (n * m)}
    if variant == "openood":  # trapezoids to the previous curve point (sklearn.metrics.auc, as OpenOOD)
        prec_in = _precision(T, F, True) + _precision(T0, F0, True)
        prec_out = _precision(ood_le, n - I0, True) + _precision(m - U, n - I, True)
        res["aupr_in"] = np.einsum("gb,gb->b", dT, prec_in) / (2.0 * n)
        res["aupr_out"] = np.einsum("gb,gb->b", dU, prec_out) / (2.0 * m)
    else:  # average precision: recall steps times the precision reached
        res["aupr_in"] = np.einsum("gb,gb->b", dT, _precision(T, F)) / n
        res["aupr_out"] = np.einsum("gb,gb->b", dU, _precision(ood_le, n - I0)) / m
    for k in ("aupr_in", "aupr_out"):
        np.clip(res[k], 0.0, 1.0, out=res[k])
    return res


def _precision(pos, neg, empty_is_one=False):
    """pos / (pos + neg). An empty selection (pos + neg = 0) has precision 1 (the (0, 1) end of a
    precision-recall curve) where ``empty_is_one``; elsewhere a recall step of 0 multiplies it."""
    den = pos + neg
    if not empty_is_one:
        return pos / np.maximum(den, 1.0, out=den)
    empty = den == 0
    den[empty] = 1.0
    out = np.divide(pos, den, out=den)
    out[empty] = 1.0
    return out


def _closest(T, T0, F, F0, n, r):
    """The energy-OOD code's point: among the ROC points up to full recall, the one whose recall is
    closest to r, the last one on ties. A point's recall changes only at an ID value, so the candidates
    are the last point before each ID value (T0, F0) and the point reaching full recall (n, F there)."""
    b = np.arange(T.shape[1])
    full = F[np.argmax(T >= n, axis=0), b]
    # points before ID values where all ID are already drawn lie beyond full recall; (0, 0) is no point
    valid = (T0 < n) & ((T0 > 0) | (F0 > 0))
    dist = np.where(valid, np.abs(T0 / n - r), np.inf)
    dist = np.r_[dist, np.full((1, T.shape[1]), abs(1.0 - r))]
    pick = dist.shape[0] - 1 - np.argmin(dist[::-1], axis=0)
    return np.where(pick == T.shape[0], full, F0[np.minimum(pick, T.shape[0] - 1), b])


def _k_for(n, r):
    """The smallest count k with k / n >= r, compared in float as ``ood.evaluation.metrics`` does."""
    k = min(max(int(np.ceil(r * n)), 1), n)
    while k > 1 and (k - 1) / n >= r:
        k -= 1
    while k < n and k / n < r:
        k += 1
    return k


def min_resamples(level):
    """The fewest resamples that give an interval and a test at ``level``: a percentile interval needs at
    least one resample in each tail of (1 - level) / 2, and the paired bootstrap's smallest p-value,
    2 / (B + 1), must fall below 1 - level. Both hold from B = 2 / (1 - level) up (40 at 95 %)."""
    return int(np.ceil(2.0 / (1.0 - level) - 1e-9))


def newcombe_interval(auc, n, m, level=0.95):
    """Newcombe's (2006) score-type interval for an AUROC of n ID and m OOD samples: the values t with
    (auc - t)^2 <= z^2 V(t), V(t) the Hanley and McNeil (1982) variance of an AUROC t,
    t (1 - t) [1 + (N - 1)((1 - t) / (2 - t) + t / (1 + t))] / (n m) with N = (n + m) / 2 - 1. The variance
    is a function of t, not of the sample, so it stays positive where the sample's is 0 (an AUROC of 0, 1,
    or every pair ranked alike): the interval of the boundary. Roots by bisection (60 halvings: to 1e-18)."""
    z2 = _z(level) ** 2
    big = (n + m) / 2.0 - 2.0

    def g(t):
        v = t * (1.0 - t) * (1.0 + big * ((1.0 - t) / (2.0 - t) + t / (1.0 + t))) / (n * m)
        return (auc - t) ** 2 - z2 * v

    def root(inside, outside):  # g(inside) <= 0 < g(outside), or the bound itself
        if g(outside) <= 0:
            return outside
        for _ in range(60):
            mid = 0.5 * (inside + outside)
            inside, outside = (mid, outside) if g(mid) <= 0 else (inside, mid)
        return inside
    return [float(root(auc, 0.0)), float(root(auc, 1.0))]


def auroc_interval(auc, var, n, m, level=0.95):
    """An AUROC's interval that keeps its coverage near 1: normal on the logit scale (Pepe 2003; Qin and
    Hotilovac 2008), its centre corrected for the logit's second-order bias (the delta method: E logit(A)
    = logit(a) + (2a - 1) / (2 a^2 (1 - a)^2) var), and widened to hold the estimate; ``var`` is the
    AUROC's variance (DeLong's, or the bootstrap's). Where that scale has no interval (an AUROC of 0 or 1,
    a variance of 0) it is Newcombe's score interval, from n and m alone. None for a variance that is not
    a number (NaN: one sample in a class)."""
    if var is None or not np.isfinite(var):
        return None
    if not 0.0 < auc < 1.0 or var <= 0.0:
        return newcombe_interval(auc, n, m, level)
    s = np.sqrt(var) / (auc * (1.0 - auc))
    centre = np.log(auc / (1.0 - auc)) - 0.5 * (2.0 * auc - 1.0) * s * s
    z = _z(level)
    return [float(min(auc, expit(centre - z * s))), float(max(auc, expit(centre + z * s)))]


def fpr95_interval(p, var, size, level=0.95):
    """FPR95's interval: the Wilson (1927) score interval of a proportion p of ``size`` samples, taken at
    the effective sample size p (1 - p) / var that the bootstrap's variance ``var`` implies (Korn and
    Graubard 1998; the threshold's own uncertainty, from the ID resampling, raises the variance above the
    binomial p (1 - p) / size, so the size is at most ``size``). At p = 0 or 1, or a variance of 0, it is
    Wilson's at ``size``: [0, z^2 / (size + z^2)] for an observed 0, never [0, 0]."""
    if var is None or not np.isfinite(var):
        return None
    eff = size if not 0.0 < p < 1.0 or var <= 0.0 else min(float(size), p * (1.0 - p) / var)
    z2 = _z(level) ** 2
    centre = (p + z2 / (2.0 * eff)) / (1.0 + z2 / eff)
    half = np.sqrt(z2) / (1.0 + z2 / eff) * np.sqrt(p * (1.0 - p) / eff + z2 / (4.0 * eff * eff))
    return [float(max(0.0, min(p, centre - half))), float(min(1.0, max(p, centre + half)))]


def se_mc_error(interval, estimate, se, resamples):
    """The Monte-Carlo error of the ends of an interval built from a bootstrap standard error: the standard
    error of B resamples' standard deviation is about se / sqrt(2 (B - 1)) (normal theory), and it moves
    each end of ``interval`` by its share of the half-width, (end - estimate) / se per unit of se (the
    larger end reported). 0 where the interval does not depend on the resamples."""
    if interval is None or not se or resamples < 2:
        return 0.0
    return float(max(abs(e - estimate) for e in interval) / np.sqrt(2.0 * (resamples - 1)))


def percentile_interval(dist, level=0.95):
    """(low, high) of the central ``level`` percentile interval of a bootstrap distribution."""
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(dist, np.float64), [a, 1.0 - a])
    return float(lo), float(hi)


def mc_error(dist, level=0.95):
    """The Monte-Carlo standard error of the interval's ends (the larger of the two): the order statistic
    at quantile q of B draws spreads over the ranks B q ± sqrt(B q (1 - q)), so half the distance between
    the values at those ranks estimates its standard deviation. Conservative: the ranks are rounded
    outwards, which overstates it by about 15 % at 1,000 resamples and more below (tests/test_uncertainty.py)."""
    x = np.sort(np.asarray(dist, np.float64))
    b = x.size
    errs = []
    for q in ((1.0 - level) / 2.0, (1.0 + level) / 2.0):
        s = np.sqrt(b * q * (1.0 - q))
        lo = int(np.clip(np.floor(b * q - s), 0, b - 1))
        hi = int(np.clip(np.ceil(b * q + s), 0, b - 1))
        errs.append((x[hi] - x[lo]) / 2.0)
    return float(max(errs))


def paired(dist_a, dist_b, observed, level=0.95):
    """The paired bootstrap of a difference a - b (both distributions from the same resamples):
    {"diff", "ci", "p"}. ``p`` is the two-sided bootstrap p-value of "no difference", the smallest
    level at which the percentile interval excludes 0: 2 min(P*(d <= 0), P*(d >= 0)), with the +1
    correction that keeps it above 0 for a finite number of resamples."""
    d = np.asarray(dist_a, np.float64) - np.asarray(dist_b, np.float64)
    b = d.size
    p = 2.0 * min((np.sum(d <= 0) + 1) / (b + 1), (np.sum(d >= 0) + 1) / (b + 1))
    return {"diff": float(observed), "ci": list(percentile_interval(d, level)), "p": float(min(1.0, p))}


@lru_cache(maxsize=4)
def swap_counts(n, resamples, seed, tag):
    """(2 n, resamples + 1) counts over a pool of two scores' values (score a's n values, then b's): column
    0 selects a's (no swap), each other column a's value or b's on each sample, by a fair coin seeded by
    (seed, resamples, n, tag) as the bootstrap's counts are. The counts of b's side are these with the two
    halves exchanged."""
    rng = np.random.default_rng([seed, resamples, n, zlib.crc32(f"swap:{tag}".encode())])
    flip = np.zeros((n, resamples + 1), dtype=np.uint8)
    flip[:, 1:] = rng.integers(0, 2, size=(n, resamples), dtype=np.uint8)
    out = np.concatenate((1 - flip, flip))
    out.flags.writeable = False  # kept (every pair of scores compared on a set swaps the same samples)
    return out


def swap_test(id_a, ood_a, id_b, ood_b, boot, tag, fpr_variant="standard", metric="fpr95"):
    """The paired permutation test of "``metric`` of a = that of b" for two scores on the same ID and OOD
    samples, each the mean over its replicates (lists of arrays, as many for a as for b: a swap exchanges
    a sample's values of every replicate at once): {"diff", "p", "swaps"}. ``boot`` gives the number of
    swaps (its resamples) and their seed; ``tag`` names the OOD set.

    ``p`` is two-sided and the mid-p (Lancaster 1961), with the observed difference counted among the
    swaps (Phipson and Smyth 2010) so that it is never 0: (#{|d*| > |d|} + (#{|d*| = |d|} + 1) / 2) /
    (swaps + 1). FPR95 takes few values, and counting every swap that ties |d| against "no difference"
    (the plain p) left the test at 3 % where 5 % is asked when the scores agree on most samples
    (tests/test_statistics2_h.py). "diff" is the observed difference, as ood.evaluation.metrics computes it up to the
    ``drop_intermediate`` of the strict and openood variants (``curve_metrics``)."""
    if len(id_a) != len(id_b) or len(ood_a) != len(ood_b):
        raise ValueError("a swap needs as many replicates of each score")
    n, m = len(id_a[0]), len(ood_a[0])
    cid, cood = swap_counts(n, boot.resamples, boot.seed, "id"), swap_counts(m, boot.resamples, boot.seed, tag)
    diff = np.zeros(boot.resamples + 1)
    for ia, oa, ib, ob in zip(id_a, ood_a, id_b, ood_b):
        ra = rankdata(np.r_[np.asarray(ia, np.float64), np.asarray(oa, np.float64)])
        rb = rankdata(np.r_[np.asarray(ib, np.float64), np.asarray(ob, np.float64)])
        pool_id, pool_ood = _Side(np.r_[ra[:n], rb[:n]], cid), _Side(np.r_[ra[n:], rb[n:]], cood)
        geo = _Geometry(pool_id, pool_ood)
        a = _metrics(pool_id, pool_ood, fpr_variant, fpr_only=metric == "fpr95", geo=geo)[metric]
        # b's counts are a's with the halves exchanged, i.e. 1 - a's on every sample of the pool
        b = _metrics(pool_id.complement(), pool_ood.complement(), fpr_variant, fpr_only=metric == "fpr95",
                     geo=geo)[metric]
        diff += (a - b) / len(id_a)
    obs, null = abs(float(diff[0])), np.abs(diff[1:])
    tol = 1e-9 / max(n, m)  # the differences are multiples of 1 / (n or m times the replicates): closer is a tie
    above, tied = np.sum(null > obs + tol), np.sum(np.abs(null - obs) <= tol)
    p = (above + (tied + 1) / 2.0) / (null.size + 1)
    if obs <= tol:  # swapping every sample negates d, so d* is symmetric about 0: half below, half above
        p = 1.0
    return {"diff": float(diff[0]), "p": float(min(1.0, p)), "swaps": int(null.size)}


def simultaneous_worse(dists, values, level=0.95):
    """Which of k scores are shown worse than another, all pairs at once: ``dists`` (k, B) their paired
    bootstrap distributions of a metric (higher is better), ``values`` (k,) their estimates. Returns
    (worse (k,) bool, c): score i is worse when for some j, (x_i - x_j) / s_ij < -c, s_ij the bootstrap
    standard deviation of the pair's difference and c the ``level`` quantile of max over pairs of
    |d*_ij - (x_i - x_j)| / s_ij (the bootstrap's max-t). The family-wise error is the chance that
    any score tied with the best is marked worse: at most 1 - ``level`` whatever k is (comparing each
    score with the observed best at 1 - ``level`` would leave more tied scores out as k grows)."""
    d = np.asarray(dists, np.float64)
    x = np.asarray(values, np.float64)
    k = x.size
    if k < 2:
        return np.zeros(k, dtype=bool), 0.0
    i, j = np.triu_indices(k, 1)
    diff, obs = d[i] - d[j], x[i] - x[j]
    s = diff.std(axis=1, ddof=1) if d.shape[1] > 1 else np.zeros(obs.size)
    ok = s > 0
    t_star = np.abs(diff[ok] - obs[ok, None]) / s[ok, None]
    c = float(np.quantile(t_star.max(axis=0), level, method="higher")) if ok.any() else 0.0
    # a pair whose difference never varies is exact: worse when it is below 0 at all
    t = np.where(ok, obs / np.where(ok, s, 1.0), np.where(obs < 0, -np.inf, np.where(obs > 0, np.inf, 0.0)))
    worse = np.zeros(k, dtype=bool)
    np.logical_or.at(worse, i, t < -c)
    np.logical_or.at(worse, j, -t < -c)
    return worse, c


# --------------------------------------------------------------------------------------------------
# DeLong
# --------------------------------------------------------------------------------------------------

def _placements(id_k, ood_k):
    """Placement values of k scores: (k, n) for ID samples (the share of OOD samples each beats, ties
    counting half) and (k, m) for OOD samples (the share of ID samples each stays below)."""
    n, m = id_k.shape[1], ood_k.shape[1]
    both = np.concatenate((id_k, ood_k), axis=1)
    r_all = rankdata(both, axis=1)          # midranks among all samples
    r_id = rankdata(id_k, axis=1)           # ... among the ID samples
    r_ood = rankdata(ood_k, axis=1)
    v10 = (r_all[:, :n] - r_id) / m
    v01 = 1.0 - (r_all[:, n:] - r_ood) / n
    return v10, v01


def delong(id_scores, ood_scores):
    """(aurocs (k,), covariance (k, k)) of k scores on the same ID and OOD samples (each argument a
    sequence of k arrays, or one array for k = 1). The covariance is DeLong's: S10 / n + S01 / m, the
    sample covariances of the placements. It needs two samples of each class; with one the
    covariance is NaN (the bootstrap still gives an interval)."""
    id_k = np.atleast_2d(np.asarray(id_scores, np.float64))
    ood_k = np.atleast_2d(np.asarray(ood_scores, np.float64))
    v10, v01 = _placements(id_k, ood_k)
    aucs = v10.mean(axis=1)
    n, m = v10.shape[1], v01.shape[1]
    if n < 2 or m < 2:
        return aucs, np.full((aucs.size, aucs.size), np.nan)
    cov = np.atleast_2d(np.cov(v10)) / n + np.atleast_2d(np.cov(v01)) / m
    return aucs, cov


def _z(level):
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def delong_interval(id_scores, ood_scores, level=0.95):
    """{"se", "ci"} of the mean AUROC of one or several replicate scores: DeLong's covariance of the
    replicates gives the standard error, and ``auroc_interval`` the interval (on the logit scale; at an
    AUROC of 0 or 1, or a variance of 0, Newcombe's score interval); None values where it is undefined."""
    aucs, cov = delong(id_scores, ood_scores)
    w = np.full(aucs.size, 1.0 / aucs.size)
    var = float(w @ cov @ w)
    if not np.isfinite(var):
        return {"se": None, "ci": None}
    n, m = np.atleast_2d(np.asarray(id_scores)).shape[-1], np.atleast_2d(np.asarray(ood_scores)).shape[-1]
    return {"se": float(np.sqrt(max(var, 0.0))), "ci": auroc_interval(float(w @ aucs), max(var, 0.0), n, m, level)}


def two_sided_p(z):
    """(p, log10 p) of a two-sided normal test at z: 2 Phi(-|z|) from the survival function (exact to the
    smallest float, where 1 - Phi(|z|) is 0 beyond z = 8.3) and its logarithm from log Phi (finite for every
    finite z). A p below the smallest positive float is stored as that float, never as 0; log10 p is
    exact."""
    z = abs(float(z))
    log10_p = float((np.log(2.0) + log_ndtr(-z)) / np.log(10.0))
    p = float(2.0 * norm.sf(z))
    return float(max(p, np.nextafter(0.0, 1.0))), log10_p


def delong_test(id_a, ood_a, id_b, ood_b, level=0.95):
    """DeLong's test of two correlated AUROCs, each the mean over its replicates (lists of arrays on the
    same samples): {"diff", "ci", "p", "log10_p"}; "p" is two-sided (``two_sided_p``: tiny values survive),
    None where the variance is undefined. A difference whose variance is 0 (two scores ranking every pair
    the same way) has p = 1 when the difference is 0 and p = 0 otherwise (z is infinite; log10 p None)."""
    id_a, id_b = [np.asarray(x, np.float64) for x in id_a], [np.asarray(x, np.float64) for x in id_b]
    ood_a, ood_b = [np.asarray(x, np.float64) for x in ood_a], [np.asarray(x, np.float64) for x in ood_b]
    aucs, cov = delong(id_a + id_b, ood_a + ood_b)
    w = np.r_[np.full(len(id_a), 1.0 / len(id_a)), np.full(len(id_b), -1.0 / len(id_b))]
    diff, var = float(w @ aucs), float(w @ cov @ w)
    if not np.isfinite(var):
        return {"diff": diff, "ci": None, "p": None, "log10_p": None}
    if var <= 1e-300:  # no pair is ranked differently: the difference is exact
        same = abs(diff) < 1e-15
        return {"diff": diff, "ci": [diff, diff], "p": 1.0 if same else 0.0, "log10_p": 0.0 if same else None}
    se = np.sqrt(var)
    z = _z(level)
    p, log10_p = two_sided_p(diff / se)
    return {"diff": diff, "ci": [diff - z * se, diff + z * se], "p": p, "log10_p": log10_p}
