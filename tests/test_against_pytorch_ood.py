"""The post-hoc scores beyond the paper's six against pytorch-ood 0.4.0's detectors on the same cached
features. pytorch-ood's scores are "higher = more OOD"; where its definition differs from the paper by a
sign, a constant factor or a normalisation, the test states the relation (docs/method.md, "Other scores")."""
import pytest
import torch

import scores
from ood.params import Context

pood = pytest.importorskip("pytorch_ood.detector")

C, D = 5, 16


def rel_err(ours, theirs):
    """The largest difference relative to the scale of the scores (a score near 0 would make an
    element-wise relative error meaningless)."""
    ours, theirs = torch.as_tensor(ours).double(), torch.as_tensor(theirs).double()
    return float((ours - theirs).abs().max() / theirs.abs().max())


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
        linear.weight.copy_(centres - centres.mean(0) + 0.1 * torch.randn(C, D, generator=g))  # full rank
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


def test_maxlogit(feats):
    assert rel_err(ours("MaxLogit", feats), -pood.MaxLogit.score(feats["test"]["logits"])) < 1e-6


def test_gen(feats):
    """pytorch-ood averages over the top M and clips p to [1e-7, 1 - 1e-7]; where the clip is inactive,
    ours (the paper's sum) = -M * pytorch-ood's."""
    mild = {**feats, "test": {**feats["test"], "logits": feats["test"]["logits"] / 4}}
    p = torch.softmax(mild["test"]["logits"].double(), 1)
    assert p.min() > 1e-7 and p.max() < 1 - 1e-7  # the clip is inactive on these logits
    for M in (C, 3):
        theirs = pood.GEN.score(mild["test"]["logits"], gamma=0.1, M=M)
        assert rel_err(ours("GEN", mild, M=M), -M * theirs) < 1e-4


def test_gen_keeps_the_order_of_confident_inputs():
    """Where pytorch-ood's clip merges confident inputs, the log-domain computation keeps them apart."""
    logits = torch.zeros(4, 100)
    logits[:, 0] = torch.tensor([30.0, 35.0, 40.0, 45.0])
    s = scores.get("GEN")(M=100).score({"logits": logits}, {}, None)
    assert (s[1:] > s[:-1]).all()
    assert len(set(pood.GEN.score(logits, 0.1, 100).tolist())) < 4


def test_mahalanobis_and_rmd(feats):
    """pytorch-ood inverts the unnormalised scatter (plus 1e-6 I) and halves the distance:
    Mahalanobis = -2 N * theirs, RMD = -N * theirs (N training features)."""
    N = len(feats["train"]["features"])
    x, y = feats["train"]["features"], feats["train"]["labels"]
    det = pood.Mahalanobis(None)
    det.fit_features(x, y)
    assert rel_err(ours("Mahalanobis", feats), -2 * N * det.predict_features(feats["test"]["features"])) < 1e-4
    det = pood.RMD(None)
    det.fit_features(x, y)
    assert rel_err(ours("RMD", feats), -N * det.predict_features(feats["test"]["features"])) < 1e-4


def test_vim(feats):
    """D = 5: the principal subspace is the class structure (mean and C - 1 directions); the residual is
    the noise, whose eigenvalues are nearly equal, so a split inside it would not be defined."""
    det = pood.ViM(None, d=5, w=feats["head"]["weight"], b=feats["head"]["bias"])
    det.fit_features(feats["train"]["features"], feats["train"]["labels"])
    assert rel_err(ours("ViM", feats, dim=5), -det.predict_features(feats["test"]["features"])) < 1e-4


@pytest.mark.parametrize("name,variant", [("ASH-P", "ash-p"), ("ASH-B", "ash-b"), ("ASH-S", "ash-s")])
def test_ash(feats, name, variant):
    """pytorch-ood's ASH takes 4-D feature maps: phi as N x d x 1 x 1, the head on the flattened map."""
    head = lambda t: feats["linear"](t.flatten(1))  # noqa: E731
    det = pood.ASH(torch.nn.Identity(), head, variant=variant, percentile=0.75)
    with torch.no_grad():
        theirs = det.predict_feature_maps(feats["test"]["features"][:, :, None, None])
    assert rel_err(ours(name, feats, percentile=75), -theirs) < 1e-4


def test_scale(feats):
    head = lambda t: feats["linear"](t.flatten(1))  # noqa: E731
    det = pood.SCALE(torch.nn.Identity(), head, percentile=0.65)
    with torch.no_grad():
        theirs = det.predict_feature_maps(feats["test"]["features"][:, :, None, None].contiguous())
    assert rel_err(ours("SCALE", feats, percentile=65), -theirs) < 1e-4


def test_dice(feats):
    det = pood.DICE(None, w=feats["head"]["weight"], b=feats["head"]["bias"], p=0.7)
    det.fit_features(feats["train"]["features"], feats["train"]["labels"])
    assert rel_err(ours("DICE", feats, sparsity=70), -det.predict_features(feats["test"]["features"])) < 1e-4


def test_nnguide(feats):
    """With the whole training set as the bank (pytorch-ood takes the bank it is given)."""
    det = pood.NNGuide(None, head=feats["linear"], k=10)
    with torch.no_grad():
        det.fit_features(feats["train"]["features"], feats["train"]["labels"])
        theirs = det.predict_features(feats["test"]["features"])
    assert rel_err(ours("NNGuide", feats, k=10, bank_fraction=1.0), -theirs) < 1e-4


def test_fdbd(feats):
    det = pood.fDBD(None, head=feats["linear"])
    with torch.no_grad():
        det.fit_features(feats["train"]["features"])
        theirs = det.predict_features(feats["test"]["features"])
    assert rel_err(ours("fDBD", feats), -theirs) < 1e-4


def test_mahalanobis_ignores_dead_units():
    """A unit that is 0 on every training image makes the covariance singular: the pseudo-inverse leaves
    that direction out (pytorch-ood's 1e-6 ridge would weigh it by 1e6)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(300, 6, generator=g)
    x[:, 5] = 0
    train = {"features": x, "labels": torch.arange(300) % 3}
    s = scores.get("Mahalanobis")()
    state = s.fit(train, None)
    probe = x[:4].clone()
    moved = probe.clone()
    moved[:, 5] = 0.5
    torch.testing.assert_close(s.score({"features": moved}, state, None), s.score({"features": probe}, state, None))
