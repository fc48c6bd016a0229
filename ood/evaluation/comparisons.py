"""Which differences between scores are real (docs/method.md, "Uncertainty").

Two scores evaluated on the same ID and OOD images are compared *paired*: their bootstrap distributions
come from the same resamples (ood/evaluation/uncertainty.py), so the distribution of their difference is the
difference of the two, resample by resample. Two uses:

- **against a reference** (``--compare_to``, RecLag by default when the run scores it): for every other
  score and OOD set, the AUROC difference with its interval and two p-values (DeLong's test for
  correlated ROC curves, and the paired bootstrap), and the FPR95 difference with its interval and two
  p-values (the paired permutation test, and the paired bootstrap's, which is conservative for FPR95).
  Stored in each row under ``vs``. DeLong's and the permutation test need both scores' per-sample values:
  rows of every OOD image scored in the same run.
- **ties with the best** in the tables: in each column, the best and every score that the paired
  bootstrap does not show worse than another score of the column, all pairs compared at once (max-t,
  ood.evaluation.uncertainty.simultaneous_worse), so that the chance of leaving any score tied with the best out
  is at most 1 - level however many scores the column has. A mark says "not shown worse", not "as good".

Rows are compared only when they were evaluated on the same draws of the same images with the same
bootstrap (``comparable``): under ``--protocol paper`` RecLag's row (every OOD image) and the others'
(sampled draws) are not.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ood.system import accel
from ood.evaluation.protocols import METRICS
from ood.evaluation.uncertainty import Bootstrap, delong_test, paired, simultaneous_worse, swap_test
from ood.evaluation.rows import dist_key, table_groups

# what two rows must share for their bootstrap distributions to be paired
PLAN = ("protocol", "repeats", "seed", "n_id", "n_ood", "fpr_variant", "bootstrap", "fsood")
AUROC, FPR = METRICS.index("auroc"), METRICS.index("fpr95")


def comparable(a, b):
    return all(a.get(k) == b.get(k) for k in PLAN) and a.get("bootstrap") is not None


def planned(evaluation):
    """The fields of PLAN that every row of a run evaluated by ``evaluation`` (an ood.evaluation.protocols.Evaluation
    with intervals) will have, known before any scoring (the sample sizes are not); None under the paper
    protocol, where each score is evaluated its own way."""
    if evaluation.protocol == "paper" or evaluation.intervals is None:
        return None
    plan = evaluation.plan(None, 1)
    return {"protocol": plan.protocol, "repeats": plan.repeats, "seed": plan.seed, "fpr_variant": plan.fpr_variant,
            "bootstrap": evaluation.intervals.describe(), "fsood": True if evaluation.fsood else None}


def _compare(r, ref, da, db, values=None):
    """The ``vs`` of row ``r`` against the reference row ``ref`` (distributions ``da``, ``db``)."""
    level = r["bootstrap"]["level"]
    auroc = paired(da[AUROC], db[AUROC], r["auroc"] - ref["auroc"], level)
    fpr = paired(da[FPR], db[FPR], r["fpr95"] - ref["fpr95"], level)
    vs = {"reference": ref["score"], "reference_settings": ref.get("settings"), "reference_key": _key(ref),
          "auroc_diff": auroc["diff"], "auroc_diff_ci": auroc["ci"], "auroc_p_bootstrap": auroc["p"],
          "auroc_p_delong": None,
          "fpr95_diff": fpr["diff"], "fpr95_diff_ci": fpr["ci"], "fpr95_p_bootstrap": fpr["p"],
          "fpr95_p_permutation": None}
    mine, theirs = (values or {}).get((r["score"], r["ood_dataset"])), (values or {}).get((ref["score"], ref["ood_dataset"]))
    if mine is not None and theirs is not None and r.get("auroc_delong_se") is not None:
        t = delong_test(mine[0], mine[1], theirs[0], theirs[1], level)
        vs["auroc_p_delong"], vs["auroc_log10_p_delong"] = t["p"], t["log10_p"]  # log10: beyond a float's range
        if len(mine[0]) == len(theirs[0]):  # a swap exchanges all replicates of a sample at once
            vs["fpr95_p_permutation"] = swap_test(mine[0], mine[1], theirs[0], theirs[1], Bootstrap(**r["bootstrap"]),
                                                  r["ood_dataset"], r["fpr_variant"])["p"]
    return vs


def _key(row):
    return dist_key(row)


def against(rows, dists, reference, values=None):
    """``rows`` (one run's) with ``vs`` added to each row of another score than ``reference`` (a score name)
    that has a comparable reference row on its OOD set. ``dists``: dist key -> bootstrap distribution
    (len(METRICS), B); ``values``: (score, ood set) -> the per-sample scores of each replicate, [[ID
    arrays], [OOD arrays]], for DeLong's test (rows of every OOD image only)."""
    refs = {r["ood_dataset"]: r for r in rows if r["score"].lower() == reference.lower()}
    todo = {}
    for i, r in enumerate(rows):
        ref = refs.get(r["ood_dataset"])
        da, db = dists.get(_key(r)), dists.get(_key(ref)) if ref is not None else None
        if not (ref is None or r["score"] == ref["score"] or not comparable(r, ref) or da is None or db is None):
            todo[i] = (r, ref, da, db, values)
    # each comparison on its own: the CPU's threads share them (numpy releases the GIL in its loops), and
    # every result is the one a single thread computes; a swap test holds the cumulative counts of its
    # pool (float64, both classes, every swap), which bounds how many run at once
    largest = max((16 * (r["n_id"] + r["n_ood"] + 1) * (r["bootstrap"]["resamples"] + 1) for r, *_ in todo.values()),
                  default=0)
    with ThreadPoolExecutor(accel.threads_for(len(todo), largest)) as pool:
        done = dict(zip(todo, pool.map(lambda args: _compare(*args), todo.values())))
    return [{**r, "vs": done[i]} if i in done else r for i, r in enumerate(rows)]


def reconcile(rows, dists, fresh, reference):
    """A results folder's rows (``fresh``: the dist keys of this run's rows) with one reference per table
    and every comparison current. ``reference``: the score this run compared with, "none" (no comparisons
    in the tables this run wrote into) or None (this run named none: each table keeps the reference its
    rows name). A comparison whose reference row has since been replaced is recomputed from the stored
    distributions (its DeLong p-value, which needs both scores' per-sample values, is then None); the
    reference's own rows have none."""
    new = {}
    for g in table_groups(rows):
        touched = any(_key(r) in fresh for r in g)
        names = [reference] if touched and reference else []
        names += [r["vs"]["reference"] for r in g if r.get("vs")]
        ref_name = None if touched and reference == "none" else next(
            (n for n in names if any(r["score"].lower() == n.lower() for r in g)), None)
        refs = {}
        for r in g:  # the reference row of each set: this run's when it has one
            if ref_name and r["score"].lower() == ref_name.lower() and (r["ood_dataset"] not in refs or _key(r) in fresh):
                refs[r["ood_dataset"]] = r
        for r in g:
            ref = refs.get(r["ood_dataset"])
            vs = r.get("vs")
            if ref is None or r["score"] == ref["score"]:
                new[id(r)] = {k: v for k, v in r.items() if k != "vs"}
            elif vs and vs.get("reference_key") == _key(ref):
                new[id(r)] = r
            else:
                da, db = dists.get(_key(r)), dists.get(_key(ref))
                ok = comparable(r, ref) and da is not None and db is not None
                base = {k: v for k, v in r.items() if k != "vs"}
                new[id(r)] = {**base, "vs": _compare(r, ref, da, db)} if ok else base
    return [new.get(id(r), r) for r in rows]


def tied_with_best(cells, lower_is_better, level):
    """The labels marked in one column: the best and every label with a distribution that is not
    significantly worse than any other (the max-t over all pairs of labels with distributions, at
    family-wise level 1 - ``level``). ``cells``: label -> (value, distribution or None). Without a
    distribution (the label's or the best's), only values equal to the best's (to the two decimals a
    table shows, in percent) are marked."""
    if not cells:
        return set()
    pick = min if lower_is_better else max
    best = pick(cells, key=lambda s: cells[s][0])
    value, dist = cells[best]
    marked = {s for s, (v, _) in cells.items() if round(100 * v, 2) == round(100 * value, 2)}
    tested = [s for s, (_, d) in cells.items() if d is not None]
    if dist is not None and len(tested) > 1:
        sign = -1.0 if lower_is_better else 1.0  # the max-t takes higher as better
        worse, _ = simultaneous_worse(np.stack([sign * np.asarray(cells[s][1], np.float64) for s in tested]),
                                      np.array([sign * cells[s][0] for s in tested]), level)
        marked |= {s for s, w in zip(tested, worse) if not w}
    return marked


def column_distribution(parts):
    """The bootstrap distribution of an average over OOD sets: the mean of the sets' distributions,
    resample by resample (the ID resample is shared, so this is the average's own distribution)."""
    return np.mean(np.stack([np.asarray(p, np.float64) for p in parts]), axis=0)
