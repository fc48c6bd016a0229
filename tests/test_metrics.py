"""Tests for ood/evaluation/metrics.py (docs/method.md, "Metrics"): ID is the positive class, higher score = more ID."""

import functools
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ood.evaluation.metrics import (
    FPR_VARIANTS,
    aupr_in,
    aupr_out,
    auroc,
    compute_metrics,
    fpr_at_95_tpr,
)


# --------------------------------------------------------------------------------------------------
# reference outputs and definitions
# --------------------------------------------------------------------------------------------------

REFERENCE_FIXTURE = Path(__file__).parent / "fixtures" / "energy_ood_fpr_reference.npz"


@functools.lru_cache(maxsize=None)
def reference():
    """The FPR95 that energy-OOD's ``get_measures`` (utils/display_results.py of github.com/wetliu/energy_ood,
    which the SHE and RecLag code reuse) gives, stored with the inputs it was computed on: the "closest"
    variant of ood/evaluation/metrics.py must reproduce it exactly. Outputs rather than the code itself, so that no
    third-party code lives here; tests/fixtures/README.md says how the file was made."""
    with np.load(REFERENCE_FIXTURE) as f:
        return {k: f[k] for k in f.files}


def reference_cases(group):
    """The stored (ID scores, OOD scores) pairs of ``group`` ("tie" or "cont"), in the order of the outputs."""
    ref = reference()
    ends_id, ends_ood = np.cumsum(ref[f"{group}_n_id"]), np.cumsum(ref[f"{group}_n_ood"])
    return list(zip(np.split(ref[f"{group}_id"], ends_id[:-1]), np.split(ref[f"{group}_ood"], ends_ood[:-1])))


def reference_hand(name, id_s, ood_s):
    """The stored reference FPR95 of a hand-computed case, after checking that it was computed on these inputs."""
    ref = reference()
    assert np.array_equal(ref[f"hand_{name}_id"], id_s) and np.array_equal(ref[f"hand_{name}_ood"], ood_s)
    return float(ref[f"hand_{name}_fpr"])


def first_roc_point_above(id_scores, ood_scores, level=0.95):
    """FPR95 as RecLag's test_RecLag.py defines it, written from that definition: the FPR of the first point
    of sklearn's ``roc_curve`` (ID positive, its default ``drop_intermediate``) whose TPR exceeds 0.95."""
    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    fpr, tpr, _ = roc_curve(labels, np.r_[id_scores, ood_scores])
    above = np.flatnonzero(tpr > level)
    assert above.size, "no ROC point above the level"
    return float(fpr[above[0]])


def brute_force_standard(id_scores, ood_scores, recall_level=0.95):
    """Definition, O(n^2): the largest threshold t with TPR(t) >= level; FPR(t) = share of OOD >= t."""
    id_s = np.asarray(id_scores, dtype=np.float64)
    ood_s = np.asarray(ood_scores, dtype=np.float64)
    candidates = [t for t in np.unique(id_s) if np.mean(id_s >= t) >= recall_level]
    t = max(candidates)
    return float(np.mean(ood_s >= t))


def random_case(rng, tie_heavy):
    n_id = int(rng.integers(1, 80))
    n_ood = int(rng.integers(1, 80))
    id_s = rng.normal(1.0, 1.5, n_id)
    ood_s = rng.normal(0.0, 1.5, n_ood)
    if tie_heavy:
        id_s, ood_s = np.round(id_s), np.round(ood_s)
    return id_s, ood_s


# --------------------------------------------------------------------------------------------------
# AUROC / AUPR against sklearn
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tie_heavy", [False, True])
def test_auroc_aupr_match_sklearn(tie_heavy):
    rng = np.random.default_rng(0)
    for _ in range(50):
        id_s, ood_s = random_case(rng, tie_heavy)
        scores = np.concatenate((id_s, ood_s))
        labels = np.r_[np.ones(id_s.size), np.zeros(ood_s.size)]
        assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert aupr_in(id_s, ood_s) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
        assert aupr_out(id_s, ood_s) == pytest.approx(
            average_precision_score(1 - labels, -scores), abs=1e-12)


def test_auroc_is_pairwise_probability():
    # AUROC = P(id > ood) + 0.5 P(id == ood), computed by hand
    id_s, ood_s = [3.0, 2.0, 1.0], [2.0, 0.0]
    # pairs: (3,2)>,(3,0)>,(2,2)=,(2,0)>,(1,2)<,(1,0)>  -> (4 + 0.5) / 6
    assert auroc(id_s, ood_s) == pytest.approx(4.5 / 6)


def test_aupr_out_hand_computed():
    # OOD positive on -score: ranking by -score: ood(-0)=0, id(-1)=-1, ood(-2)=-2
    # AP = sum over OOD hits of precision: hit at rank 1 (1/1), hit at rank 3 (2/3); / 2
    assert aupr_out([1.0], [0.0, 2.0]) == pytest.approx((1 + 2 / 3) / 2)
    # ID positive on score: rank 2 (1/2) -> AP 0.5
    assert aupr_in([1.0], [0.0, 2.0]) == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------------
# FPR95: hand-computed cases
# --------------------------------------------------------------------------------------------------

def test_fpr_three_variants_differ_with_ties():
    # 20 ID: 19 at 3, one at 1.  OOD: 3, 2, 1, 0.
    # standard: 19/20 = 0.95 of ID accepted at t = 3 -> OOD >= 3: one of four        -> 0.25
    # closest:  recall 0.95 exactly; of the two points with 19 TP (t = 3 and t = 2) the
    #           reference's reversed order picks t = 2 first -> OOD > 1: two of four   -> 0.50
    # strict:   first tpr > 0.95 is tpr = 1 at t = 1 -> OOD >= 1: three of four      -> 0.75
    id_s, ood_s = [3.0] * 19 + [1.0], [3.0, 2.0, 1.0, 0.0]
    assert fpr_at_95_tpr(id_s, ood_s) == 0.25
    assert fpr_at_95_tpr(id_s, ood_s, "standard") == 0.25
    assert fpr_at_95_tpr(id_s, ood_s, "closest") == 0.5
    assert fpr_at_95_tpr(id_s, ood_s, "strict") == 0.75
    assert reference_hand("three_variants", id_s, ood_s) == 0.5
    assert first_roc_point_above(id_s, ood_s) == 0.75


def test_fpr_closest_picks_recall_below_95():
    # 12 ID: 11 at 3, one at 1; OOD 1, 1, 0, 0.
    # standard: 95 % of 12 = 11.4 -> all 12 ID -> t = 1 -> OOD >= 1: 2 of 4         -> 0.5
    # closest:  recall 11/12 (|diff| 0.033) beats 1.0 (0.05) -> t = 3 -> no OOD     -> 0.0
    # strict:   tpr 1 at t = 1                                                      -> 0.5
    id_s, ood_s = [3.0] * 11 + [1.0], [1.0, 1.0, 0.0, 0.0]
    assert fpr_at_95_tpr(id_s, ood_s, "standard") == 0.5
    assert fpr_at_95_tpr(id_s, ood_s, "closest") == 0.0
    assert fpr_at_95_tpr(id_s, ood_s, "strict") == 0.5
    assert reference_hand("closest_below_95", id_s, ood_s) == 0.0


def test_fpr_variants_without_ties_differ_by_one_sample():
    # ID 1..20, OOD 0.5, 1.5, 2.5, 19.5 (no ties).
    # standard: 19 of 20 ID accepted at t = 2 -> OOD >= 2: 2.5, 19.5            -> 0.5
    # closest:  the lowest threshold with 19 TP is t = 1.5 -> 1.5, 2.5, 19.5    -> 0.75
    # strict:   tpr 1 at t = 1 -> 1.5, 2.5, 19.5                                 -> 0.75
    id_s, ood_s = np.arange(1.0, 21.0), [0.5, 1.5, 2.5, 19.5]
    assert fpr_at_95_tpr(id_s, ood_s, "standard") == 0.5
    assert fpr_at_95_tpr(id_s, ood_s, "closest") == 0.75
    assert fpr_at_95_tpr(id_s, ood_s, "strict") == 0.75


def test_fpr_standard_counts_tied_ood_as_accepted():
    # 10 ID at 5, 2 OOD at 5, 2 OOD below: t = 5 accepts the tied OOD too -> 0.5
    assert fpr_at_95_tpr([5.0] * 10, [5.0, 5.0, 4.0, 1.0]) == 0.5


@pytest.mark.parametrize("level,expected", [(0.5, 0.25), (0.75, 0.5), (1.0, 0.75), (0.1, 0.0)])
def test_fpr_standard_other_recall_levels(level, expected):
    # ID 1..4, OOD 0.5, 1.5, 2.5, 3.5
    # level 0.5 -> 2 ID -> t = 3 -> {3.5}; 0.75 -> t = 2 -> {2.5, 3.5}; 1 -> t = 1 -> three of four
    # level 0.1 -> 1 ID -> t = 4 -> none
    id_s, ood_s = [1.0, 2.0, 3.0, 4.0], [0.5, 1.5, 2.5, 3.5]
    assert fpr_at_95_tpr(id_s, ood_s, recall_level=level) == expected
    assert brute_force_standard(id_s, ood_s, level) == expected


def test_fpr_standard_exact_95_percent_boundary():
    # n = 20: 19 ID suffice (19/20 == 0.95 in float); n = 100: 95 suffice
    id20 = np.arange(20.0)  # 95 % of ID accepted at t = 1
    assert fpr_at_95_tpr(id20, [1.0]) == 1.0
    assert fpr_at_95_tpr(id20, [0.5]) == 0.0
    id100 = np.arange(100.0)  # t = 5
    assert fpr_at_95_tpr(id100, [4.5, 5.0]) == 0.5


def test_fpr_standard_count_not_fooled_by_float_rounding():
    # 0.55 * 100 == 55.000000000000007 in float, but 55 of 100 ID is 55 %: t = 45 (55th largest of 0..99)
    id100 = np.arange(100.0)
    assert fpr_at_95_tpr(id100, [44.5, 45.0], recall_level=0.55) == 0.5
    assert brute_force_standard(id100, [44.5, 45.0], 0.55) == 0.5
    # 0.07 * 100 == 7.000000000000001: 7 ID suffice -> t = 93
    assert fpr_at_95_tpr(id100, [92.5, 93.0], recall_level=0.07) == 0.5
    # the other direction: level one ulp above 2/3; 3 * level rounds to 2.0, but 2/3 < level -> all 3 ID
    level = float(np.nextafter(2 / 3, 1.0))
    assert fpr_at_95_tpr([1.0, 2.0, 3.0], [1.5], recall_level=level) == 1.0
    assert brute_force_standard([1.0, 2.0, 3.0], [1.5], level) == 1.0


def test_fpr_strict_follows_roc_curve_drop_intermediate():
    # 40 ID: 37 at 10, then 5, 4, 3; OOD 5, 4, 3, 0. ROC points (TP, FP): t=10 (37, 0), t=5 (38, 1),
    # t=4 (39, 2), t=3 (40, 3), t=0 (40, 4). sklearn's default drop_intermediate=True removes the
    # collinear t=5 and t=4, so the RecLag loop's first tpr > 0.95 is t=3               -> 0.75
    # (t=4, tpr 0.975, fpr 0.5, would be next without dropping).
    # standard: 38/40 = 0.95 at t = 5 -> OOD >= 5: one                                 -> 0.25
    # closest:  recall exactly 0.95 at t = 5 (the only 38-TP point)                    -> 0.25
    id_s, ood_s = [10.0] * 37 + [5.0, 4.0, 3.0], [5.0, 4.0, 3.0, 0.0]
    assert fpr_at_95_tpr(id_s, ood_s, "strict") == 0.75
    assert first_roc_point_above(id_s, ood_s) == 0.75
    assert fpr_at_95_tpr(id_s, ood_s, "standard") == 0.25
    assert fpr_at_95_tpr(id_s, ood_s, "closest") == 0.25
    assert reference_hand("drop_intermediate", id_s, ood_s) == 0.25


# --------------------------------------------------------------------------------------------------
# FPR95 against the reference's stored outputs and the definitions, on random inputs
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", [0.95, 0.9, 0.5])
def test_closest_matches_reference_on_tie_heavy_inputs(level):
    # the stored inputs: 300 draws of random_case(default_rng(1), tie_heavy=True)
    cases = reference_cases("tie")
    expected = reference()["tie_fpr"][list(reference()["tie_levels"]).index(level)]
    assert len(cases) == len(expected) == 300
    n_differ = 0
    for (id_s, ood_s), ref in zip(cases, expected):
        assert np.array_equal(id_s, np.round(id_s)) and np.array_equal(ood_s, np.round(ood_s))  # tie-heavy
        got = fpr_at_95_tpr(id_s, ood_s, "closest", recall_level=level)
        assert got == ref, (id_s, ood_s)
        n_differ += got != fpr_at_95_tpr(id_s, ood_s, "standard", recall_level=level)
    assert n_differ > 0  # the test data does exercise cases where the variants disagree


def test_closest_matches_reference_on_continuous_and_float32_inputs():
    # the stored inputs: 100 draws of random_case(default_rng(2), tie_heavy=False), float64; the reference
    # was also run on their float32 casts, where rounding creates ties
    cases, ref = reference_cases("cont"), reference()
    assert len(cases) == len(ref["cont_fpr64"]) == len(ref["cont_fpr32"]) == 100
    for (id_s, ood_s), ref64, ref32 in zip(cases, ref["cont_fpr64"], ref["cont_fpr32"]):
        assert id_s.dtype == ood_s.dtype == np.float64
        assert fpr_at_95_tpr(id_s, ood_s, "closest") == ref64
        id32, ood32 = id_s.astype(np.float32), ood_s.astype(np.float32)
        assert fpr_at_95_tpr(id32, ood32, "closest") == ref32


@pytest.mark.parametrize("tie_heavy", [False, True])
def test_strict_matches_reclag_loop(tie_heavy):
    rng = np.random.default_rng(3)
    for _ in range(200):
        id_s, ood_s = random_case(rng, tie_heavy)
        assert fpr_at_95_tpr(id_s, ood_s, "strict") == first_roc_point_above(id_s, ood_s)


@pytest.mark.parametrize("level", [0.95, 0.8, 0.99, 1.0])
def test_standard_matches_brute_force_definition(level):
    rng = np.random.default_rng(4)
    for _ in range(200):
        id_s, ood_s = random_case(rng, tie_heavy=bool(rng.integers(2)))
        assert fpr_at_95_tpr(id_s, ood_s, recall_level=level) == brute_force_standard(id_s, ood_s, level)


def test_standard_is_not_quadratic_on_large_inputs():
    """A guard against a quadratic implementation (hours for 2 M scores), not a speed claim: the bound is
    ten times what a slow, loaded single core needs (scripts/benchmark.py measures speed)."""
    import time
    rng = np.random.default_rng(5)
    id_s, ood_s = rng.normal(1, 1, 1_000_000), rng.normal(0, 1, 1_000_000)
    start = time.perf_counter()
    value = fpr_at_95_tpr(id_s, ood_s)
    assert time.perf_counter() - start < 30.0
    # Gaussian: t = 1 - 1.645 -> P(N(0,1) >= -0.645) ~ 0.74
    assert value == pytest.approx(0.7405, abs=0.005)


# --------------------------------------------------------------------------------------------------
# invariances and edge cases
# --------------------------------------------------------------------------------------------------

def _all_metrics(id_s, ood_s):
    out = compute_metrics(id_s, ood_s)
    for v in FPR_VARIANTS:
        out["fpr95_" + v] = fpr_at_95_tpr(id_s, ood_s, v)
    return out


@pytest.mark.parametrize("tie_heavy", [False, True])
def test_permutation_invariance(tie_heavy):
    rng = np.random.default_rng(6)
    for _ in range(30):
        id_s, ood_s = random_case(rng, tie_heavy)
        base = _all_metrics(id_s, ood_s)
        permuted = _all_metrics(rng.permutation(id_s), rng.permutation(ood_s))
        assert permuted == pytest.approx(base, abs=1e-12)


def test_invariance_under_exact_monotone_rescaling():
    rng = np.random.default_rng(7)
    id_s, ood_s = random_case(rng, tie_heavy=True)
    base = _all_metrics(id_s, ood_s)
    for scale, shift in [(2.0 ** 900, 0.0), (2.0 ** -900, 0.0), (1.0, 1024.0)]:
        assert _all_metrics(id_s * scale + shift, ood_s * scale + shift) == pytest.approx(base, abs=1e-12)


def test_constant_scores():
    id_s, ood_s = np.full(30, 0.7), np.full(10, 0.7)
    m = compute_metrics(id_s, ood_s)
    assert m["auroc"] == 0.5
    assert m["fpr95"] == 1.0
    assert m["aupr_in"] == pytest.approx(30 / 40)
    assert m["aupr_out"] == pytest.approx(10 / 40)
    for v in FPR_VARIANTS:
        assert fpr_at_95_tpr(id_s, ood_s, v) == 1.0


def test_one_element_sets():
    assert compute_metrics([1.0], [0.0]) == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}
    m = compute_metrics([0.0], [1.0])
    assert m["auroc"] == 0.0 and m["fpr95"] == 1.0
    assert m["aupr_in"] == pytest.approx(0.5) and m["aupr_out"] == pytest.approx(0.5)
    m = compute_metrics([2.0], [2.0])
    assert m["auroc"] == 0.5 and m["fpr95"] == 1.0
    for v in FPR_VARIANTS:
        assert fpr_at_95_tpr([1.0], [0.0], v) == 0.0
        assert fpr_at_95_tpr([0.0], [1.0], v) == 1.0
        # ID positive: one of three OOD inputs is accepted; OOD positive (openood): catching all three
        # OOD inputs rejects the one ID input
        expected = 1.0 if v == "openood" else 1 / 3
        assert fpr_at_95_tpr([1.0], [0.0, 2.0, 0.5], v) == pytest.approx(expected)


def test_perfect_separation():
    rng = np.random.default_rng(8)
    id_s, ood_s = rng.uniform(10, 11, 200), rng.uniform(0, 1, 300)
    m = compute_metrics(id_s, ood_s)
    assert m == pytest.approx({"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}, abs=1e-12)
    assert m["auroc"] == 1.0 and m["fpr95"] == 0.0
    for v in FPR_VARIANTS:
        assert fpr_at_95_tpr(id_s, ood_s, v) == 0.0


def test_reversed_separation():
    rng = np.random.default_rng(9)
    id_s, ood_s = rng.uniform(0, 1, 200), rng.uniform(10, 11, 300)
    m = compute_metrics(id_s, ood_s)
    assert m["auroc"] == 0.0
    assert m["fpr95"] == 1.0
    assert m["aupr_in"] < 0.45 and m["aupr_out"] < 0.65  # below the chance levels 0.4 / 0.6 + slack
    for v in FPR_VARIANTS:
        assert fpr_at_95_tpr(id_s, ood_s, v) == 1.0


def test_large_magnitudes():
    big = 1e30
    assert compute_metrics([big, 2 * big], [-big, -2 * big]) == {
        "auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}
    assert compute_metrics([-big], [big])["auroc"] == 0.0
    # near the float64 range: differences overflow to inf, order must still be right
    huge = np.finfo(np.float64).max
    for v in FPR_VARIANTS:
        assert fpr_at_95_tpr([huge, huge / 2], [-huge, -huge / 2], v) == 0.0
        assert fpr_at_95_tpr([-huge], [huge, 0.0], v) == 1.0
    assert auroc([huge], [-huge]) == 1.0


def test_one_ulp_differences():
    x = 1e30
    up = np.nextafter(x, np.inf)
    down = np.nextafter(x, -np.inf)
    m = compute_metrics([up, up], [x, down])
    assert m == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}
    for v in FPR_VARIANTS:
        assert fpr_at_95_tpr([up] * 3, [x], v) == 0.0
        assert fpr_at_95_tpr([x] * 3, [up], v) == 1.0
    # 1 ulp of float32 must survive conversion
    a = np.float32(1.0)
    b = np.nextafter(a, np.float32(2.0))
    assert auroc(np.array([b], np.float32), np.array([a], np.float32)) == 1.0


def test_inputs_flattened_and_tensors_accepted():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    id_s, ood_s = rng.normal(1, 1, 40), rng.normal(0, 1, 60)
    base = compute_metrics(id_s, ood_s, fpr_variant="closest")
    assert compute_metrics(id_s.reshape(4, 10), ood_s.reshape(6, 10, 1), "closest") == base
    assert compute_metrics(list(id_s), tuple(ood_s), "closest") == base
    t_id = torch.tensor(id_s, requires_grad=True)
    assert compute_metrics(t_id, torch.tensor(ood_s), "closest") == base
    t32 = torch.tensor(id_s, dtype=torch.float32)
    assert auroc(t32, torch.tensor(ood_s, dtype=torch.float32)) == auroc(
        id_s.astype(np.float32), ood_s.astype(np.float32))
    # float64 tensors keep float64 precision (1 ulp apart)
    x = torch.tensor([1e30], dtype=torch.float64)
    assert auroc(torch.nextafter(x, x + 1e20), x) == 1.0
    assert auroc(t32.to(torch.bfloat16), torch.tensor(ood_s).to(torch.bfloat16)) == pytest.approx(
        base["auroc"], abs=0.05)


def test_compute_metrics_keys_types_and_consistency():
    rng = np.random.default_rng(11)
    id_s, ood_s = np.round(rng.normal(1, 1, 50)), np.round(rng.normal(0, 1, 70))
    for v in FPR_VARIANTS:
        m = compute_metrics(id_s, ood_s, fpr_variant=v)
        assert set(m) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
        assert all(type(x) is float and 0.0 <= x <= 1.0 for x in m.values())
        assert m["auroc"] == auroc(id_s, ood_s)
        if v != "openood":  # OpenOOD's AUPRs are trapezoid areas, not average precision (test_metrics_openood)
            assert m["aupr_in"] == aupr_in(id_s, ood_s)
            assert m["aupr_out"] == aupr_out(id_s, ood_s)
        assert m["fpr95"] == fpr_at_95_tpr(id_s, ood_s, v)
    assert compute_metrics(id_s, ood_s) == compute_metrics(id_s, ood_s, "standard")
    assert type(fpr_at_95_tpr(id_s, ood_s)) is float


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------

ALL_FUNCS = [auroc, aupr_in, aupr_out, fpr_at_95_tpr, compute_metrics,
             lambda a, b: fpr_at_95_tpr(a, b, "closest"), lambda a, b: fpr_at_95_tpr(a, b, "strict")]


@pytest.mark.parametrize("func", ALL_FUNCS)
def test_nan_in_ood_raises(func):
    ood = [0.0, 1.0, 2.0, np.nan, 3.0, np.nan]
    with pytest.raises(ValueError, match=(
            r"OOD scores contain 2 non-finite value\(s\) \(2 NaN, 0 \+/-inf\)"
            r".*index 3.*must be finite")):
        func([1.0, 2.0], ood)


@pytest.mark.parametrize("func", ALL_FUNCS)
def test_inf_in_id_raises(func):
    id_s = np.array([[1.0, 2.0], [np.inf, -np.inf]])
    with pytest.raises(ValueError, match=(
            r"^ID scores contain 2 non-finite value\(s\) \(0 NaN, 2 \+/-inf\)"
            r".*index 2.*must be finite")):
        func(id_s, [0.0])


def test_nan_in_torch_tensor_raises():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"ID scores contain 1 non-finite.*index 0"):
        auroc(torch.tensor([float("nan"), 1.0]), torch.tensor([0.0]))


@pytest.mark.parametrize("func", ALL_FUNCS)
def test_empty_sets_raise(func):
    with pytest.raises(ValueError, match="ID scores are empty"):
        func([], [1.0])
    with pytest.raises(ValueError, match="OOD scores are empty"):
        func([1.0], np.zeros((3, 0)))


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match=r"unknown FPR95 variant 'pytorch-ood'.*standard.*closest.*strict.*openood"):
        fpr_at_95_tpr([1.0], [0.0], variant="pytorch-ood")
    with pytest.raises(ValueError, match="unknown FPR95 variant"):
        compute_metrics([1.0], [0.0], fpr_variant="Standard")


def test_bad_recall_level_raises():
    for level in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="recall_level"):
            fpr_at_95_tpr([1.0], [0.0], recall_level=level)
    with pytest.raises(ValueError, match="strict.*recall_level < 1"):
        fpr_at_95_tpr([1.0], [0.0], "strict", recall_level=1.0)


def test_non_numeric_raises_value_error():
    with pytest.raises(ValueError, match="ID scores could not be converted"):
        auroc(["a", "b"], [0.0])
    with pytest.raises(ValueError, match="complex"):
        auroc(np.array([1 + 1j]), [0.0])
