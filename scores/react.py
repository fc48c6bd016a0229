"""ReAct (Sun et al., NeurIPS 2021): the energy of the logits of the clipped feature min(phi, t)."""
import numpy as np
import torch

from ood.params import Param, Rule

from .base import Score
from .logits import TEMPERATURE, head_energy

MAX_PERCENTILE_ENTRIES = 1 << 25  # above this, estimate the percentile from a fixed random sample


class ReAct(Score):
    """Score = T * logsumexp((W min(phi, t) + b) / T), with t the p-th percentile of all scalar entries of
    phi over the ID training set."""
    name, order, paper = "ReAct", 30, True
    params = (
        Param("percentile", float, Rule(lambda ctx: 98.0 if ctx.protocol == "paper" else 90.0,
                                        "90; 98 under --protocol paper"),
              "clip phi at this percentile of the training features",
              "SHE code: 90; the RecLag code used 98", bounds="(0, 100]", fit=True),
        TEMPERATURE,
    )

    def fit(self, train, head):
        flat = train["features"].float().flatten()
        if flat.numel() > MAX_PERCENTILE_ENTRIES:  # e.g. ImageNet: 1.28M x 2048 entries
            g = torch.Generator().manual_seed(0)
            flat = flat[torch.randint(flat.numel(), (MAX_PERCENTILE_ENTRIES,), generator=g)]
        return {"threshold": float(np.percentile(flat.numpy(), self.percentile))}

    def score(self, data, state, head):
        clipped = data["features"].float().clamp(max=state["threshold"])
        return head_energy(clipped, head, self.T, dtype=torch.float32).float()
