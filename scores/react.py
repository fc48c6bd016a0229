"""ReAct (Sun et al., NeurIPS 2021): the energy of the logits of the clipped feature min(phi, t).

How t is read off the training features depends on the protocol. The full and sampled protocols take the
interpolated p-th percentile (``np.percentile``). Under ``--protocol paper`` t is taken as the code behind
the paper's ReAct row took it: ``get_threshold`` of the RecLag code's test_score_ood_detection.py (commit
ee9c4e9 of github.com/RyoMoriai/RecLag_ood_detection; the SHE code has the same function) sorts every
scalar entry of phi over the training set in ascending order and takes element ``int(N * p)``, p a
fraction (0.98 there). There is no interpolation: t is always one of the training values, and in general
not the interpolated percentile. Which of the two is a declared setting, ``--react_threshold``
(``interpolated`` or ``sorted``; ``sorted`` by default under the paper protocol), so the two fits are
stored as two patterns and each result row says which one it used. Under ``--benchmark openood`` the
percentile is read off the ID validation split's features instead (``--react_fit_on val``), as OpenOOD
v1.5's ReAct ``setup`` does; ``fit`` then receives those features.
"""
import numpy as np
import torch

from ood.params import Param, Rule

from .base import Score
from .logits import TEMPERATURE, head_energy

MAX_PERCENTILE_ENTRIES = 1 << 25  # above this, estimate the percentile from a fixed random sample


def sorted_element(values, percentile):
    """Element int(N p) (0-based) of ``values`` sorted ascending, p = percentile / 100, as the reference's
    ``get_threshold`` takes it; percentile / 100 is the same double as the reference's literal fraction
    (98 / 100 == 0.98), so the index is the same. The reference would raise IndexError at p = 1 (index N);
    here that gives the largest element."""
    n = values.numel()
    index = min(int(n * (percentile / 100)), n - 1)
    return float(values.kthvalue(index + 1).values)


class ReAct(Score):
    """Score = T * logsumexp((W min(phi, t) + b) / T), with t the p-th percentile of all scalar entries of
    phi over the ID training set (under ``--protocol paper``: the reference's sorted element, see
    --react_threshold; under --benchmark openood: over the ID validation split, --react_fit_on)."""
    name, order, paper = "ReAct", 30, True
    params = (
        Param("percentile", float, Rule(lambda ctx: 98.0 if ctx.protocol == "paper" else 90.0,
                                        "90; 98 under --protocol paper (read off as the "
                                        "reference's sorted element there)"),
              "clip phi at this percentile of the training features",
              "SHE code (get_threshold(p=0.9)): 90; the RecLag code (get_threshold(p=0.98)): 98",
              bounds="(0, 100]", fit=True, grid=(85, 90, 95, 99), grid_source="OpenOOD v1.5 (react.yml)",
              benchmarks={"openood": 90.0}, benchmark_source="OpenOOD v1.5 (react.yml)"),
        Param("threshold", str, Rule(lambda ctx: "sorted" if ctx.protocol == "paper" else "interpolated",
                                     "interpolated; sorted under --protocol paper"),
              "how the percentile is read off the training entries: interpolated (np.percentile, as the ReAct "
              "code) or sorted (element int(N p / 100) of the sorted entries, as get_threshold of the "
              "RecLag and SHE code)", "ReAct code: np.percentile; RecLag / SHE code: get_threshold",
              choices=("interpolated", "sorted"), fit=True),
        Param("fit_on", str, "train", "the ID split whose features the percentile is read from: train, or val "
              "(the ID validation split, as OpenOOD v1.5's ReAct: a benchmark that has one)", "ReAct code (train)",
              choices=("train", "val"), fit=True, implicit=("train",), benchmarks={"openood": "val"},
              benchmark_source="OpenOOD v1.5 (react_postprocessor.py: setup reads id_loader_dict['val'])"),
        TEMPERATURE,
    )

    def fit_split(self):
        """The ID split the percentile is read from (``fit_on``): train, or OpenOOD's val."""
        return self.fit_on

    def fit(self, train, head):
        flat = train["features"].float().flatten()
        if flat.numel() > MAX_PERCENTILE_ENTRIES:  # e.g. ImageNet: 1.28M x 2048 entries
            g = torch.Generator().manual_seed(0)
            flat = flat[torch.randint(flat.numel(), (MAX_PERCENTILE_ENTRIES,), generator=g)]
        if self.threshold == "sorted":
            return {"threshold": sorted_element(flat, self.percentile)}
        return {"threshold": float(np.percentile(flat.numpy(), self.percentile))}

    def score(self, data, state, head):
        clipped = data["features"].float().clamp(max=state["threshold"])
        return head_energy(clipped, head, self.T, dtype=torch.float32).float()
