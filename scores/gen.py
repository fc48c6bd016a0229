"""GEN (Liu, Lochman and Zach, "GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection",
CVPR 2023): minus the generalised entropy of the M largest softmax probabilities,
-sum_{j <= M} p_(j)^gamma (1 - p_(j))^gamma.

Computed in float64 and in the log domain: log(1 - p) is log1p(-p) where p <= 1/2 and, for the one class
that may exceed it, the logsumexp of the other logits minus that of all; so a very confident input is
not rounded to 1 - p = 0 (pytorch-ood clips p to [1e-7, 1 - 1e-7] instead, which reorders confident
inputs; docs/method.md, "Other scores"). Under --benchmark openood (``precision`` float32) it is computed as
OpenOOD v1.5 does, in float32, where such an input's top term is 0.
"""
import torch

from ood.params import Param, Rule, up_to

from .base import Score
from .logits import PRECISION


class GEN(Score):
    """Minus the generalised entropy of the M largest softmax probabilities."""
    name, order = "GEN", 75
    params = (
        Param("gamma", float, 0.1, "exponent of the generalised entropy", "Liu et al. 2023 (paper and code)",
              bounds="(0, inf)", grid=(0.01, 0.1, 0.5, 1, 2, 5, 10), grid_source="OpenOOD v1.5 (gen.yml)",
              benchmarks={"openood": 0.1}, benchmark_source="OpenOOD v1.5 (gen.yml)"),
        Param("M", int, Rule(lambda ctx: min(100, ctx.num_classes) if ctx.num_classes else 100,
                             "100 (the paper's ImageNet setting and the GEN code's default), or the "
                             "number of classes when smaller (this project's cap)"),
              "number of largest probabilities used", "Liu et al. 2023 (paper and code)", bounds="[1, inf)",
              grid=up_to((10, 50, 100, 200, 500, 1000), lambda ctx: ctx.num_classes, lambda ctx: ctx.num_classes,
                         "10, 50, 100, 200, 500, 1000 up to the number of classes (more are the same)"),
              grid_source="OpenOOD v1.5 (gen.yml)", benchmarks={"openood": 100},
              benchmark_source="OpenOOD v1.5 (gen.yml; more than the classes keeps them all)"),
        PRECISION,
    )

    def score(self, data, state, head):
        if self.precision == "float32":
            return self._float32(data["logits"])
        logits = data["logits"].double()
        logp = torch.log_softmax(logits, 1)
        p = logp.exp()
        log1mp = torch.log1p(-p.clamp(max=0.5))  # exact where p <= 1/2
        top = p.argmax(1, keepdim=True)
        others = logits.scatter(1, top, float("-inf"))
        log1mp_top = torch.logsumexp(others, 1, keepdim=True) - torch.logsumexp(logits, 1, keepdim=True)
        big = p.gather(1, top) > 0.5
        log1mp = log1mp.scatter(1, top, torch.where(big, log1mp_top, log1mp.gather(1, top)))
        terms = torch.exp(self.gamma * (logp + log1mp))
        m = min(self.M, logits.shape[1])
        return (-terms.gather(1, p.topk(m, 1).indices).sum(1)).float()

    def _float32(self, logits):
        """As OpenOOD v1.5 computes it: the float32 softmax, its M largest entries, p^gamma (1 - p)^gamma in
        float32, where a probability that rounds to 1 contributes 0."""
        p = torch.softmax(logits.float(), 1)
        top = p.sort(1).values[:, -min(self.M, p.shape[1]):]
        return -(top ** self.gamma * (1 - top) ** self.gamma).sum(1)
