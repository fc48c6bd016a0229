"""Hopfield-energy scores on stored ID patterns (Zhang et al., "Out-of-Distribution Detection based on
In-Distribution Data Patterns Memorization with Modern Hopfield Energy", ICLR 2023).

Both route an input by its *predicted* class c = argmax logits, also for OOD inputs, and compare its
feature phi with the stored patterns of that class: the correctly classified training features X_c.
As in the reference code there is no 1/2 ||phi||^2 term and no 1/beta factor.
"""
import torch

from ood.params import Param, Rule

from .base import Score, correct_by_class, missing_classes_warning

CHUNK_ELEMENTS = 1 << 24  # bound on the size of one block of similarities (64 MiB in float32)


def lse_scores(queries, patterns, beta, chunk_elements=CHUNK_ELEMENTS):
    """logsumexp_j(beta * p_j . q_i) for every row q_i of ``queries``, over the rows p_j of ``patterns``.
    Works block by block with a running logsumexp, so memory does not grow with either size."""
    n, m = queries.shape[0], patterns.shape[0]
    q_block = max(1, min(n, 4096))
    p_block = max(1, chunk_elements // q_block)
    out = torch.empty(n, dtype=torch.float32, device=queries.device)
    for i in range(0, n, q_block):
        q = queries[i:i + q_block].float()
        acc = torch.full((q.shape[0],), float("-inf"), device=queries.device)
        for j in range(0, m, p_block):
            block = (q @ patterns[j:j + p_block].float().T).mul_(beta)
            acc = torch.logaddexp(acc, torch.logsumexp(block, 1))
        out[i:i + q_block] = acc
    return out


class HE(Score):
    """Hopfield Energy: logsumexp_j(beta * s_j . phi) over all s_j in X_c, c the predicted class."""
    name, order, paper = "HE", 40, True
    params = (Param("beta", float, Rule(lambda ctx: ctx.model.he_beta if ctx.model is not None else 0.01,
                                        "the backbone's: 0.01 for ResNets, 0.2 for WRN"),
                    "inverse temperature", "SHE code", bounds="(0, inf)", grid=(0.001, 0.01, 0.1, 1),
                    grid_source="this project's: decades around the SHE code's 0.01"),)

    def fit(self, train, head):
        patterns, offsets = correct_by_class(train, head["weight"].shape[0])
        return {"patterns": patterns, "offsets": offsets}

    def score(self, data, state, head):
        feats, pred = data["features"].float(), data["logits"].argmax(1)
        patterns, offsets = state["patterns"], state["offsets"]
        missing_classes_warning(self.name, pred, offsets)
        out = torch.empty(len(feats))
        for c in pred.unique().tolist():
            idx = (pred == c).nonzero().flatten()
            stored = patterns[offsets[c]:offsets[c + 1]]
            out[idx] = lse_scores(feats[idx], stored if len(stored) else patterns, self.beta)
        return out


class SHE(Score):
    """Simplified Hopfield Energy: s_c . phi with s_c = mean(X_c), c the predicted class."""
    name, order, paper = "SHE", 50, True

    def fit(self, train, head):
        patterns, offsets = correct_by_class(train, head["weight"].shape[0])
        counts = (offsets[1:] - offsets[:-1])
        classes = torch.repeat_interleave(torch.arange(len(counts)), counts)
        sums = torch.zeros(len(counts), patterns.shape[1], dtype=torch.float64)
        sums.index_add_(0, classes, patterns.double())
        means = sums / counts.clamp(min=1)[:, None]
        fallback = patterns.double().mean(0) if len(patterns) else torch.zeros(patterns.shape[1])
        means[counts == 0] = fallback.to(means.dtype)
        return {"means": means.float(), "offsets": offsets}

    def score(self, data, state, head):
        pred = data["logits"].argmax(1)
        missing_classes_warning(self.name, pred, state["offsets"])
        return (data["features"].float() * state["means"][pred]).sum(1)
