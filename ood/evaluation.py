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
"""
import zlib

import numpy as np

from .metrics import compute_metrics

PROTOCOLS = ("full", "sampled")
METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")


def sample_indices(n_id, n_ood, name, repeats, seed):
    """Index arrays of the sampled protocol for one OOD set."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    k = min(n_ood, max(1, n_id // 5))
    return [np.sort(rng.choice(n_ood, size=k, replace=False)) for _ in range(repeats)]


def draws_of(n_id, n_ood, ood_name, protocol, repeats, seed):
    if protocol == "full":
        return [np.arange(n_ood)]
    if protocol == "sampled":
        return sample_indices(n_id, n_ood, ood_name, repeats, seed)
    raise ValueError(f"unknown protocol {protocol!r}; use one of {PROTOCOLS}")


def evaluate(id_scores, ood_scores, ood_name, protocol="full", repeats=10, seed=12, fpr_variant="standard"):
    """Metrics of one score against one OOD set; returns the metric fields of a results row."""
    return evaluate_replicates([id_scores], [ood_scores], ood_name, protocol, repeats, seed, fpr_variant)


def evaluate_replicates(id_scores, ood_scores, ood_name, protocol="full", repeats=10, seed=12,
                        fpr_variant="standard"):
    """``evaluate`` for a score fitted several times: ``id_scores`` and ``ood_scores`` are lists with one
    array per replicate. Every (replicate, draw) pair counts once in the mean and std; with more than
    one replicate the row also lists each replicate's metrics."""
    n_id, n_ood = len(id_scores[0]), len(ood_scores[0])
    draws = draws_of(n_id, n_ood, ood_name, protocol, repeats, seed)
    per_rep = [[compute_metrics(np.asarray(i), np.asarray(o)[idx], fpr_variant) for idx in draws]
               for i, o in zip(id_scores, ood_scores)]
    runs = [r for rep in per_rep for r in rep]
    row = {k: float(np.mean([r[k] for r in runs])) for k in METRICS}
    row.update(auroc_std=float(np.std([r["auroc"] for r in runs])),
               fpr95_std=float(np.std([r["fpr95"] for r in runs])),
               protocol=protocol, repeats=len(draws), seed=seed if protocol == "sampled" else None,
               n_id=int(n_id), n_ood=int(len(draws[0])))
    if len(per_rep) > 1:
        row["replicate_metrics"] = [{k: float(np.mean([r[k] for r in rep])) for k in METRICS} for rep in per_rep]
    return row
