"""Activation shaping of the penultimate feature, scored by the energy of the reshaped logits:
ASH-P, ASH-B and ASH-S (Djurisic, Bozanic, Ashok and Liu, "Extremely Simple Activation Shaping for
Out-of-Distribution Detection", ICLR 2023) and SCALE (Xu, Lian, Yu and Wu, "Scaling for Training Time and
Post-hoc Out-of-distribution Detection Enhancement", ICLR 2024).

Per input a = phi (d entries), the top k = d - round(p d / 100) entries T are kept, s1 = sum(a),
s2 = sum of a over T:  ASH-P  a' = a 1[T];  ASH-B  a' = (s1 / k) 1[T];  ASH-S  a' = a 1[T] exp(s1 / s2);
SCALE  a' = a exp(s1 / s2).  Score = logsumexp(W a' + b), in float64. The official ASH code applies it
after the global average pooling, i.e. to phi, as here. T is taken by a stable descending sort, so ties
(ASH-B on a feature with fewer than k non-zero entries) go to the lower index; an all-zero feature keeps
the scale factor 1. OpenOOD v1.5's ASH-B takes T with ``torch.topk``, which does not say which of equal
entries it returns: on such a feature the zeros it picks differ (on the CPU, not the lowest indices), and
so does the score (by up to 0.39 relative on the rows of tests/fixtures/openood_postprocessors.npz that
have fewer than k positive entries; every other row agrees to 2.4e-7). On a ResNet's 512-d feature with
p = 90 (k = 51) that needs an input with fewer than 51 positive entries, which is rare.
"""
import torch

from ood.errors import UserError
from ood.params import Param, Rule

from .base import Score
from .logits import head_energy

MIN_KEPT = 10
BLOCK = 8192  # inputs shaped at once
GRID = (95, 90, 85, 80, 75, 70, 65)  # OpenOOD's sweep for ASH and SCALE


def kept(d, percentile):
    return d - round(d * percentile / 100)


def shaping_default(paper, origin="(the paper's)"):
    """The declared percentile for the data set (``paper``: {dataset: p}, "other": the rest; ``origin``
    says in --help where those values come from), lowered when it would keep fewer than 10 entries of phi:
    to the largest of OpenOOD's grid that keeps 10, else to the percentile that keeps exactly 10."""
    def rule(ctx):
        p = paper.get(ctx.dataset, paper["other"])
        d = ctx.feature_dim
        if not d or kept(d, p) >= MIN_KEPT:
            return float(p)
        for q in GRID:
            if q <= p and kept(d, q) >= MIN_KEPT:
                return float(q)
        return max(0.0, 100 * (1 - MIN_KEPT / d))
    shown = ", ".join(f"{v} on {k}" for k, v in paper.items() if k != "other")
    return Rule(rule, f"{shown}, {paper['other']} otherwise {origin}; lowered to keep at least "
                      f"{MIN_KEPT} of the d entries")


def _percentile_param(paper, source, origin="(the paper's)", openood=None):
    """``openood``: OpenOOD v1.5's configured percentile, the default under --benchmark openood (taken as
    it is, not lowered: OpenOOD's networks have d = 512 or more)."""
    return Param("percentile", float, shaping_default(paper, origin), "the share of phi's entries pruned (in %); "
                 "the top rest are kept", source, bounds="[0, 100)", grid=(65, 70, 75, 80, 85, 90, 95),
                 grid_source="OpenOOD v1.5's ash.yml (for its ASH-B) and scale.yml",
                 benchmarks={"openood": openood} if openood is not None else {},
                 benchmark_source="OpenOOD v1.5 (ash.yml, scale.yml)")


def top_mask(a, percentile):
    """Boolean mask of the k largest entries of each row (stable: ties go to the lower index)."""
    d = a.shape[1]
    k = kept(d, percentile)
    idx = torch.sort(a, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(a, dtype=torch.bool).scatter_(1, idx, True), k


def scale_factor(a, mask):
    s1, s2 = a.sum(1, keepdim=True), (a * mask).sum(1, keepdim=True)
    return torch.where(s2 > 0, torch.exp(s1 / s2.clamp_min(1e-300)), torch.ones_like(s1))


class _Shaping(Score):
    """Energy of the logits of the shaped feature; a subclass says how phi is shaped."""

    def __init__(self, *, ctx=None, **kwargs):
        super().__init__(ctx=ctx, **kwargs)
        if ctx is not None and ctx.feature_dim:  # known from the head: refuse before any extraction
            self._check_kept(ctx.feature_dim)

    def _check_kept(self, d):
        if kept(d, self.percentile) < 1:
            raise UserError(f"{self.name}: --{self.key()}_percentile {self.percentile:g} keeps none of the "
                            f"d = {d} entries of phi; choose at most {100 * (1 - 1 / d):.2f}.")

    def score(self, data, state, head):
        """Block by block: the float64 copy and the sort of an ImageNet-size set are not held at once."""
        feats = data["features"]
        self._check_kept(feats.shape[1])
        out = torch.empty(len(feats))
        for i in range(0, len(feats), BLOCK):
            a = feats[i:i + BLOCK].double()
            mask, k = top_mask(a, self.percentile)
            out[i:i + BLOCK] = head_energy(self.shape(a, mask, k), head).float()
        return out


class ASHP(_Shaping):
    """Energy after pruning all but the top entries of phi."""
    name, order = "ASH-P", 80
    params = (_percentile_param({"imagenet": 60, "other": 90}, "Djurisic et al. 2023, Tables 1-2"),)

    def shape(self, a, mask, k):
        return a * mask


class ASHB(_Shaping):
    """Energy after binarising phi: its sum spread evenly over its top entries."""
    name, order = "ASH-B", 81
    params = (_percentile_param({"imagenet": 65, "other": 90}, "Djurisic et al. 2023, Tables 1-2", openood=90.0),)

    def shape(self, a, mask, k):
        return mask * (a.sum(1, keepdim=True) / k)


class ASHS(_Shaping):
    """Energy after pruning phi to its top entries and scaling them by exp(s1 / s2)."""
    name, order = "ASH-S", 82
    params = (_percentile_param({"imagenet": 90, "other": 95}, "Djurisic et al. 2023; ash code configs "
                                "(ash_s@90 for ImageNet, ash_s@95 for CIFAR-10/100)"),)

    def shape(self, a, mask, k):
        return a * mask * scale_factor(a, mask)


class SCALE(_Shaping):
    """Energy after scaling the whole of phi by exp(s1 / s2) (nothing pruned)."""
    name, order = "SCALE", 85
    params = (_percentile_param({"imagenet": 85, "other": 65},
                                "Xu et al. 2024; SCALE code (github.com/kai422/SCALE): configs/postprocessors/"
                                "scale.yml sets 85, as OpenOOD v1.5 does",
                                "(85: the configured default of the SCALE code and OpenOOD v1.5, also what its "
                                "saved ImageNet-1k run used; 65: not a configured default but the value "
                                "OpenOOD's automatic parameter search chose in the SCALE repository's saved "
                                "CIFAR-10 and CIFAR-100 runs, all three seeds)", openood=85.0),)

    def shape(self, a, mask, k):
        return a * scale_factor(a, mask)
