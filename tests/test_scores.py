"""Each score against its formula on random tensors; MSP, Energy, ReAct and SHE also against
pytorch-ood 0.4.0 (whose scores are "higher = more OOD", so we compare with the negation)."""
import warnings

import numpy as np
import pytest
import torch

import scores
from scores.base import correct_by_class
from scores.hopfield import HE, SHE, lse_scores
from scores.logits import MSP, Energy
from scores.react import ReAct

C, D = 5, 12


def make_set(n, seed, correct_frac=0.7):
    g = torch.Generator().manual_seed(seed)
    cls = torch.arange(n) % C
    feats = torch.rand(n, D, generator=g) * 2  # phi >= 0, as after a ReLU
    feats[torch.arange(n), 2 * cls] += 1.5  # each class lights up its own feature
    W = 0.3 * torch.randn(C, D, generator=torch.Generator().manual_seed(99))
    W[torch.arange(C), 2 * torch.arange(C)] += 2.0
    b = 0.1 * torch.randn(C, generator=torch.Generator().manual_seed(98))
    logits = feats @ W.T + b
    labels = logits.argmax(1).clone()
    flip = torch.rand(n, generator=g) > correct_frac
    labels[flip] = (labels[flip] + 1) % C
    return {"features": feats, "logits": logits, "labels": labels}, {"weight": W, "bias": b}


@pytest.fixture
def sets():
    train, head = make_set(300, 0)
    test, _ = make_set(50, 1)
    return train, test, head


def test_msp_energy_formulas(sets):
    _, test, head = sets
    lg = test["logits"].double()
    msp = MSP().score(test, {}, head)
    ref = (lg.exp() / lg.exp().sum(1, keepdim=True)).max(1).values
    torch.testing.assert_close(msp.double(), ref, rtol=1e-6, atol=1e-7)
    for T in (1.0, 2.5):
        e = Energy(T=T).score(test, {}, head)
        torch.testing.assert_close(e.double(), T * torch.log((lg / T).exp().sum(1)), rtol=1e-6, atol=1e-5)


def test_energy_large_logits_stable():
    data = {"logits": torch.tensor([[1000.0, 0.0], [-1000.0, -1000.0]])}
    e = Energy().score(data, {}, None)
    assert torch.isfinite(e).all() and abs(e[0].item() - 1000.0) < 1e-3


def test_react_formula(sets):
    train, test, head = sets
    r = ReAct(percentile=80)
    state = r.fit(train, head)
    assert state["threshold"] == pytest.approx(np.percentile(train["features"].numpy(), 80))
    s = r.score(test, state, head)
    clipped = np.minimum(test["features"].numpy(), state["threshold"])
    logits = clipped @ head["weight"].numpy().T + head["bias"].numpy()
    ref = np.log(np.exp(logits.astype(np.float64)).sum(1))
    np.testing.assert_allclose(s.numpy(), ref, rtol=1e-5)
    # clipping changes the score only for inputs with an entry above the threshold
    unclipped = Energy().score(test, {}, head)
    above = (test["features"] > state["threshold"]).any(1)
    assert torch.allclose(s[~above], unclipped[~above], atol=1e-5)
    assert not torch.allclose(s[above], unclipped[above], atol=1e-5)


def test_he_she_formulas(sets):
    train, test, head = sets
    pred_train = train["logits"].argmax(1)
    keep = pred_train == train["labels"]
    he, she = HE(beta=0.2), SHE()
    he_state, she_state = he.fit(train, head), she.fit(train, head)
    s_he, s_she = he.score(test, he_state, head), she.score(test, she_state, head)
    for i in range(len(test["features"])):
        c = test["logits"][i].argmax().item()
        X = train["features"][keep & (train["labels"] == c)].double()
        phi = test["features"][i].double()
        assert s_he[i].item() == pytest.approx(torch.logsumexp(0.2 * X @ phi, 0).item(), rel=1e-5)
        assert s_she[i].item() == pytest.approx((X.mean(0) @ phi).item(), rel=1e-5)


def test_correct_by_class_keeps_stored_order(sets):
    train, _, head = sets
    patterns, offsets = correct_by_class(train, C)
    keep = train["logits"].argmax(1) == train["labels"]
    for c in range(C):
        expect = train["features"][keep & (train["labels"] == c)]
        assert torch.equal(patterns[offsets[c]:offsets[c + 1]], expect)


def test_lse_scores_chunked_matches_dense():
    g = torch.Generator().manual_seed(3)
    q, p = torch.randn(37, 9, generator=g), torch.randn(101, 9, generator=g)
    dense = torch.logsumexp(0.7 * q.double() @ p.double().T, 1)
    for chunk in (1, 17, 1000, 1 << 24):
        torch.testing.assert_close(lse_scores(q, p, 0.7, chunk).double(), dense, rtol=1e-5, atol=1e-5)


def test_class_without_patterns_warns_and_falls_back(sets):
    train, test, head = sets
    train = dict(train)
    labels = train["labels"].clone()
    labels[train["logits"].argmax(1) == 2] = 3  # nothing predicted as class 2 is correct any more
    train["labels"] = labels
    he_state = HE(beta=0.2).fit(train, head)
    she_state = SHE().fit(train, head)
    assert (he_state["offsets"][3] - he_state["offsets"][2]).item() == 0
    on_2 = test["logits"].argmax(1) == 2
    assert on_2.any()
    with pytest.warns(UserWarning, match=r"predicted as classes \[2\]"):
        s = HE(beta=0.2).score(test, he_state, head)
    allp = he_state["patterns"].double()
    ref = torch.logsumexp(0.2 * test["features"][on_2].double() @ allp.T, 1)
    torch.testing.assert_close(s[on_2].double(), ref, rtol=1e-5, atol=1e-5)
    with pytest.warns(UserWarning):
        s2 = SHE().score(test, she_state, head)
    assert torch.isfinite(s2).all()


def test_registry_names():
    paper = [c.name for c in scores.registered() if c.paper]
    assert [c.name for c in scores.resolve_names(["all"])] == paper
    assert [c.name for c in scores.resolve_names(["extended"])] == scores.names()
    assert [c.name for c in scores.resolve_names(["she", "MSP"])] == ["MSP", "SHE"]
    from ood.errors import UserError
    with pytest.raises(UserError, match="unknown score"):
        scores.resolve_names(["NoSuchScore"])


# -- against pytorch-ood ----------------------------------------------------------------------------
pood = pytest.importorskip("pytorch_ood.detector")


def as_linear(head):
    """The head as an nn.Linear, as pytorch-ood's detectors take it."""
    linear = torch.nn.Linear(D, C)
    with torch.no_grad():
        linear.weight.copy_(head["weight"])
        linear.bias.copy_(head["bias"])
    return linear


def test_msp_energy_match_pytorch_ood(sets):
    _, test, head = sets
    torch.testing.assert_close(MSP().score(test, {}, head), -pood.MaxSoftmax.score(test["logits"]), rtol=1e-5, atol=1e-6)
    for T in (1.0, 3.0):
        torch.testing.assert_close(Energy(T=T).score(test, {}, head), -pood.EnergyBased.score(test["logits"], t=T),
                                   rtol=1e-5, atol=1e-5)


def test_react_matches_pytorch_ood(sets):
    train, test, head = sets
    linear = as_linear(head)
    det = pood.ReAct(backbone=torch.nn.Identity(), head=linear, percentile=0.9)
    det.fit_feature_maps(train["features"], train["labels"])
    ours = ReAct(percentile=90)
    state = ours.fit(train, head)
    assert state["threshold"] == pytest.approx(det.threshold, rel=1e-6)
    torch.testing.assert_close(ours.score(test, state, head), -det.predict_feature_maps(test["features"]),
                               rtol=1e-5, atol=1e-5)


def test_she_matches_pytorch_ood(sets):
    train, test, head = sets
    linear = as_linear(head)
    det = pood.SHE(encoder=torch.nn.Identity(), head=linear)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det.fit_features(train["features"], train["labels"])
    ours = SHE()
    state = ours.fit(train, head)
    torch.testing.assert_close(state["means"], det.patterns.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.score(test, state, head), -det.predict_features(test["features"]),
                               rtol=1e-5, atol=1e-5)


def test_no_correct_training_sample_is_a_clear_error(sets):
    from ood.errors import UserError
    train, _, head = sets
    train = dict(train, labels=(train["logits"].argmax(1) + 1) % C)
    for s in (HE(), SHE()):
        with pytest.raises(UserError, match="no training image is classified correctly"):
            s.fit(train, head)


@pytest.mark.parametrize("name", ["ASH-P", "ASH-B", "ASH-S", "SCALE"])
def test_activation_shaping_block_by_block_equals_one_block(name, monkeypatch):
    import scores.ash
    data, head = make_set(50, 3)
    score = scores.get(name)(percentile=50)
    whole = score.score(data, {}, head)
    monkeypatch.setattr(scores.ash, "BLOCK", 7)
    torch.testing.assert_close(score.score(data, {}, head), whole)


def test_react_paper_protocol_takes_the_reference_sorted_element():
    """Under --protocol paper the threshold is element int(N p / 100) of the ascending sorted training
    entries, as get_threshold of the RecLag/SHE code takes it; the full protocol interpolates
    (np.percentile). Ten shuffled entries 0..9: the two differ, and the paper protocol's fit is keyed apart."""
    from ood.params import Context
    values = torch.tensor([7.0, 2.0, 9.0, 0.0, 5.0, 3.0, 8.0, 1.0, 6.0, 4.0])
    train = {"features": values.reshape(2, 5)}
    paper, full = Context(protocol="paper"), Context(protocol="full")
    for p, element, interpolated in [(98, 9.0, 8.82), (55, 5.0, 4.95), (90, 9.0, 8.1), (100, 9.0, 9.0)]:
        assert ReAct(percentile=p, ctx=paper).fit(train, None)["threshold"] == element  # int(10 p / 100)
        assert ReAct(percentile=p, ctx=full).fit(train, None)["threshold"] == pytest.approx(interpolated, abs=1e-6)
        assert ReAct(percentile=p).fit(train, None)["threshold"] == pytest.approx(interpolated, abs=1e-6)
    assert ReAct(ctx=paper).percentile == 98.0 and ReAct(ctx=full).percentile == 90.0
    # one training value: int(N p) is its only element whatever p
    assert ReAct(percentile=50, ctx=paper).fit({"features": torch.tensor([[3.5]])}, None)["threshold"] == 3.5
    # the same percentile under the two protocols: two stored patterns; either way under any protocol
    assert ReAct(percentile=98, ctx=full).fit_settings() == {"percentile": 98.0, "threshold": "interpolated"}
    assert ReAct(percentile=98, ctx=paper).fit_settings() == {"percentile": 98.0, "threshold": "sorted"}
    assert ReAct(percentile=98, threshold="sorted", ctx=full).fit(train, None)["threshold"] == 9.0
