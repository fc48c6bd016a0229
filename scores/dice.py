"""DICE (Sun and Li, "DICE: Leveraging Sparsification for Out-of-Distribution Detection", ECCV 2022):
the energy of logits computed with a sparsified head. Contributions V = mean_train(phi) * W (C x d); the
weights whose contribution is above the p-th percentile of all C d contributions are kept, the others
zeroed; score = logsumexp((W * M) phi + b)."""
import numpy as np
import torch

from ood.params import Param, per_dataset

from .base import Score
from .logits import head_energy


class DICE(Score):
    """Energy of the logits of a head sparsified by the training mean's contributions."""
    name, order = "DICE", 90
    params = (
        Param("sparsity", float, per_dataset({"imagenet": 70}, 90, "70 on ImageNet, 90 otherwise (the paper's "
                                                               "CIFAR value)"),
              "percentile of the weight contributions below which weights are dropped (in %)",
              "Sun & Li 2022, dice code (demo-cifar.sh --p 90, demo-imagenet.sh --p 70)", bounds="[0, 100)",
              fit=True, benchmarks={"openood": 90.0}, benchmark_source="OpenOOD v1.5 (dice.yml)"),
    )

    def fit(self, train, head):
        mean = train["features"].double().mean(0)
        contrib = (mean * head["weight"].double()).numpy()
        threshold = np.percentile(contrib, self.sparsity)
        return {"mask": torch.from_numpy(contrib > threshold)}

    def score(self, data, state, head):
        return head_energy(data["features"], head, weight=head["weight"].double() * state["mask"]).float()
