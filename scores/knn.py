"""KNN (Sun, Ming, Zhu and Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022).

Score = -||z - z_(k)||, with z = phi / ||phi|| and z_(k) the k-th nearest of the normalised training
features (the bank: all training images, or a random fraction of them). Computed block by block with a
running top-k of the cosine similarities (||a - b||^2 = 2 - 2 a.b for unit vectors), so memory stays
bounded whatever the sizes of the bank and of the inputs; on CUDA (``--device``) the bank is moved to the
GPU once. The matrix products run in full fp32 (TF32 would cost about 1e-3 in the similarities).
"""
import math
import warnings

import torch

from ood.params import Param, per_dataset

from .base import Score

QUERY_BLOCK = 1024
BANK_BLOCK = 1 << 15


def normalise(x):
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def fixed_subset(n, fraction):
    """Indices of the bank: all n training rows, or a fixed random draw of round(fraction n) of them (the
    same for every run, so a stored bank does not depend on the run's seed)."""
    if fraction >= 1:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:max(1, round(fraction * n))]


def usable_k(score, bank):
    """``score.k``, or the size of the bank when that is smaller (with a warning)."""
    if score.k > len(bank):
        warnings.warn(f"{score.name}: k = {score.k} is more than the {len(bank)} features of the bank; "
                      f"using k = {len(bank)}.")
        return len(bank)
    return score.k


def top_similarities(queries, bank, k, device=None, bank_scale=None):
    """The k largest similarities (queries . bank rows) of each query, in descending order, block by
    block with a running top-k. ``bank_scale`` (one factor per bank row, e.g. 1 / ||row|| for cosine
    similarities) is applied to the similarities, so a bank need not be normalised in a copy. On CUDA the bank is moved to the device
    once; elsewhere it is read block by block."""
    device = torch.device(device) if device is not None else queries.device
    if device.type == "cuda":
        bank = bank.to(device, torch.float32)
        bank_scale = None if bank_scale is None else bank_scale.to(device, torch.float32)
    out = torch.empty(len(queries), k, dtype=torch.float32)
    q_block = QUERY_BLOCK * (8 if device.type == "cuda" else 1)
    for i in range(0, len(queries), q_block):
        q = queries[i:i + q_block].to(device, torch.float32)
        best = torch.full((len(q), 0), -math.inf, device=device)
        for j in range(0, len(bank), BANK_BLOCK):
            sims = q @ bank[j:j + BANK_BLOCK].to(device, torch.float32).T
            if bank_scale is not None:
                sims.mul_(bank_scale[j:j + BANK_BLOCK].to(device, torch.float32))
            best = torch.cat([best, sims], 1).topk(min(k, best.shape[1] + sims.shape[1]), dim=1).values
        out[i:i + len(q)] = best.cpu()
    return out


class KNN(Score):
    """Negative distance to the k-th nearest normalised training feature."""
    name, order = "KNN", 110
    params = (
        Param("k", int, per_dataset({"cifar10": 50, "cifar100": 200, "imagenet": 10}, 50,
                                    "50 on CIFAR-10 (paper), 200 on CIFAR-100 (the value this project took "
                                    "from pytorch-ood, not the paper's; OpenOOD's configured K and the knn-ood "
                                    "code's run_cifar.py, for any ID set, use 50), 10 on ImageNet with a 1% "
                                    "bank (paper), 50 otherwise"),
              "the neighbour whose distance is the score", "Sun et al. 2022; knn-ood code (run_cifar.py K = 50)",
              bounds="[1, inf)", grid=(50, 100, 200, 500, 1000), grid_source="OpenOOD v1.5 (knn.yml)",
              benchmarks={"openood": 50}, benchmark_source="OpenOOD v1.5 (knn.yml)"),
        Param("bank_fraction", float, per_dataset({"imagenet": 0.01}, 1.0,
                                                  "0.01 on ImageNet (paper), 1 (all training images) otherwise"),
              "fraction of the training images kept in the bank (a fixed random draw)", "Sun et al. 2022",
              bounds="(0, 1]", fit=True, benchmarks={"openood": 1.0},
              benchmark_source="OpenOOD v1.5 (knn_postprocessor.py: every training image, ImageNet-1k too)"),
        Param("distance", str, "euclidean", "the score is minus the distance (euclidean, the paper's) or minus "
              "its square (squared, as OpenOOD v1.5's faiss IndexFlatL2 returns it): the same order and "
              "metrics, other values", "Sun et al. 2022", choices=("euclidean", "squared"),
              implicit=("euclidean",),
              benchmarks={"openood": "squared"}, benchmark_source="OpenOOD v1.5 (knn_postprocessor.py)"),
    )

    def fit(self, train, head):
        """The bank: the training features as they are (no normalised copy, so an ImageNet-size bank
        is held once) with the inverse of each row's norm."""
        bank = train["features"].float()
        idx = fixed_subset(len(bank), self.bank_fraction)
        bank = bank if idx is None else bank[idx]
        inv_norm = torch.cat([1 / bank[i:i + BANK_BLOCK].norm(dim=1).clamp_min(1e-12)
                              for i in range(0, len(bank), BANK_BLOCK)])
        return {"bank": bank, "inv_norm": inv_norm}

    def score(self, data, state, head):
        bank = state["bank"]
        k = usable_k(self, bank)
        s = top_similarities(normalise(data["features"].float()), bank, k, self.device, state["inv_norm"])[:, k - 1]
        squared = (2 - 2 * s).clamp_min(0)
        return -squared if self.distance == "squared" else -torch.sqrt(squared)
