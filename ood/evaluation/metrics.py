"""OOD-detection metrics (docs/method.md, "Metrics").

Every score is "higher = more in-distribution"; **ID is the positive class** (label 1), as in the
RecLag, SHE and energy-OOD code and the papers' tables. All functions take the ID scores and the OOD
scores as two separate 1-D inputs (numpy arrays, lists or torch tensors; anything else is flattened),
compute in float64, and return python floats that are fractions in [0, 1] (multiply by 100 for tables).

    auroc      area under the ROC curve            sklearn ``roc_auc_score``, ID = 1
    aupr_in    average precision, ID positive      sklearn ``average_precision_score``, ID = 1
    aupr_out   average precision, OOD positive     the same on the negated score, OOD = 1
    fpr95      share of OOD accepted at 95 % TPR   ``fpr_at_95_tpr``, variant chosen below

(``compute_metrics(..., "openood")`` changes fpr95 and both AUPRs; see the last paragraph.)

FPR95 variants (``FPR_VARIANTS``)
---------------------------------

============  =======================================================================================
variant       definition
============  =======================================================================================
"standard"    The fraction of OOD samples accepted (score >= t) at the largest threshold t that still
(default)     accepts at least 95 % of the ID samples, i.e. FPR at TPR >= 0.95. With n ID samples,
              t is the k-th largest ID score, k the smallest count with k / n >= 0.95 (19 of 20 is
              95 %). Exact with ties, O(n log n).
"closest"     The energy-OOD / SHE code's ``fpr_and_fdr_at_recall`` (github.com/wetliu/energy_ood,
              ``utils/display_results.py``, used through ``get_measures(id, ood)``): the ROC point
              whose recall is closest to 0.95, with that code's point order and tie-breaking
              reproduced exactly (it may pick a point with recall *below* 0.95).
"strict"      The RecLag code's: ``fpr, tpr, _ = sklearn.metrics.roc_curve(labels, scores)`` with
              ID = 1 and default arguments (``drop_intermediate=True``), then ``fpr`` of the first
              point with ``tpr`` strictly above 0.95.
"openood"     OpenOOD v1.5's (github.com/Jingkang50/OpenOOD, ``openood/evaluators/metrics.py``), with
              **OOD as the positive class**: the fraction of *ID* samples rejected when 95 % of the OOD
              samples are caught. It is the ROC of sklearn's ``roc_curve`` with OOD = 1 on the negated
              score (default arguments, so ``drop_intermediate=True``), at its first point with TPR
              >= 0.95. ``recall_level`` is then the OOD recall.
============  =======================================================================================

The three ID-positive variants agree up to the handling of the ROC point at (or next to) 95 % recall.
With tied scores (for example saturated softmax, integer-valued or float16 scores) they can differ by
several percentage points; with continuous scores, by about 0.05 points (one OOD sample in a couple of
thousand). Report which one a number uses.

Two conventions share the name "FPR95". With ID positive ("standard", "closest", "strict"; the RecLag,
SHE and energy-OOD papers) it is the share of OOD samples *accepted* at 95 % ID recall. With OOD
positive ("openood"; OpenOOD v1.5, and pytorch-ood too) it is the share of ID samples *rejected* at
95 % OOD recall. They are different numbers and neither bounds the other (OpenOOD's issue #308 asks
whether theirs should not be the other way round); report which one a table uses. Unless an ID score
equals an OOD score, "openood" is "standard" with the two sets swapped and the scores negated. With
such ties, ``drop_intermediate`` can remove the ROC point where the OOD recall first reaches 95 % (when
it lies inside a straight segment of the curve), and the next point, which rejects more ID samples, is
reported instead; this is kept, as it is the number OpenOOD prints.

Under "openood", ``compute_metrics`` also computes both AUPRs as OpenOOD does: the area under sklearn's
``precision_recall_curve`` (ID positive on the score for AUPR-In, OOD positive on the negated score for
AUPR-Out) by the trapezoid rule, which interpolates linearly between the curve's points, instead of
average precision (a step sum). On continuous scores the two differ by a fraction of a point; on tied
scores by several points (on constant scores, average precision is the positive share p and the
trapezoid area (1 + p) / 2). AUROC is the same under every variant.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

__all__ = [
    "FPR_VARIANTS",
    "auroc",
    "aupr_in",
    "aupr_out",
    "fpr_at_95_tpr",
    "compute_metrics",
]

FPR_VARIANTS = ("standard", "closest", "strict", "openood")


# --------------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------------

def _to_float64(x, which: str) -> np.ndarray:
    """One score set as a flat float64 array; ``which`` is "ID" or "OOD" for error messages."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu()
        if getattr(x, "is_complex", lambda: False)():
            raise ValueError(f"{which} scores are complex; scores must be real and finite.")
        x = x.double().numpy()
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise ValueError(f"{which} scores are complex; scores must be real and finite.")
    try:
        arr = arr.astype(np.float64, copy=False).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{which} scores could not be converted to float64 numbers: {err}") from err
    if arr.size == 0:
        raise ValueError(f"{which} scores are empty; at least one {which} score is needed.")
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(bad.sum()) - n_nan
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{which} scores contain {int(bad.sum())} non-finite value(s) ({n_nan} NaN, {n_inf} +/-inf) "
            f"out of {arr.size}, the first at index {first} (value {arr[first]}); "
            f"scores must be finite."
        )
    return arr


def _validate(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """The one validation used by every metric: two non-empty, finite, flat float64 arrays."""
    return _to_float64(id_scores, "ID"), _to_float64(ood_scores, "OOD")


def _labels_and_scores(id_s: np.ndarray, ood_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated scores (ID first) and labels with ID = 1, as in all reference code bases."""
    scores = np.concatenate((id_s, ood_s))
    labels = np.zeros(scores.size, dtype=np.int64)
    labels[: id_s.size] = 1
    return labels, scores


def _check_variant(variant: str) -> None:
    if variant not in FPR_VARIANTS:
        raise ValueError(f"unknown FPR95 variant {variant!r}; expected one of {FPR_VARIANTS}.")


def _check_recall_level(recall_level: float, variant: str) -> float:
    r = float(recall_level)
    if not (0.0 < r <= 1.0):
        raise ValueError(f"recall_level must be in (0, 1], got {recall_level!r}.")
    if variant == "strict" and r >= 1.0:
        raise ValueError("the 'strict' FPR95 variant needs recall_level < 1: no ROC point has TPR "
                         "strictly above 1.")
    return r


# --------------------------------------------------------------------------------------------------
# metrics on validated arrays
# --------------------------------------------------------------------------------------------------

def _auroc(id_s, ood_s) -> float:
    labels, scores = _labels_and_scores(id_s, ood_s)
    with np.errstate(over="ignore", invalid="ignore"):  # diff of +-1e308 overflows harmlessly
        return float(roc_auc_score(labels, scores))


def _fraction(v) -> float:
    """A metric as a python float in [0, 1]: sklearn's average precision sums precisions times recall
    steps and can land an ulp above 1 (1.0000000000000002)."""
    return min(1.0, max(0.0, float(v)))


def _aupr_in(id_s, ood_s) -> float:
    labels, scores = _labels_and_scores(id_s, ood_s)
    with np.errstate(over="ignore", invalid="ignore"):
        return _fraction(average_precision_score(labels, scores))


def _aupr_out(id_s, ood_s) -> float:
    labels, scores = _labels_and_scores(id_s, ood_s)
    with np.errstate(over="ignore", invalid="ignore"):
        return _fraction(average_precision_score(1 - labels, -scores))


def _fpr_standard(id_s, ood_s, recall_level) -> float:
    n_id = id_s.size
    # smallest k with k / n_id >= recall_level, compared in float as a TPR would be (19/20 == 0.95)
    k = min(max(int(np.ceil(recall_level * n_id)), 1), n_id)
    while k > 1 and (k - 1) / n_id >= recall_level:
        k -= 1
    while k < n_id and k / n_id < recall_level:
        k += 1
    # largest threshold accepting >= k ID samples: the k-th largest ID score
    t = np.sort(id_s)[n_id - k]
    n_accepted = ood_s.size - np.searchsorted(np.sort(ood_s), t, side="left")
    return float(n_accepted / ood_s.size)


def _fpr_closest(id_s, ood_s, recall_level) -> float:
    """``fpr_and_fdr_at_recall(labels, examples, recall_level)`` of the energy-OOD code, step by step."""
    y_score = np.concatenate((id_s, ood_s))  # get_measures: examples = concat(pos, neg)
    y_true = np.zeros(y_score.size)
    y_true[: id_s.size] = 1
    y_true = y_true == 1.0  # pos_label = 1.
    desc_score_indices = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[desc_score_indices]
    y_true = y_true[desc_score_indices]
    # np.where(np.diff(y_score))[0], written without the subtraction (which overflows for +-1e308;
    # for finite floats a - b == 0 exactly when a == b, so the indices are identical)
    distinct_value_indices = np.where(y_score[1:] != y_score[:-1])[0]
    threshold_idxs = np.r_[distinct_value_indices, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[threshold_idxs]  # stable_cumsum: exact for 0/1 sums
    fps = 1 + threshold_idxs - tps
    recall = tps / tps[-1]
    last_ind = tps.searchsorted(tps[-1])
    sl = slice(last_ind, None, -1)
    recall, fps = np.r_[recall[sl], 1], np.r_[fps[sl], 0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return float(fps[cutoff] / np.sum(np.logical_not(y_true)))


def _fpr_strict(id_s, ood_s, recall_level) -> float:
    labels, scores = _labels_and_scores(id_s, ood_s)
    with np.errstate(over="ignore", invalid="ignore"):
        fpr, tpr, _ = roc_curve(labels, scores)
    above = np.flatnonzero(tpr > recall_level)
    return float(fpr[above[0]])


def _fpr_openood(id_s, ood_s, recall_level) -> float:
    """OOD-positive FPR: the ROC of OOD = 1 against the negated score, as sklearn's ``roc_curve`` gives it
    with its default arguments, at the first point whose TPR (the OOD recall) reaches ``recall_level``."""
    labels, scores = _labels_and_scores(id_s, ood_s)
    with np.errstate(over="ignore", invalid="ignore"):
        fpr, tpr, _ = roc_curve(1 - labels, -scores)
    # the last point has tpr == 1 >= recall_level, so there is always one
    return float(fpr[np.flatnonzero(tpr >= recall_level)[0]])


_FPR = {"standard": _fpr_standard, "closest": _fpr_closest, "strict": _fpr_strict, "openood": _fpr_openood}


def _pr_area_trapezoid(positive, scores) -> float:
    """Area under sklearn's precision-recall curve of ``positive`` (0/1) ranked by ``scores``, by the
    trapezoid rule, as OpenOOD computes its AUPRs. The curve runs from recall 1 down to recall 0
    (precision 1 there); every neighbouring pair of points adds its width times its mean height."""
    with np.errstate(over="ignore", invalid="ignore"):
        precision, recall, _ = precision_recall_curve(positive, scores)
    widths = recall[:-1] - recall[1:]
    heights = 0.5 * (precision[:-1] + precision[1:])
    return _fraction(np.sum(widths * heights))


def _aupr_in_openood(id_s, ood_s) -> float:
    labels, scores = _labels_and_scores(id_s, ood_s)
    return _pr_area_trapezoid(labels, scores)


def _aupr_out_openood(id_s, ood_s) -> float:
    labels, scores = _labels_and_scores(id_s, ood_s)
    return _pr_area_trapezoid(1 - labels, -scores)


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------

def auroc(id_scores, ood_scores) -> float:
    """Area under the ROC curve, ID positive (sklearn ``roc_auc_score``); 0.5 for constant scores."""
    return _auroc(*_validate(id_scores, ood_scores))


def aupr_in(id_scores, ood_scores) -> float:
    """Average precision with ID as the positive class (sklearn ``average_precision_score``)."""
    return _aupr_in(*_validate(id_scores, ood_scores))


def aupr_out(id_scores, ood_scores) -> float:
    """Average precision with OOD as the positive class, on the negated score."""
    return _aupr_out(*_validate(id_scores, ood_scores))


def fpr_at_95_tpr(id_scores, ood_scores, variant: str = "standard", recall_level: float = 0.95) -> float:
    """Share of OOD samples accepted at the ID recall ``recall_level``; see the module docstring
    for the ``variant`` definitions ("standard", "closest", "strict"). Under "openood" it is instead
    the share of ID samples rejected at the OOD recall ``recall_level`` (OOD positive)."""
    _check_variant(variant)
    r = _check_recall_level(recall_level, variant)
    return _FPR[variant](*_validate(id_scores, ood_scores), r)


def compute_metrics(id_scores, ood_scores, fpr_variant: str = "standard") -> dict:
    """All four metrics as python floats in [0, 1]: ``auroc, aupr_in, aupr_out, fpr95``. Under
    ``fpr_variant="openood"`` all of them follow OpenOOD v1.5 (trapezoid AUPRs, OOD-positive FPR95)."""
    _check_variant(fpr_variant)
    id_s, ood_s = _validate(id_scores, ood_scores)
    openood = fpr_variant == "openood"
    return {
        "auroc": _auroc(id_s, ood_s),
        "aupr_in": (_aupr_in_openood if openood else _aupr_in)(id_s, ood_s),
        "aupr_out": (_aupr_out_openood if openood else _aupr_out)(id_s, ood_s),
        "fpr95": _FPR[fpr_variant](id_s, ood_s, 0.95),
    }
