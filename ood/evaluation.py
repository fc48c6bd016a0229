"""The evaluation protocols of METHOD.md section 7, turning per-sample scores into result rows.

- ``full`` (RecLag code): every image of every OOD set, once.
- ``sampled`` (SHE and energy-OOD code): ``repeats`` draws (10 in the reference) of floor(N_ID / 5) OOD
  images without replacement from each set, mean and standard deviation (ddof 0, as np.std) over the
  draws. The draws of a set depend only on ``seed`` and the set's name, and are the same for every
  score, so scores are compared on the same images. (The reference's batch loop truncated each draw to
  15 x 128 = 1920 images; we keep floor(N_ID / 5).)
"""
import zlib

import numpy as np

from .metrics import compute_metrics

PROTOCOLS = ("full", "sampled")


def sample_indices(n_id, n_ood, name, repeats, seed):
    """Index arrays of the sampled protocol for one OOD set."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    k = min(n_ood, max(1, n_id // 5))
    return [np.sort(rng.choice(n_ood, size=k, replace=False)) for _ in range(repeats)]


def evaluate(id_scores, ood_scores, ood_name, protocol="full", repeats=10, seed=12, fpr_variant="standard"):
    """Metrics of one score against one OOD set; returns the row fields of results.json."""
    id_scores, ood_scores = np.asarray(id_scores), np.asarray(ood_scores)
    if protocol == "full":
        draws = [np.arange(len(ood_scores))]
    elif protocol == "sampled":
        draws = sample_indices(len(id_scores), len(ood_scores), ood_name, repeats, seed)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {PROTOCOLS}")
    runs = [compute_metrics(id_scores, ood_scores[idx], fpr_variant) for idx in draws]
    row = {k: float(np.mean([r[k] for r in runs])) for k in ("auroc", "aupr_in", "aupr_out", "fpr95")}
    row.update(auroc_std=float(np.std([r["auroc"] for r in runs])),
               fpr95_std=float(np.std([r["fpr95"] for r in runs])),
               protocol=protocol, repeats=len(draws), seed=seed if protocol == "sampled" else None,
               n_id=int(len(id_scores)), n_ood=int(len(draws[0])))
    return row
