"""The rectified Hopfield dynamics behind the RecLag score (docs/method.md, "The dynamics" [reconstructed]).

One test per property 1-5, on random memory matrices of several shapes (H, d), Gaussian and non-negative
(phi >= 0 after the backbone's last ReLU, Xi rows rescaled to norm 10 as the learner's init).
"""
import math

import pytest
import torch

from scores.reclag_dynamics import (hopfield_energy, iterate, lse, ood_attractor_decision, reclag_score,
                           reclag_score_routed, rectified_energy, rectified_update, theta_from_lambda)

SHAPES = [(1, 2), (3, 2), (10, 16), (10, 512), (50, 8)]
KINDS = ["gaussian", "nonneg"]
BETAS = [0.5, 5.0]


def _memories(H, d, kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(H, d, generator=g, dtype=torch.float64)
    xi = torch.rand(H, d, generator=g, dtype=torch.float64) ** 2          # phi-like: >= 0, sparse-ish
    return 10 * xi / xi.norm(dim=1, keepdim=True)


def _states(n, d, kind, scale, seed=1):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g, dtype=torch.float64)
    if kind == "nonneg":
        v = v.abs()
    return scale * v / math.sqrt(d)


params = pytest.mark.parametrize("H,d", SHAPES)
kinds = pytest.mark.parametrize("kind", KINDS)


def _settings(lams):
    return [(beta, lam) for beta in BETAS for lam in lams]


@params
@kinds
def test_property1_origin_is_a_fixed_point_for_lambda_ge_1(H, d, kind):
    xi = _memories(H, d, kind)
    for beta, lam in _settings([1.0, 1.5, 40.0]):
        for dtype in (torch.float64, torch.float32):
            zero = torch.zeros(d, dtype=dtype)
            assert torch.equal(rectified_update(zero, xi.to(dtype), beta, lam), zero)
            assert torch.equal(iterate(zero, xi.to(dtype), beta, lam), zero)
        # and not for lambda < 1: the gate opens at v = 0 and v moves to the mean of the memories
        moved = rectified_update(torch.zeros(d, dtype=torch.float64), xi, beta, 0.9)
        torch.testing.assert_close(moved, xi.mean(0))


@params
@kinds
def test_property2_origin_attracts_the_ball_of_radius_r(H, d, kind):
    xi = _memories(H, d, kind)
    g = torch.Generator().manual_seed(2)
    directions = torch.randn(200, d, generator=g, dtype=torch.float64)
    # the worst direction: along the longest memory, where xi_mu . v reaches ||xi_mu|| ||v||
    directions[0] = xi[xi.norm(dim=1).argmax()]
    directions = directions / directions.norm(dim=1, keepdim=True)
    fractions = torch.rand(200, 1, generator=g, dtype=torch.float64)
    fractions[0] = 1 - 1e-9
    for beta, lam in _settings([1.01, 3.0, 1e4]):
        theta = theta_from_lambda(lam, beta, H)
        r = (theta - math.log(H) / beta) / xi.norm(dim=1).max().item()
        assert r > 0
        v = directions * fractions * r
        assert torch.equal(rectified_update(v, xi, beta, lam), torch.zeros_like(v))
        assert ood_attractor_decision(v, xi, beta, lam).all()
        # the radius is tight for one memory (H = 1): just outside the ball, along xi, the gate opens
        if H == 1:
            outside = directions[:1] * r * (1 + 1e-6)
            assert not ood_attractor_decision(outside, xi, beta, lam).any()
            assert (rectified_update(outside, xi, beta, lam) != 0).any()


@params
@kinds
def test_property3_energy_is_min_and_never_increases(H, d, kind):
    xi = _memories(H, d, kind)
    v = _states(64, d, kind, scale=xi.norm(dim=1).max().item() * 1.5)
    for beta, lam in _settings([0.5, 1.0, 2.0, 50.0]):
        theta = theta_from_lambda(lam, beta, H)
        e_rec = rectified_energy(v, xi, beta, lam)
        expected = torch.minimum(hopfield_energy(v, xi, beta), 0.5 * (v * v).sum(1) - theta)
        torch.testing.assert_close(e_rec, expected, rtol=1e-12, atol=1e-12)
        # E_Rec = 1/2 ||v||^2 - max(LSE, theta), computed independently
        manual = 0.5 * (v * v).sum(1) - torch.clamp(torch.logsumexp(beta * v @ xi.T, 1) / beta, min=theta)
        torch.testing.assert_close(e_rec, manual, rtol=1e-12, atol=1e-12)
        traj = iterate(v, xi, beta, lam, steps=20, tol=0.0, return_trajectory=True)
        energies = torch.stack([rectified_energy(s, xi, beta, lam) for s in traj])     # (T+1, n)
        assert (energies[1:] <= energies[:-1] + 1e-10 * (1 + energies[:-1].abs())).all()
        assert (energies[-1] < energies[0] - 1e-6).any()                               # it does move


@params
@kinds
def test_property4_lambda_to_zero_is_the_vanilla_network(H, d, kind):
    xi = _memories(H, d, kind)
    v = _states(64, d, kind, scale=3.0)
    for beta, lam in _settings([0.0, 1e-300]):
        torch.testing.assert_close(rectified_energy(v, xi, beta, lam), hopfield_energy(v, xi, beta),
                                   rtol=0, atol=0)
        vanilla = torch.softmax(beta * (v @ xi.T), 1) @ xi
        torch.testing.assert_close(rectified_update(v, xi, beta, lam), vanilla, rtol=0, atol=0)
        torch.testing.assert_close(iterate(v, xi, beta, lam, steps=5, tol=0.0),
                                   iterate(v, xi, beta, 0.0, steps=5, tol=0.0), rtol=0, atol=0)
        # the limit matters: a lambda putting theta above every LSE changes every energy and update
        lam_big = math.exp(beta * lse(v @ xi.T, beta).max().item() + 1) / H
        assert (rectified_energy(v, xi, beta, lam_big) < hopfield_energy(v, xi, beta)).all()
        assert (rectified_update(v, xi, beta, lam_big) == 0).all()
    assert theta_from_lambda(0.0, 5.0, H) == float("-inf")


@params
@kinds
def test_property5_attractor_decision_is_a_score_threshold(H, d, kind):
    xi = _memories(H, d, kind)
    v = _states(400, d, kind, scale=xi.norm(dim=1).max().item() * 0.5)
    for beta in BETAS:
        torch.testing.assert_close(reclag_score(v, xi, beta), beta * lse(v @ xi.T, beta))
        # the decision is evaluated in float64, so the threshold is compared with the float64 score
        score = reclag_score(v.double(), xi.double(), beta)
        order = torch.argsort(score)
        previous = torch.zeros(len(v), dtype=torch.bool)
        for q in (0.1, 0.3, 0.5, 0.9):
            # a lambda that puts beta theta = log(lambda H) between two scores, so that none ties with it
            i = int(q * len(v))
            mid = 0.5 * (score[order[i - 1]] + score[order[i]]).item()
            lam = math.exp(mid) / H
            decided = ood_attractor_decision(v, xi, beta, lam)
            assert torch.equal(decided, score < beta * theta_from_lambda(lam, beta, H))
            assert int(decided.sum()) == i               # exactly the i lowest scores go to the attractor
            sent = (rectified_update(v, xi, beta, lam) == 0).all(1)
            assert torch.equal(decided, sent)            # ... and they are the ones the update sends to 0
            assert (previous <= decided).all()           # larger lambda: a superset goes to the attractor
            previous = decided


def test_float32_score_matches_float64():
    xi = _memories(10, 512, "nonneg")
    v = _states(100, 512, "nonneg", scale=3.0)
    torch.testing.assert_close(reclag_score(v.float(), xi.float(), 5.0),
                               reclag_score(v, xi, 5.0).float(), rtol=1e-5, atol=1e-4)


def test_routed_score_matches_per_class_scores():
    g = torch.Generator().manual_seed(0)
    d = 12
    # signed values: x . xi < 0 is common, so padded rows (h = 0) would change the result if not masked
    xis = [torch.randn(10, d, generator=g), torch.randn(3, d, generator=g), None,
           torch.randn(1, d, generator=g)]
    feats = torch.randn(50, d, generator=g)
    pred = torch.randint(0, 4, (50,), generator=g)
    pred[:3] = 2                                            # some inputs routed to the class without Xi
    with pytest.warns(UserWarning, match="no RecLag matrix"):
        out = reclag_score_routed(feats, pred, xis, 5.0, chunk_elements=100)   # several blocks
    everything = torch.cat([x for x in xis if x is not None])
    for i in range(50):
        c = int(pred[i])
        expected = reclag_score(feats[i:i + 1], xis[c] if xis[c] is not None else everything, 5.0)
        torch.testing.assert_close(out[i:i + 1], expected, rtol=1e-6, atol=1e-5)


def test_routed_score_without_missing_classes_does_not_warn(recwarn):
    g = torch.Generator().manual_seed(1)
    xis = [torch.rand(4, 6, generator=g), torch.rand(2, 6, generator=g)]
    feats = torch.rand(9, 6, generator=g)
    pred = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1])
    out = reclag_score_routed(feats, pred, xis, 2.0)
    assert not [w for w in recwarn if "RecLag" in str(w.message)]
    expected = torch.stack([reclag_score(f, xis[int(p)], 2.0) for f, p in zip(feats, pred)])
    torch.testing.assert_close(out, expected)
