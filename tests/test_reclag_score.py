"""The RecLag score: its formula, its stored pattern in the pipeline (settings in the fingerprint), and
the fact that lambda moves only the binary decision, never the threshold-free metrics."""
import math

import pytest
import torch

import generate_stored_pattern
import test_score_ood_detection
from ood.evaluation.metrics import compute_metrics
from scores.reclag import RecLag
from scores.reclag_dynamics import ood_attractor_decision, reclag_score_routed, rectified_update

C, D = 4, 16


def clustered(n, seed, spread=0.3, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(C, D, generator=torch.Generator().manual_seed(0)) * 2
    y = torch.arange(n) % C
    feats = (centres[y] + shift + spread * torch.randn(n, D, generator=g)).clamp(min=0)
    W = centres.clone()
    logits = feats @ W.T - 0.5 * (W * W).sum(1)
    return {"features": feats, "logits": logits, "labels": y}, {"weight": W, "bias": torch.zeros(C)}


def test_reclag_score_formula_and_routing():
    train, head = clustered(400, 1)
    test, _ = clustered(60, 2)
    s = RecLag(hidden=6, epochs=3, seed=3)
    state = s.fit(train, head)
    assert state["xi"].shape == (C, 6, D) and state["sizes"].tolist() == [6] * C
    out = s.score(test, state, head)
    pred = test["logits"].argmax(1)
    for i in range(len(out)):
        xi = state["xi"][pred[i]].double()
        ref = torch.logsumexp(5.0 * xi @ test["features"][i].double(), 0)
        assert out[i].item() == pytest.approx(ref.item(), rel=1e-5)
    # deterministic for a seed, different for another seed or sampler
    assert torch.equal(RecLag(hidden=6, epochs=3, seed=3).fit(train, head)["xi"], state["xi"])
    assert not torch.equal(RecLag(hidden=6, epochs=3, seed=4).fit(train, head)["xi"], state["xi"])
    assert not torch.equal(RecLag(hidden=6, epochs=3, seed=3, sampler="posterior").fit(train, head)["xi"], state["xi"])


def test_lambda_moves_the_decision_not_the_metrics():
    """The decision is evaluated in float64 (scores/reclag_dynamics.py), so it is compared with the
    float64 score: S64(phi) <= log(lambda H) exactly when the input goes to the OOD attractor."""
    train, head = clustered(600, 1)
    id_, _ = clustered(200, 2)
    ood, _ = clustered(300, 3, spread=1.0, shift=0.8)
    score = RecLag(hidden=8, epochs=5)
    state = score.fit(train, head)
    xis, beta = RecLag.memories(state), score.beta

    def s64(data):
        xis64 = [x.double() for x in xis]
        return reclag_score_routed(data["features"].double(), data["logits"].argmax(1), xis64, beta).double()

    s_id, s_ood = s64(id_), s64(ood)
    metrics = compute_metrics(s_id.numpy(), s_ood.numpy())

    def decide(data, lam):
        pred = data["logits"].argmax(1)
        out = torch.empty(len(pred), dtype=torch.bool)
        for c in range(C):
            m = pred == c
            out[m] = ood_attractor_decision(data["features"][m], xis[c], beta, lam)
            if m.any():  # the first update really sends exactly these inputs to the origin
                moved = rectified_update(data["features"][m], xis[c], beta, lam)
                assert torch.equal(moved.abs().sum(1) == 0, out[m])
        return out

    accepted = []
    H = 8
    all_s = torch.cat([s_id, s_ood])
    assert all_s.max() < 700  # exp(S) stays finite in float64
    # thresholds between two neighbouring scores, so that rounding cannot decide a comparison
    ordered = torch.sort(all_s).values
    gaps = [(ordered[i] + ordered[i + 1]) / 2 for i in (len(ordered) // 10, len(ordered) // 2, 9 * len(ordered) // 10)]
    lams = [1.0] + [math.exp(g.item()) / H for g in gaps]
    for lam in lams:
        rej_id, rej_ood = decide(id_, lam), decide(ood, lam)
        # the decision is a threshold on the score: rejected iff S <= log(lambda H)
        assert torch.equal(rej_id, s_id <= math.log(lam * H))
        assert torch.equal(rej_ood, s_ood <= math.log(lam * H))
        accepted.append((1 - rej_id.float().mean().item(), 1 - rej_ood.float().mean().item()))
        # threshold-free metrics come from the score alone and are the same at every lambda
        assert compute_metrics(s_id.numpy(), s_ood.numpy()) == metrics
    assert len(set(accepted)) >= 3  # ... while the binary decision does change with lambda
    # and FPR95 is the decision's FPR at the lambda whose threshold keeps 95% of ID inputs: just below
    # the k-th largest ID score t (the margin 1e-9 dwarfs float64 round-off at |t| < 700)
    k = math.ceil(0.95 * len(s_id))
    t = torch.sort(s_id, descending=True).values[k - 1].item()
    lam95 = math.exp(t - 1e-9) / H
    rej_ood = decide(ood, lam95)
    assert int((~rej_ood).sum()) / len(s_ood) == pytest.approx(metrics["fpr95"], abs=1e-12)
    assert int((~decide(id_, lam95)).sum()) >= 0.95 * len(s_id)


def test_reclag_pattern_in_pipeline_refits_on_settings(data, workdir):
    common = ["--dataset", "cifar10", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
              "--resize_val", "16", "--batch_size", "25", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet",
              "--dataset_path", str(data)]
    import train_model
    train_model.main(common + ["--epochs", "3", "--lr", "0.05", "--augment", "none"])
    quick = ["--reclag_epochs", "2", "--reclag_batch_size", "4"]
    generate_stored_pattern.main(common + ["--ood", "iSUN", "--score", "RecLag", "HE"] + quick)
    patterns = workdir / "stored_pattern/cifar10/wrn/patterns"
    [path] = patterns.glob("reclag-*.pt")
    saved = torch.load(path, weights_only=True)
    assert saved["settings"] == {**RecLag().fit_settings(), "batch_size": 4, "epochs": 2}
    [he] = patterns.glob("he-*.pt")
    he_stamp = he.stat().st_mtime_ns
    seen = {path}
    for change in (["--reclag_hidden", "3"], ["--reclag_sampler", "posterior"], ["--reclag_init", "kmeans"],
                   ["--seed", "5"], ["--reclag_seed", "6"]):
        generate_stored_pattern.main(common + ["--ood", "iSUN", "--score", "RecLag", "HE"] + quick + change)
        new = set(patterns.glob("reclag-*.pt")) - seen
        assert len(new) == 1, change  # a fit of its own, keyed on the settings; the earlier ones are kept
        seen |= new
        now = torch.load(next(iter(new)), weights_only=True)
        assert now["fingerprint"] != saved["fingerprint"], change
    assert he.stat().st_mtime_ns == he_stamp  # HE's settings did not change: not refitted
    stamps = {p: p.stat().st_mtime_ns for p in seen}
    rows = test_score_ood_detection.main(common + ["--ood", "iSUN", "--score", "RecLag", "--seed", "5",
                                                   "--results_dir", "r"] + quick)
    assert len(rows) == 1 and rows[0]["score"] == "RecLag" and 0 <= rows[0]["auroc"] <= 1
    assert rows[0]["settings"]["epochs"] == 2 and rows[0]["replicates"] == {"seed": [5]}
    assert stamps == {p: p.stat().st_mtime_ns for p in seen}  # reused, not refitted
