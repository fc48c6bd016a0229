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
"""
import zlib
from dataclasses import dataclass

import numpy as np

from .metrics import compute_metrics

PROTOCOLS = ("full", "sampled", "paper")
METRICS = ("fpr95", "auroc", "aupr_in", "aupr_out")  # the tables' order
PAPER_SEED, PAPER_REPEATS = 12, 10


@dataclass(frozen=True)
class Evaluation:
    """How a run evaluates its scores: ``--protocol``, ``--repeats``, ``--seed`` (the draws) and
    ``--fpr_variant``, resolved once from the command line."""
    protocol: str = "full"
    repeats: int = 10
    seed: int = 1
    fpr_variant: str = "standard"

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
        return cls(args.protocol, 10 if args.repeats is None else args.repeats,
                   1 if args.seed is None else args.seed, args.fpr_variant or fpr_default)

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
    draws = [np.arange(n_ood)] if plan.size is None else \
        sample_indices(n_id, n_ood, ood_name, plan.repeats, plan.seed, plan.size)
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
