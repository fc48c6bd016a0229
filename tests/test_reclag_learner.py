"""The RecLag learner (scores/reclag_learner.py; docs/method.md, "The RecLag learner").

The fixture tests reproduce traces of the authors' Keras learner (tests/fixtures/README.md); the other
tests check that the batched learner equals the per-class loop (scores/reclag_loop.py), the edge cases,
seeding and the samplers.
"""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import scores.reclag_learner as learner
from scores.reclag import RecLag
from scores.reclag_learner import draw_memory_indices, initial_memories, reclag_loss, reclag_loss_and_grad
from scores.reclag_loop import fit_memories_loop as _loop

# the learner takes every setting explicitly; the tests start from RecLag's declared defaults
DEFAULTS = RecLag().fit_settings()


def fit_memories(features, labels, num_classes, **kw):
    return learner.fit_memories(features, labels, num_classes, **{**DEFAULTS, **kw})


def fit_memories_loop(features, labels, num_classes, **kw):
    return _loop(features, labels, num_classes, **{**DEFAULTS, **kw})


FIXTURE_NAME = "reclag_reference_trace.npz"
CASES = ["real", "soft"]
LEARNERS = [fit_memories, fit_memories_loop]


@pytest.fixture(scope="module")
def trace():
    with np.load(Path(__file__).resolve().parent / "fixtures" / FIXTURE_NAME) as f:
        return {k: f[k] for k in f.files}


def _case(trace, case):
    get = lambda name: trace[f"{case}/{name}"]  # noqa: E731
    return dict(X=torch.from_numpy(get("X")), xi_init=torch.from_numpy(get("xi_init")),
                samples=torch.from_numpy(get("samples")), weights0=torch.from_numpy(get("weights0")),
                loss0=float(get("loss0")), grad0=torch.from_numpy(get("grad0")),
                losses=torch.from_numpy(get("losses")), xi_final=torch.from_numpy(get("xi_final")),
                beta=float(get("beta")), B=int(get("batch_size")), epochs=int(get("epochs")),
                S=int(get("n_samples")), lr=float(get("lr")),
                adam_betas=tuple(get("adam_betas")), adam_eps=float(get("adam_eps")))


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("case", CASES)
def test_fixture_settings_are_the_reference_ones(trace, case):
    t = _case(trace, case)
    assert (t["lr"], t["adam_betas"], t["adam_eps"]) == (1e-3, (0.9, 0.98), 1e-9)
    assert t["samples"].shape == (t["epochs"] * (len(t["X"]) // t["B"]), t["S"], t["B"])


@pytest.mark.parametrize("case", CASES)
def test_fixture_first_step_autograd(trace, case):
    """The loss written like the reference, differentiated by autograd: loss0 and grad0 of Keras."""
    t = _case(trace, case)
    xi = t["xi_init"].clone().requires_grad_(True)
    loss = reclag_loss(t["X"][:t["B"]], xi, t["beta"], t["samples"][0])
    (grad,) = torch.autograd.grad(loss, xi)
    assert abs(loss.item() - t["loss0"]) <= 1e-5 * abs(t["loss0"])
    assert _rel(grad, t["grad0"]) < 1e-5


@pytest.mark.parametrize("case", CASES)
def test_fixture_first_step_closed_form(trace, case):
    """The closed-form step the batched learner runs (no S x B x d tensor): loss0, grad0, weights0."""
    t = _case(trace, case)
    loss, grad, w = reclag_loss_and_grad(t["X"][:t["B"]], t["xi_init"], t["beta"], t["samples"][0])
    assert abs(loss.item() - t["loss0"]) <= 1e-5 * abs(t["loss0"])
    assert _rel(grad, t["grad0"]) < 1e-5
    torch.testing.assert_close(w, t["weights0"], rtol=5e-5, atol=0)


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", CASES)
def test_fixture_whole_run(trace, case, learner):
    """Injected init and samples: every step's loss and the final matrix of the Keras run."""
    t = _case(trace, case)
    H = t["xi_init"].shape[0]
    xis, losses = learner(t["X"], torch.zeros(len(t["X"]), dtype=torch.long), 1, hidden=H, beta=t["beta"],
                          n_samples=t["S"], batch_size=t["B"], epochs=t["epochs"], lr=t["lr"],
                          xi_init=[t["xi_init"]], sample_indices=[t["samples"]], return_losses=True)
    assert len(losses[0]) == len(t["losses"])
    torch.testing.assert_close(losses[0], t["losses"], rtol=1e-5, atol=0)
    torch.testing.assert_close(xis[0], t["xi_final"], rtol=0, atol=1e-5)
    # and the run really moved Xi (the comparison above would be vacuous otherwise)
    assert (t["xi_final"] - t["xi_init"]).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------------
# Batched learner == per-class loop
# ---------------------------------------------------------------------------------------------------

SIZES = [230, 180, 7, 30, 0, 120, 10, 101]   # |X_c| <= H (7, 10), < batch (30), empty (class 4)


def _random_problem(sizes, d=16, seed=0, signed=False):
    g = torch.Generator().manual_seed(seed)
    draw = torch.randn if signed else torch.rand
    feats = torch.cat([draw(n, d, generator=g) * (0.5 + 0.1 * c) for c, n in enumerate(sizes)])
    labels = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    perm = torch.randperm(len(labels), generator=g)   # classes interleaved in stored order
    return feats[perm], labels[perm]


def _random_samples(sizes, epochs, hidden=10, S=5, B=50, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, min(hidden, n), (epochs * (n // B), S, B), generator=g) if n else None
            for n in sizes]


def _assert_same(a, b, atol=2e-6):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.shape == y.shape
            torch.testing.assert_close(x, y, rtol=0, atol=atol)


@pytest.mark.filterwarnings("ignore:RecLag")
@pytest.mark.parametrize("injected", [True, False], ids=["injected", "sampler"])
@pytest.mark.parametrize("sampler", ["reference", "posterior"])
def test_batched_equals_loop(sampler, injected):
    feats, labels = _random_problem(SIZES)
    kw = dict(epochs=4, sampler=sampler, seed=3, return_losses=True)
    if injected:
        kw["sample_indices"] = _random_samples(SIZES, 4)
    a, la = fit_memories(feats, labels, len(SIZES), **kw)
    b, lb = fit_memories_loop(feats, labels, len(SIZES), **kw)
    _assert_same(a, b)
    for c, n in enumerate(SIZES):
        assert a[c] is None if n == 0 else a[c].shape == (min(10, n), 16)
        if n:
            assert len(la[c]) == len(lb[c]) == 4 * (n // 50)
            torch.testing.assert_close(la[c], lb[c], rtol=1e-5, atol=0)
    trained = [c for c, n in enumerate(SIZES) if n >= 50]
    init = fit_memories(feats, labels, len(SIZES), epochs=0, seed=3)
    assert all((a[c] - init[c]).abs().max() > 1e-4 for c in trained)


@pytest.mark.filterwarnings("ignore:RecLag")
@pytest.mark.parametrize("sampler", ["reference", "posterior"])
def test_batched_equals_loop_with_padded_memories(sampler):
    """Classes with |X_c| <= H that still have full batches (B < H): the stack is padded and masked."""
    sizes = [23, 7, 12, 3, 0]
    feats, labels = _random_problem(sizes, d=8, signed=True)
    # class 1 gets a small given init (H = 7): unmasked padding rows (h = 0) would take softmax mass
    small = 0.1 * torch.randn(7, 8, generator=torch.Generator().manual_seed(9))
    kw = dict(batch_size=5, epochs=6, sampler=sampler, seed=2, xi_init={1: small})
    a = fit_memories(feats, labels, len(sizes), **kw)
    b = fit_memories_loop(feats, labels, len(sizes), **kw)
    _assert_same(a, b)
    assert [None if x is None else x.shape[0] for x in a] == [10, 7, 10, 3, None]
    init = fit_memories(feats, labels, len(sizes), **{**kw, "epochs": 0})
    assert (a[1] - init[1]).abs().max() > 1e-4          # the padded class did learn


@pytest.mark.filterwarnings("ignore:RecLag")
@pytest.mark.parametrize("injected", [True, False], ids=["injected", "sampler"])
def test_batched_equals_loop_across_chunks(monkeypatch, injected):
    """The batched learner prepares batch rows and random draws for chunks of global steps; with tiny
    chunks, classes finish inside chunks and every class's random stream is read across chunk borders."""
    monkeypatch.setattr(learner, "_CHUNK_STEPS", 3)
    feats, labels = _random_problem(SIZES)
    kw = dict(epochs=3, seed=11)
    if injected:
        kw["sample_indices"] = _random_samples(SIZES, 3)
    a = fit_memories(feats, labels, len(SIZES), **kw)
    monkeypatch.setattr(learner, "_CHUNK_STEPS", 128)
    b = fit_memories(feats, labels, len(SIZES), **kw)
    c = fit_memories_loop(feats, labels, len(SIZES), **kw)
    _assert_same(a, b, atol=0)
    _assert_same(a, c)


@pytest.mark.filterwarnings("ignore:RecLag")
def test_a_class_learns_the_same_alone():
    """Per-class random streams: Xi^(c) does not depend on the other classes learnt alongside."""
    feats, labels = _random_problem(SIZES)
    together = fit_memories(feats, labels, len(SIZES), epochs=3, seed=5)
    for c in (0, 5):
        keep = labels == c
        alone = fit_memories(feats[keep], labels[keep], c + 1, epochs=3, seed=5)
        torch.testing.assert_close(alone[c], together[c], rtol=0, atol=1e-6)
        assert all(x is None for x in alone[:c])


# ---------------------------------------------------------------------------------------------------
# Initialisation and edge cases (docs/method.md, the learner's step 1)
# ---------------------------------------------------------------------------------------------------

def test_edge_cases():
    feats, labels = _random_problem(SIZES)
    with pytest.warns(UserWarning, match=r"classes \[2, 3, 6\] have fewer than batch_size=50"):
        out = fit_memories(feats, labels, len(SIZES), epochs=2, seed=1)
    # empty class: None
    assert out[4] is None
    # |X_c| <= H: H = |X_c|, the rows of X_c in stored order, rescaled to norm 10 (as the reference)
    for c in (2, 6):
        Xc = feats[labels == c]
        assert out[c].shape == Xc.shape
        torch.testing.assert_close(out[c], 10 * Xc / Xc.norm(dim=1, keepdim=True))
    # |X_c| < batch: no full batch, no step: the initial matrix
    init = fit_memories(feats, labels, len(SIZES), epochs=0, seed=1)
    assert torch.equal(out[3], init[3])
    # all results are float32 CPU tensors
    assert all(x.dtype == torch.float32 and x.device.type == "cpu" for x in out if x is not None)


def test_random_init_is_distinct_rescaled_rows():
    feats, labels = _random_problem([230])
    init = fit_memories(feats, labels, 1, epochs=0, seed=4)[0]
    assert init.shape == (10, 16)
    torch.testing.assert_close(init.norm(dim=1), torch.full((10,), 10.0))
    unit = feats / feats.norm(dim=1, keepdim=True)
    match = (init / 10) @ unit.T                         # each row is the direction of one stored pattern
    assert torch.allclose(match.max(1).values, torch.ones(10), atol=1e-5)
    assert len(set(match.argmax(1).tolist())) == 10      # distinct rows
    other = fit_memories(feats, labels, 1, epochs=0, seed=5)[0]
    assert not torch.equal(init, other)


def test_kmeans_init():
    from sklearn.cluster import KMeans
    feats, labels = _random_problem([230])
    init = fit_memories(feats, labels, 1, epochs=0, init="kmeans")[0]
    centres = torch.from_numpy(KMeans(10, random_state=0).fit(feats.numpy()).cluster_centers_).float()
    torch.testing.assert_close(init, 10 * centres / centres.norm(dim=1, keepdim=True))
    a = fit_memories(feats, labels, 1, epochs=3, init="kmeans")[0]
    b = fit_memories_loop(feats, labels, 1, epochs=3, init="kmeans")[0]
    torch.testing.assert_close(a, b, rtol=0, atol=2e-6)
    assert (a - init).abs().max() > 1e-4


def test_xi_init_is_used_as_given():
    feats, labels = _random_problem([120, 60])
    g = torch.Generator().manual_seed(0)
    given = [torch.randn(4, 16, generator=g), None]      # class 1 falls back to the default init
    out = fit_memories(feats, labels, 2, epochs=0, xi_init=given)
    assert torch.equal(out[0], given[0])                 # no rescaling
    assert out[1].shape == (10, 16)
    trained = fit_memories(feats, labels, 2, epochs=2, xi_init={0: given[0]})
    assert trained[0].shape == (4, 16)


def test_seeded_and_deterministic():
    feats, labels = _random_problem([230, 180])
    a = fit_memories(feats, labels, 2, epochs=2, seed=7)
    b = fit_memories(feats, labels, 2, epochs=2, seed=7)
    c = fit_memories(feats, labels, 2, epochs=2, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(not torch.equal(x, y) for x, y in zip(a, c))


def test_samplers_differ():
    feats, labels = _random_problem([230, 180])
    a = fit_memories(feats, labels, 2, epochs=2, sampler="reference")
    b = fit_memories(feats, labels, 2, epochs=2, sampler="posterior")
    assert all((x - y).abs().max() > 1e-4 for x, y in zip(a, b))


@pytest.mark.parametrize("sampler", ["reference", "posterior"])
def test_sampler_distribution(sampler):
    """'reference' draws from softmax(z) (tf.random.categorical on probabilities), 'posterior' from z."""
    g = torch.Generator().manual_seed(0)
    z = torch.softmax(3 * torch.randn(2, 6, 1, generator=g), 1)         # two inputs, H = 6
    u = torch.rand(2, 200_000, 1, generator=g)
    idx = draw_memory_indices(z, u, sampler)                             # (2, S, 1)
    freq = torch.stack([torch.bincount(i.flatten(), minlength=6) for i in idx]).double() / u.shape[1]
    expected = (torch.softmax(z, 1) if sampler == "reference" else z)[:, :, 0].double()
    torch.testing.assert_close(freq, expected, rtol=0, atol=5e-3)


def test_sampler_never_draws_padding():
    z = torch.full((3, 8, 4), 1 / 8)
    n_mem = torch.tensor([8, 3, 1])
    u = torch.rand(3, 50, 4)
    u[:, 0] = 1 - 2 ** -24                                               # the largest uniform
    for sampler in ("reference", "posterior"):
        idx = draw_memory_indices(z, u, sampler, n_mem)
        assert (idx < n_mem.view(3, 1, 1)).all() and (idx >= 0).all()


def test_initial_memories_kmeans_small_class_uses_rows():
    x = torch.rand(6, 5) + 0.1
    out = initial_memories(x, hidden=10, init="kmeans")
    torch.testing.assert_close(out, 10 * x / x.norm(dim=1, keepdim=True))


def test_invalid_sample_indices_are_rejected():
    feats, labels = _random_problem([120])
    bad = [torch.full((4, 5, 50), 10)]                   # index 10 with H = 10
    with pytest.raises(ValueError, match="must lie in"):
        fit_memories(feats, labels, 1, epochs=2, sample_indices=bad)
    with pytest.raises(ValueError, match="must be"):
        fit_memories(feats, labels, 1, epochs=2, sample_indices=[torch.zeros(3, 5, 50, dtype=torch.long)])


def test_no_full_batch_anywhere_returns_inits():
    feats, labels = _random_problem([20, 0, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fit_memories(feats, labels, 3, epochs=5, seed=1)
        b = fit_memories(feats, labels, 3, epochs=0, seed=1)
    assert a[1] is None and torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
