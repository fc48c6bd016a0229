"""Scores computed from the logits alone: MSP and Energy."""
import torch

from .base import Score


class MSP(Score):
    """Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017): max_k softmax(logits)_k."""
    name = "MSP"

    def score(self, data, state, head):
        return torch.softmax(data["logits"].double(), 1).max(1).values.float()


def energy(logits, T=1.0):
    """Negative free energy: T * logsumexp(logits / T)."""
    return T * torch.logsumexp(logits.double() / T, 1)


class Energy(Score):
    """Energy score (Liu et al., NeurIPS 2020): T * logsumexp(logits / T)."""
    name = "Energy"

    def __init__(self, T=1.0):
        self.T = T  # temperature; 1 in the energy-OOD, SHE and RecLag code

    def score(self, data, state, head):
        return energy(data["logits"], self.T).float()
