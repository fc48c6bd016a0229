"""ViM (Wang, Li, Feng and Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022):
energy minus the scaled norm of the feature's residual outside the principal subspace,
logsumexp(logits) - alpha ||(I - P P^T)(phi - u)||.

u = -W^+ b (the origin where the logits vanish); P spans the D leading eigenvectors of the second-moment
matrix of phi - u over the training features; alpha = mean max-logit / mean residual norm on the
training set. Fitted in float64 (the tail of the spectrum matters) over blocks of training features.
"""
import torch

from ood.errors import UserError
from ood.params import Param, Rule, up_to

from .base import Score
from .logits import energy
from .mahalanobis import BLOCK, second_moment


def principal_dim(d):
    """The official code's rule: 1000 for d >= 2048, 512 for d >= 768, d / 2 below."""
    return 1000 if d >= 2048 else 512 if d >= 768 else max(1, d // 2)


class ViM(Score):
    """Energy minus the scaled norm of the residual outside the principal subspace."""
    name, order = "ViM", 120
    params = (
        Param("dim", int, Rule(lambda ctx: principal_dim(ctx.feature_dim) if ctx.feature_dim else 256,
                               "the ViM code's rule: 1000 for d >= 2048 (the paper's ResNet-50), 512 for "
                               "d >= 768, d/2 below (256 for 512-d, 64 for 128-d)"),
              "dimension D of the principal subspace", "Wang et al. 2022; OpenOOD uses 256 on CIFAR",
              bounds="[1, inf)", fit=True,
              grid=up_to((256, 1000), lambda ctx: ctx.feature_dim - 1 if ctx.feature_dim else None,
                         lambda ctx: principal_dim(ctx.feature_dim), "256, 1000 below the feature size (else the "
                                                                      "ViM code's rule)"),
              grid_source="OpenOOD v1.5 (vim.yml)",
              benchmarks={"openood": Rule(lambda ctx: 256 if not ctx.feature_dim or ctx.feature_dim > 256
                                          else principal_dim(ctx.feature_dim),
                                          "256 (below the feature size; for d <= 256 the ViM code's d/2)")},
              benchmark_source="OpenOOD v1.5 (vim.yml; its search could not change it before 2025-10-26, so "
                               "its published ViM rows ran at 256)"),
    )

    def fit(self, train, head):
        X = train["features"]
        d = X.shape[1]
        if self.dim >= d:
            raise UserError(f"ViM: --vim_dim {self.dim} must be below the feature size d = {d}.")
        W, b = head["weight"].double(), head["bias"].double()
        u = -torch.linalg.pinv(W) @ b
        evals, evecs = torch.linalg.eigh(second_moment(X, lambda i0, i1: u, self.device))  # ascending
        residual = evecs[:, :d - self.dim]                       # all but the D leading eigenvectors
        norms = torch.cat([((X[i:i + BLOCK].double() - u) @ residual).norm(dim=1) for i in range(0, len(X), BLOCK)])
        alpha = train["logits"].double().max(1).values.mean() / norms.mean()
        return {"u": u, "residual": residual, "alpha": float(alpha)}

    def score(self, data, state, head):
        vlogit = ((data["features"].double() - state["u"]) @ state["residual"]).norm(dim=1) * state["alpha"]
        return (energy(data["logits"]) - vlogit).float()
