"""Tests for the "openood" variant of ood/evaluation/metrics.py: OpenOOD v1.5's metric convention (OOD positive FPR95,
trapezoid AUPRs), checked against outputs of OpenOOD's own ``compute_all_metrics`` and small hand examples."""

import functools
from pathlib import Path

import numpy as np
import pytest

from ood.evaluation.metrics import FPR_VARIANTS, aupr_in, aupr_out, auroc, compute_metrics, fpr_at_95_tpr

FIXTURE = Path(__file__).parent / "fixtures" / "openood_metrics.npz"


@functools.lru_cache(maxsize=None)
def fixture():
    """OpenOOD's ``compute_all_metrics`` outputs with their inputs; tests/fixtures/README.md says how they
    were made (tests/fixtures/make_openood_metrics.py)."""
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


CASES = [str(c) for c in fixture()["cases"]]


def test_fixture_layout():
    f = fixture()
    assert list(f["metrics"]) == ["fpr", "auroc", "aupr_in", "aupr_out"]
    assert len(CASES) >= 8
    for c in CASES:
        assert f[f"{c}_openood"].shape == (4,)


@pytest.mark.parametrize("case", CASES)
def test_matches_openood_compute_all_metrics(case):
    f = fixture()
    id_s, ood_s = f[f"{case}_id"], f[f"{case}_ood"]
    fpr, auc, in_, out = (float(v) for v in f[f"{case}_openood"])
    m = compute_metrics(id_s, ood_s, "openood")
    assert m == pytest.approx({"fpr95": fpr, "auroc": auc, "aupr_in": in_, "aupr_out": out}, abs=1e-9, rel=0)
    assert fpr_at_95_tpr(id_s, ood_s, "openood") == pytest.approx(fpr, abs=1e-9, rel=0)


def test_variant_is_listed():
    assert "openood" in FPR_VARIANTS
    assert FPR_VARIANTS[:3] == ("standard", "closest", "strict")


def test_ood_positive_fpr_differs_from_id_positive():
    # ID 10 9 8 7 0, OOD 6 1 -1 -2, no ties.
    # ID positive ("standard"): accept all 5 ID (95 % of 5 is 5) -> threshold 0 -> OOD 6 and 1 accepted: 2/4.
    # OOD positive ("openood"): catch all 4 OOD -> reject scores <= 6 -> ID 0 rejected: 1/5.
    id_s, ood_s = [10.0, 9.0, 8.0, 7.0, 0.0], [6.0, 1.0, -1.0, -2.0]
    std = compute_metrics(id_s, ood_s, "standard")
    oo = compute_metrics(id_s, ood_s, "openood")
    assert std["fpr95"] == pytest.approx(0.5, abs=1e-12)
    assert oo["fpr95"] == pytest.approx(0.2, abs=1e-12)
    assert abs(std["fpr95"] - oo["fpr95"]) > 0.25
    assert oo["auroc"] == std["auroc"] == pytest.approx(18 / 20, abs=1e-12)
    # without ties it is "standard" with the roles swapped and the scores negated
    neg = lambda xs: [-x for x in xs]  # noqa: E731
    assert oo["fpr95"] == pytest.approx(fpr_at_95_tpr(neg(ood_s), neg(id_s), "standard"), abs=1e-12)


def test_fpr_at_95_tpr_openood_hand_example_and_recall_levels():
    id_s, ood_s = [10.0, 9.0, 8.0, 7.0, 0.0], [6.0, 1.0, -1.0, -2.0]
    # OOD recall r: catch the ceil(r * 4) lowest-scored OOD samples, reject every ID score at or below
    # the highest of them.
    assert fpr_at_95_tpr(id_s, ood_s, variant="openood") == pytest.approx(1 / 5, abs=1e-12)
    assert fpr_at_95_tpr(id_s, ood_s, "openood", recall_level=1.0) == pytest.approx(1 / 5, abs=1e-12)
    assert fpr_at_95_tpr(id_s, ood_s, "openood", recall_level=0.75) == pytest.approx(1 / 5, abs=1e-12)  # <= 1
    assert fpr_at_95_tpr(id_s, ood_s, "openood", recall_level=0.5) == pytest.approx(0.0, abs=1e-12)  # <= -1
    assert fpr_at_95_tpr([1.0], [0.0, 2.0, 0.5], "openood") == pytest.approx(1.0, abs=1e-12)  # must catch 2
    for level in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="recall_level"):
            fpr_at_95_tpr(id_s, ood_s, "openood", recall_level=level)


def test_drop_intermediate_skips_the_95_point_with_ties():
    # OOD positive on s = -score: OOD s = 100..116 (17 samples), then 5, 4, 3, each tied with one ID sample;
    # ID s = 5, 4, 3, 0, -1, ..., -6 (10 samples). The exact first point with OOD recall >= 0.95 (19 / 20)
    # is s >= 4, with 2 of 10 ID rejected. From s >= 100 on, the ROC moves by (1 ID, 1 OOD) three times in
    # a row, so sklearn's drop_intermediate removes the points at 5 and 4, and OpenOOD reports s >= 3: 3/10.
    id_s = [-5.0, -4.0, -3.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    ood_s = [-100.0 - i for i in range(17)] + [-5.0, -4.0, -3.0]
    f = fixture()
    assert np.array_equal(f["collinear_95_id"], id_s) and np.array_equal(f["collinear_95_ood"], ood_s)
    assert float(f["collinear_95_openood"][0]) == pytest.approx(0.3, abs=1e-12)
    assert fpr_at_95_tpr(id_s, ood_s, "openood") == pytest.approx(0.3, abs=1e-12)
    neg = lambda xs: [-x for x in xs]  # noqa: E731
    assert fpr_at_95_tpr(neg(ood_s), neg(id_s), "standard") == pytest.approx(0.2, abs=1e-12)


def test_trapezoid_aupr_hand_example():
    # ID 3 2 0, OOD 1.
    # AUPR-In (ID positive, by score): points (recall, precision) from recall 1 down to 0:
    #   (1, 3/4) (2/3, 2/3) (2/3, 1) (1/3, 1) (0, 1) -> 1/3 * (3/4 + 2/3) / 2 + 1/3 + 1/3 = 65/72,
    #   while average precision is 1/3 * (1 + 1 + 3/4) = 11/12.
    # AUPR-Out (OOD positive, by -score): (1, 1/4) (1, 1/3) (1, 1/2) (0, 0) (0, 1) -> 1 * (1/2 + 0) / 2 = 1/4,
    #   while average precision is 1 * 1/2 = 1/2.
    id_s, ood_s = [3.0, 2.0, 0.0], [1.0]
    oo = compute_metrics(id_s, ood_s, "openood")
    assert oo["aupr_in"] == pytest.approx(65 / 72, abs=1e-12)
    assert oo["aupr_out"] == pytest.approx(1 / 4, abs=1e-12)
    assert oo["auroc"] == pytest.approx(2 / 3, abs=1e-12)
    assert oo["fpr95"] == pytest.approx(1 / 3, abs=1e-12)  # catch the OOD 1 -> reject ID 0
    std = compute_metrics(id_s, ood_s, "standard")
    assert std["aupr_in"] == pytest.approx(11 / 12, abs=1e-12) == aupr_in(id_s, ood_s)
    assert std["aupr_out"] == pytest.approx(1 / 2, abs=1e-12) == aupr_out(id_s, ood_s)
    assert std["fpr95"] == pytest.approx(1.0, abs=1e-12)  # accept all ID -> threshold 0 accepts the OOD 1


def test_constant_and_separated_scores():
    m = compute_metrics(np.full(30, 0.7), np.full(10, 0.7), "openood")
    # average precision would be the positive shares 0.75 and 0.25; the trapezoid adds the point (0, 1)
    expected = {"auroc": 0.5, "fpr95": 1.0, "aupr_in": (1 + 0.75) / 2, "aupr_out": (1 + 0.25) / 2}
    assert m == pytest.approx(expected, abs=1e-12)
    m = compute_metrics([10.0, 11.0, 12.0], [0.0, 1.0], "openood")
    assert m == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}


def test_openood_compute_metrics_consistency():
    rng = np.random.default_rng(11)
    id_s, ood_s = np.round(rng.normal(1, 1, 50)), np.round(rng.normal(0, 1, 70))
    m = compute_metrics(id_s, ood_s, "openood")
    assert set(m) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
    assert all(type(x) is float and 0.0 <= x <= 1.0 for x in m.values())
    assert m["auroc"] == auroc(id_s, ood_s)
    assert m["fpr95"] == fpr_at_95_tpr(id_s, ood_s, "openood")
    # permutation invariance
    p = compute_metrics(rng.permutation(id_s), rng.permutation(ood_s), "openood")
    assert p == pytest.approx(m, abs=1e-12)


def test_openood_errors_like_the_others():
    with pytest.raises(ValueError, match="OOD scores contain 1 non-finite"):
        compute_metrics([1.0], [np.nan], "openood")
    with pytest.raises(ValueError, match="ID scores are empty"):
        fpr_at_95_tpr([], [1.0], "openood")
