"""The post-hoc scores beyond the paper's six against pytorch-ood 0.4.0's detectors on the same cached
features. pytorch-ood's scores are "higher = more OOD"; where its definition differs from the paper by a
sign, a constant factor or a normalisation, the test states the relation (docs/method.md, "Other scores")."""
import numpy as np
import pytest
import torch

import scores
from ood.params import Context

pood = pytest.importorskip("pytorch_ood.detector")

C, D = 5, 16


def rel_err(ours, theirs):
    ours, theirs = torch.as_tensor(ours).double(), torch.as_tensor(theirs).double()
    return float(((ours - theirs).abs() / theirs.abs().clamp_min(1e-12)).max())


@pytest.fixture(scope="module")
def feats():
    """phi >= 0 with every unit active (a well-conditioned covariance), labels 0..C-1, a linear head."""
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(C, D, generator=g) * 2

    def make(n, seed):
        gg = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % C
        return (centres[y] + 0.5 * torch.rand(n, D, generator=gg)).float(), y
    train, y_train = make(600, 1)
    test, _ = make(80, 2)
    ood = torch.rand(80, D, generator=torch.Generator().manual_seed(3)) * 2.5
    linear = torch.nn.Linear(D, C)
    with torch.no_grad():
        linear.weight.copy_(centres - centres.mean(0))
        linear.bias.copy_(0.1 * torch.randn(C, generator=g))
    head = {"weight": linear.weight.detach().clone(), "bias": linear.bias.detach().clone()}

    def pack(x, y=None):
        return {"features": x, "logits": linear(x).detach(), "labels": y if y is not None else torch.full((len(x),), -1)}
    return {"train": pack(train, y_train), "test": pack(torch.cat([test, ood])), "head": head, "linear": linear}


def ours(name, feats, **settings):
    s = scores.get(name)(ctx=Context(dataset="cifar10", feature_dim=D, num_classes=C), **settings)
    state = s.fit(feats["train"], feats["head"]) if s.needs_fit() else {}
    return s.score(feats["test"], state, feats["head"])


def test_knn(feats):
    det = pood.KNN(None, k=7)
    det.fit_features(feats["train"]["features"], torch.zeros(600, dtype=torch.long))
    assert rel_err(ours("KNN", feats, k=7), -det.predict_features(feats["test"]["features"])) < 1e-4
