"""Scores computed from the logits alone: MSP and Energy."""
import torch

from ood.params import Param

from .base import Score

TEMPERATURE = Param("T", float, 1.0, "temperature", "energy-OOD, SHE and RecLag code", bounds="(0, inf)",
                    benchmarks={"openood": 1.0}, benchmark_source="OpenOOD v1.5 (ebo.yml, react.yml)")
# OpenOOD v1.5 computes the softmax of MSP and GEN in the network's float32, so that on saturated logits
# its probabilities round to exactly 1 and tie; this project's default keeps them apart (float64). Under
# --benchmark openood the scores are computed as OpenOOD computes them, so that its rows are OpenOOD's.
PRECISION = Param("precision", str, "float64", "the precision of the softmax: float64, or float32 as OpenOOD v1.5 "
                  "(where saturated probabilities round to 1 and tie)", "this project",
                  choices=("float64", "float32"), implicit=("float64",), benchmarks={"openood": "float32"},
                  benchmark_source="OpenOOD v1.5 (base_postprocessor.py, gen_postprocessor.py: float32)")


class MSP(Score):
    """Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017): max_k softmax(logits)_k."""
    name, order, paper = "MSP", 10, True
    params = (PRECISION,)

    def score(self, data, state, head):
        dtype = torch.float32 if self.precision == "float32" else torch.float64
        return torch.softmax(data["logits"].to(dtype), 1).max(1).values.float()


def energy(logits, T=1.0):
    """Negative free energy: T * logsumexp(logits / T), in float64."""
    return T * torch.logsumexp(logits.double() / T, 1)


def head_energy(features, head, T=1.0, weight=None, dtype=torch.float64):
    """``energy`` of the logits the final layer gives for ``features`` that a score has reshaped (ReAct,
    ASH, SCALE) or read through a modified ``weight`` (DICE); the logits are computed in ``dtype``."""
    W = head["weight"] if weight is None else weight
    return energy(features.to(dtype) @ W.to(dtype).T + head["bias"].to(dtype), T)


class Energy(Score):
    """Energy score (Liu et al., NeurIPS 2020): T * logsumexp(logits / T)."""
    name, order, paper = "Energy", 20, True
    params = (TEMPERATURE,)

    def score(self, data, state, head):
        return energy(data["logits"], self.T).float()
