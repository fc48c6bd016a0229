"""The evaluation protocols (docs/method.md, "Protocols"), turning per-sample scores into result rows.

- ``full`` (RecLag code): every image of every OOD set, once.
- ``sampled`` (SHE and energy-OOD code): ``repeats`` draws (10 in the reference) of floor(N_ID / 5) OOD
  images without replacement from each set, mean and standard deviation (ddof 0, as np.std) over the
  draws. The draws of a set depend only on ``seed`` and the set's name, and are the same for every
  score, so scores are compared on the same images. (The reference's batch loop truncated each draw to
  15 x 128 = 1920 images; we keep floor(N_ID / 5).)

A score with a replicate setting given several values (RecLag's learner seed) is evaluated once per
value; its row pools every (replicate, draw) pair into one mean and std, and lists each replicate's
metrics.

- ``paper``: each score the way its published row was produced. A score declaring
  ``paper_evaluation = "full"`` (RecLag: the RecLag code's test_RecLag.py) is evaluated on every OOD image
  with the RecLag code's FPR95 (the first ROC point with TPR > 95 %, ``strict``); every other score as the
  SHE / energy code evaluated its baselines: ten draws, seed 12, of the number of OOD images the
  reference's batch loop kept (floor(floor(N_ID / 5) / 128) * 128 = 1,920 for CIFAR; floor(floor(N_ID /
  10) / 1280) * 1280 = 3,840 for ImageNet; floor(N_ID / 5) when that is 0), with the FPR95 at the recall
  closest to 95 % (``closest``). ReAct's percentile defaults to 98 under it (scores/react.py).

Every row also carries intervals (``--bootstrap``, ood/evaluation/uncertainty.py): the stratified bootstrap of the
row's own metric, i.e. of the mean over its (replicate, draw) pairs, each draw's OOD images resampled
within the draw and the ID test set resampled once per resample for every set and score; and, for a row
of every OOD image, DeLong's AUROC interval beside it. AUROC's and FPR95's intervals keep their coverage
at the bounds (``interval_fields``). A set of fewer than MIN_INTERVAL_IMAGES images gives no interval
and no test (``too_few_images``: the row says so in ``intervals_note``); an AUROC with fewer than
AUROC_SMALL_SET images in a set, and an FPR95 whose threshold is placed by fewer than FPR95_THRESHOLD_IMAGES
images, have approximate intervals (``auroc_ci_note``, ``fpr95_ci_note``); the tables mark them.
"""
import zlib
from dataclasses import dataclass

import numpy as np

from ood.evaluation.metrics import compute_metrics
from ood.evaluation.uncertainty import (METRIC_ORDER, Bootstrap, Resampled, auroc_interval, delong_interval, fpr95_interval,
                          percentile_interval, se_mc_error)

PROTOCOLS = ("full", "sampled", "paper")
METRICS = METRIC_ORDER  # the tables' order, and the rows of a bootstrap distribution
PAPER_SEED, PAPER_REPEATS = 12, 10
DEFAULT_RESAMPLES, DEFAULT_LEVEL = 1000, 0.95
# The bootstrap's seed, the same in every run whatever its --seed: runs of other training seeds on the same
# test set then draw the same resamples, and aggregate_results.py can tell the test set's noise that they
# share from each run's own (ood/reporting/aggregate.py, variation).
BOOTSTRAP_SEED = 1
# Below this many images in the ID test set or an OOD set (a draw), a row has no interval and no test: a
# resample of k images repeats the set itself k! / k^k of the time (50 % at 2, 22 % at 3, 9 % at 4), and
# against 200 images of the other class a set of 3 gets AUROC intervals that cover 81-85 % (simulated,
# tests/test_statistics2_g.py).
MIN_INTERVAL_IMAGES = 5
# Below this many images in the smaller set, AUROC's interval is approximate (marked): its variance rests on
# that set's few placements, and against a large set it covers 85-90 % at 5 images (simulated).
AUROC_SMALL_SET = 20
# FPR95's threshold is the ID score with 5 % of the ID images below it (the OOD score with 5 % above, under
# "openood"): with fewer than this many images in that set, fewer than 50 lie beyond it, the bootstrap
# places it only roughly, and its interval covers 89-95 % where the threshold dominates (simulated): marked.
FPR95_THRESHOLD_IMAGES = 1000


@dataclass(frozen=True)
class Evaluation:
    """How a run evaluates its scores: ``--protocol``, ``--repeats``, ``--seed`` (the draws) and
    ``--fpr_variant``, the intervals (``--bootstrap``, ``--ci_level``; None: none) and ``--fsood``
    (OpenOOD's full-spectrum setting: the ID side is the ID test set and the covariate-shifted ID sets),
    resolved once from the command line."""
    protocol: str = "full"
    repeats: int = 10
    seed: int = 1
    fpr_variant: str = "standard"
    intervals: Bootstrap | None = None
    fsood: bool = False

    @classmethod
    def from_args(cls, args, note=print, fpr_default="standard"):
        """The evaluation of parsed arguments (``fpr_default``: the benchmark's FPR95 variant, used when
        --fpr_variant is not given). Under ``--protocol paper`` the sampled scores keep the
        reference's own draws and FPR95 (10 draws, seed 12, the closest variant) and RecLag its strict
        FPR95, so a --repeats, --seed or --fpr_variant given with it changes nothing: ``note`` says so."""
        given = {"--repeats": args.repeats, "--seed": args.seed, "--fpr_variant": args.fpr_variant}
        if args.protocol == "paper" and any(v is not None for v in given.values()):
            note(f"note: --protocol paper evaluates each score as its published row was produced ({PAPER_REPEATS} "
                 f"draws, seed {PAPER_SEED}, the closest FPR95 for the sampled scores; every OOD image and the "
                 f"strict FPR95 for RecLag), so {', '.join(k for k, v in given.items() if v is not None)} "
                 f"do not apply to its draws (--seed still seeds the scores' own fits).")
        seed = 1 if args.seed is None else args.seed
        resamples = getattr(args, "bootstrap", DEFAULT_RESAMPLES)
        level = getattr(args, "ci_level", DEFAULT_LEVEL)
        intervals = Bootstrap(resamples, level, BOOTSTRAP_SEED) if resamples else None
        return cls(args.protocol, 10 if args.repeats is None else args.repeats, seed,
                   args.fpr_variant or fpr_default, intervals, bool(getattr(args, "fsood", False)))

    def plan(self, score_cls, n_id, id_protocol="cifar"):
        return plan_for(self.protocol, score_cls, n_id, self.repeats, self.seed, self.fpr_variant, id_protocol)


@dataclass(frozen=True)
class Plan:
    """How one score is evaluated: the protocol recorded, how many OOD images each draw takes (None:
    all of them, once), the number of draws and their seed, and the FPR95 variant."""
    protocol: str
    size: int | None
    repeats: int
    seed: int | None
    fpr_variant: str


def plan_for(protocol, score_cls, n_id, repeats=10, seed=12, fpr_variant="standard", id_protocol="cifar"):
    if protocol == "full":
        return Plan("full", None, 1, None, fpr_variant)
    if protocol == "sampled":
        return Plan("sampled", max(1, n_id // 5), repeats, seed, fpr_variant)
    if protocol == "paper":
        if getattr(score_cls, "paper_evaluation", "sampled") == "full":
            return Plan("paper", None, 1, None, "strict")
        per_batch, share = (1280, 10) if id_protocol == "imagenet" else (128, 5)
        size = (n_id // share // per_batch) * per_batch or max(1, n_id // 5)
        return Plan("paper", size, PAPER_REPEATS, PAPER_SEED, "closest")
    raise ValueError(f"unknown protocol {protocol!r}; use one of {PROTOCOLS}")


def draws_of(plan, n_id, n_ood, name):
    """The OOD index arrays a row's metrics average over: every image once, or the sampled draws."""
    return [np.arange(n_ood)] if plan.size is None else \
        sample_indices(n_id, n_ood, name, plan.repeats, plan.seed, plan.size)


def sample_indices(n_id, n_ood, name, repeats, seed, size=None):
    """Index arrays of the sampled protocol for one OOD set: ``repeats`` draws of ``size`` (default
    floor(n_id / 5)) images without replacement, seeded by (seed, the set's name)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    k = min(n_ood, size or max(1, n_id // 5))
    return [np.sort(rng.choice(n_ood, size=k, replace=False)) for _ in range(repeats)]


def evaluate(id_scores, ood_scores, ood_name, protocol="full", repeats=10, seed=12, fpr_variant="standard"):
    """Metrics of one score against one OOD set (the full or sampled protocol); returns the metric
    fields of a results row."""
    plan = plan_for(protocol, None, len(id_scores), repeats, seed, fpr_variant)
    return evaluate_replicates([id_scores], [ood_scores], ood_name, plan)


def evaluate_replicates(id_scores, ood_scores, ood_name, plan):
    """The metric fields of one row under ``plan``: ``id_scores`` and ``ood_scores`` are lists with one
    array per replicate of the score. Every (replicate, draw) pair counts once in the mean and std;
    with more than one replicate the row also lists each replicate's metrics."""
    n_id, n_ood = len(id_scores[0]), len(ood_scores[0])
    draws = draws_of(plan, n_id, n_ood, ood_name)
    per_rep = [[compute_metrics(np.asarray(i), np.asarray(o)[idx], plan.fpr_variant) for idx in draws]
               for i, o in zip(id_scores, ood_scores)]
    runs = [r for rep in per_rep for r in rep]
    row = {k: float(np.mean([r[k] for r in runs])) for k in METRICS}
    row.update(auroc_std=float(np.std([r["auroc"] for r in runs])),
               fpr95_std=float(np.std([r["fpr95"] for r in runs])),
               protocol=plan.protocol, repeats=len(draws), seed=plan.seed, n_id=int(n_id),
               n_ood=int(len(draws[0])), fpr_variant=plan.fpr_variant)
    if len(per_rep) > 1:
        row["replicate_metrics"] = [{k: float(np.mean([r[k] for r in rep])) for k in METRICS} for rep in per_rep]
    return row


def resampled_ids(id_scores, boot):
    """One ``Resampled`` per replicate of a score's ID scores: the ID side of its bootstrap, shared by
    every OOD set the score is evaluated against."""
    return [Resampled(np.asarray(i, np.float64), boot.counts(len(i), "id")) for i in id_scores]


def bootstrap_distribution(sides, ood_scores, ood_name, plan, boot):
    """(len(METRICS), B) float64: the row's metrics (the mean over its (replicate, draw) pairs) on each
    resample. The OOD set is resampled as a whole, under its name, so that every score sees the same
    resamples; a sampled draw is the resample's copies of the draw's images (the draws overlap, and
    resampling each apart would count the set's variation once per draw and understate it)."""
    n_ood = len(ood_scores[0])
    draws = draws_of(plan, sides[0].id.desc.size, n_ood, ood_name)
    whole = boot.counts(n_ood, ood_name)
    total = np.zeros((len(METRICS), boot.resamples))
    for idx in draws:
        counts = whole if idx.size == n_ood else whole[idx]
        for side, o in zip(sides, ood_scores):
            got = side.metrics(np.asarray(o, np.float64)[idx], counts, plan.fpr_variant)
            total += np.stack([got[k] for k in METRICS])
    return total / (len(draws) * len(sides))


def too_few_images(n_id, n_ood):
    """The ``intervals_note`` of a row of n_id ID and n_ood OOD images (per draw) too few for an interval or a
    test (MIN_INTERVAL_IMAGES); None when there are enough."""
    if min(n_id, n_ood) >= MIN_INTERVAL_IMAGES:
        return None
    return (f"too few images ({n_id} ID, {n_ood} OOD; at least {MIN_INTERVAL_IMAGES} of each): no interval and "
            f"no test")


def counted_set(n_id, n_ood, fpr_variant):
    """(the images FPR95 counts, the images that place its threshold): the OOD and ID sets, the other way
    round under "openood" (OOD positive: the share of ID images rejected at 95 % OOD recall)."""
    return (n_id, n_ood) if fpr_variant == "openood" else (n_ood, n_id)


def fpr95_note(n_id, n_ood, fpr_variant):
    """The ``fpr95_ci_note`` of a row whose FPR95 threshold is placed by fewer than FPR95_THRESHOLD_IMAGES
    images (its interval is approximate); None otherwise."""
    _, placing = counted_set(n_id, n_ood, fpr_variant)
    if placing >= FPR95_THRESHOLD_IMAGES:
        return None
    which = "OOD" if fpr_variant == "openood" else "ID"
    return (f"approximate: {placing} {which} images place the 95 % threshold (fewer than "
            f"{FPR95_THRESHOLD_IMAGES})")


def auroc_note(n_id, n_ood):
    """The ``auroc_ci_note`` of a row whose smaller set has fewer than AUROC_SMALL_SET images (its AUROC
    interval is approximate); None otherwise."""
    if min(n_id, n_ood) >= AUROC_SMALL_SET:
        return None
    which = "ID" if n_id <= n_ood else "OOD"
    return f"approximate: {min(n_id, n_ood)} {which} images (fewer than {AUROC_SMALL_SET} in a set)"


def interval_fields(dist, boot, metrics, id_scores=None, ood_scores=None):
    """The interval fields of a row, whose metric fields (``evaluate_replicates``) are ``metrics``, from
    its bootstrap distribution: ``<metric>_se`` (the distribution's std) and ``<metric>_ci`` for every metric, the
    Monte-Carlo error of the AUROC interval's ends, the bootstrap's settings; with the per-sample scores of
    a row of every OOD image (lists, one array per replicate), DeLong's AUROC standard error and interval
    beside them. AUROC's interval is ``auroc_interval`` of the bootstrap's variance (logit scale; Newcombe's
    at 0 or 1), FPR95's ``fpr95_interval`` (Wilson's at the bootstrap's effective size), so that neither
    collapses to a point at a bound; the AUPRs' are percentile intervals."""
    out = {}
    for k, m in enumerate(METRICS):
        if m.startswith("aupr"):
            out[f"{m}_ci"] = list(percentile_interval(dist[k], boot.level))
        out[f"{m}_se"] = float(np.std(dist[k], ddof=1)) if dist.shape[1] > 1 else 0.0
    n_id, n_ood, variant = metrics["n_id"], metrics["n_ood"], metrics["fpr_variant"]
    out["auroc_ci"] = auroc_interval(metrics["auroc"], out["auroc_se"] ** 2, n_id, n_ood, boot.level)
    counted, _ = counted_set(n_id, n_ood, variant)
    out["fpr95_ci"] = fpr95_interval(metrics["fpr95"], out["fpr95_se"] ** 2, counted, boot.level)
    out["auroc_ci_mc_error"] = se_mc_error(out["auroc_ci"], metrics["auroc"], out["auroc_se"], boot.resamples)
    out["bootstrap"] = boot.describe()
    for key, note in (("auroc_ci_note", auroc_note(n_id, n_ood)), ("fpr95_ci_note", fpr95_note(n_id, n_ood, variant))):
        if note:
            out[key] = note
    if id_scores is not None:
        d = delong_interval([np.asarray(x, np.float64) for x in id_scores],
                            [np.asarray(x, np.float64) for x in ood_scores], boot.level)
        out["auroc_delong_se"], out["auroc_delong_ci"] = d["se"], d["ci"]
    return out


MC_TARGET = 0.001  # the Monte-Carlo error the default number of resamples aims at: 0.1 AUROC points


def mc_note(rows):
    """A note naming the OOD sets whose AUROC intervals move by more than 0.1 points between bootstrap seeds
    (small sets: the error grows as 1 / sqrt(size)), with the number of resamples that would bring them to
    0.1 (the error falls as 1 / sqrt(resamples)); None when every interval is within it."""
    worst = {}
    for r in rows:
        err = r.get("auroc_ci_mc_error")
        if err is not None and err > MC_TARGET:
            worst[r["ood_dataset"]] = max(err, worst.get(r["ood_dataset"], 0.0))
    if not worst:
        return None
    b = rows[0]["bootstrap"]["resamples"]
    need = int(np.ceil(b * (max(worst.values()) / MC_TARGET) ** 2 / 500.0)) * 500
    sets = ", ".join(f"{k} ({100 * v:.2f})" for k, v in worst.items())
    advice = f"--bootstrap {need} would bring it to 0.1" if need <= 20000 else \
        "sets this small would need more than 20,000 resamples for 0.1; read their ends to that precision"
    return (f"note: with {b} resamples the AUROC intervals' ends of {sets} have a Monte-Carlo error above 0.1 points "
            f"(in points; it grows on small sets and falls as 1 / sqrt(resamples)): {advice}.")
