"""The contract every registered score keeps (as tests/test_models.py does for backbones): one float per
input, in input order and independent of the order of the other inputs, finite, higher = more ID on a
clearly separated case, a fitted state that survives the pattern file (weights_only), and a stored
pattern keyed on every declared fit setting. The score list comes from the registry."""
import io

import numpy as np
import pytest
import torch

import scores
from ood.cache.features import pattern_fingerprint
from ood.evaluation.metrics import auroc
from ood.params import Context

C, D = 4, 24
CTX = Context(dataset="cifar10", feature_dim=D, num_classes=C)


def toy(n, seed, ood=False):
    """phi >= 0: ID inputs near their class's pattern with a large activation; OOD inputs are weak, diffuse
    activations. The head classifies ID inputs by their pattern."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(C, D)
    for c in range(C):
        centres[c, 6 * c:6 * c + 6] = 3.0
    y = torch.arange(n) % C
    if ood:
        feats = 0.6 * torch.rand(n, D, generator=g)
    else:
        feats = (centres[y] + 0.4 * torch.randn(n, D, generator=g)).clamp(min=0)
    W = centres / 3.0
    logits = feats @ W.T
    return {"features": feats, "logits": logits, "labels": y}, {"weight": W, "bias": torch.zeros(C)}


@pytest.fixture(scope="module")
def sets():
    train, head = toy(400, 0)
    test, _ = toy(120, 1)
    ood, _ = toy(150, 2, ood=True)
    return train, test, ood, head


def build(cls):
    return cls(ctx=CTX)


@pytest.fixture(scope="module")
def fitted(sets):
    train, _, _, head = sets
    out = {}
    for cls in scores.registered():
        s = build(cls)
        out[cls.name] = (s, s.fit(train, head) if s.needs_fit() else {})
    return out


NAMES = [c.name for c in scores.registered()]


@pytest.mark.parametrize("name", NAMES)
def test_declaration(name):
    cls = scores.get(name)
    assert cls.name and isinstance(cls.order, (int, float)) and cls.__doc__
    for p in cls.params:
        assert p.help, f"{name}.{p.name} has no help text"
        value = p.default_for(CTX)
        assert p.convert(value) == value  # the default passes its own checks


@pytest.mark.parametrize("name", NAMES)
def test_input_order_and_permutation(name, sets, fitted):
    _, test, ood, head = sets
    s, state = fitted[name]
    data = {k: torch.cat([test[k], ood[k]]) for k in ("features", "logits", "labels")}
    out = s.score(data, state, head)
    assert out.shape == (len(data["features"]),) and torch.isfinite(out).all()
    perm = torch.randperm(len(out), generator=torch.Generator().manual_seed(5))
    permuted = s.score({k: v[perm] for k, v in data.items()}, state, head)
    torch.testing.assert_close(permuted.double(), out[perm].double(), rtol=1e-5, atol=1e-5)
    # scoring a part gives the same values as scoring it within the whole
    part = s.score({k: v[:7] for k, v in data.items()}, state, head)
    torch.testing.assert_close(part.double(), out[:7].double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_higher_is_in_distribution(name, sets, fitted):
    _, test, ood, head = sets
    s, state = fitted[name]
    assert auroc(s.score(test, state, head).numpy(), s.score(ood, state, head).numpy()) > 0.9


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_the_pattern_file(name, sets, fitted):
    _, test, _, head = sets
    s, state = fitted[name]
    buf = io.BytesIO()
    torch.save({"state": state}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["state"]
    torch.testing.assert_close(s.score(test, loaded, head), s.score(test, state, head), rtol=0, atol=0)


def other_value(p, value):
    """A valid value of ``p`` different from ``value``."""
    if p.choices:
        return next(c for c in p.choices if c != value)
    if p.type is bool:
        return not value
    candidates = [value + 1, value - 1, value * 2, value / 2] if p.type is float else [value + 1, value - 1]
    for v in candidates:
        try:
            return p.convert(v)
        except Exception:
            continue
    raise AssertionError(f"no other valid value for {p.name}")


@pytest.mark.parametrize("name", NAMES)
def test_fingerprint_follows_every_fit_setting(name):
    cls = scores.get(name)
    base = build(cls)
    fp = pattern_fingerprint(base, "train-digest", "head-digest")
    assert fp == pattern_fingerprint(build(cls), "train-digest", "head-digest")
    for p in cls.params:
        changed = cls(ctx=CTX, **{p.name: other_value(p, base.settings[p.name])})
        assert (pattern_fingerprint(changed, "train-digest", "head-digest") != fp) == p.fit, p.name
    assert pattern_fingerprint(base, "other-train", "head-digest") != fp
    assert pattern_fingerprint(base, "train-digest", "other-head") != fp


def test_out_of_range_setting_is_a_clear_error():
    from ood.params import ParamError
    for cls in scores.registered():
        for p in cls.params:
            if p.bounds:
                lo, lo_in, hi, hi_in = p._interval
                bad = lo - 1 if np.isfinite(lo) else hi + 1
                with pytest.raises(ParamError, match=p.name):
                    cls(ctx=CTX, **{p.name: bad})
