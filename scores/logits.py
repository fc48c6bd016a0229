"""Scores computed from the logits alone: MSP and Energy."""
import torch

from ood.params import Param

from .base import Score

TEMPERATURE = Param("T", float, 1.0, "temperature", "energy-OOD, SHE and RecLag code", bounds="(0, inf)")


class MSP(Score):
    """Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017): max_k softmax(logits)_k."""
    name, order, paper = "MSP", 10, True

    def score(self, data, state, head):
        return torch.softmax(data["logits"].double(), 1).max(1).values.float()


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
