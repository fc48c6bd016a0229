"""The RecLag score: its formula, its stored pattern in the pipeline (settings in the fingerprint), and
the fact that lambda moves only the binary decision, never the threshold-free metrics."""
import math

import numpy as np
import pytest
import torch

import generate_stored_pattern
import test_score_ood_detection
from ood.metrics import compute_metrics
from scores.reclag import RecLag, ood_attractor_decision, rectified_update

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
    train, head = clustered(600, 1)
    id_, _ = clustered(200, 2)
    ood, _ = clustered(300, 3, spread=1.0, shift=0.8)
    score = RecLag(hidden=8, epochs=5)
    state = score.fit(train, head)
    xis, beta = RecLag.memories(state), score.beta
    s_id, s_ood = score.score(id_, state, head), score.score(ood, state, head)
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
    all_s = torch.cat([s_id, s_ood]).double()
    assert all_s.max() < 700  # exp(S) stays finite in float64
    lams = [1.0] + [math.exp(torch.quantile(all_s, q).item()) / H for q in (0.1, 0.5, 0.9)]
    for lam in lams:
        rej_id, rej_ood = decide(id_, lam), decide(ood, lam)
        # the decision is a threshold on the score: rejected iff S <= log(lambda H)
        assert torch.equal(rej_id, s_id <= math.log(lam * H))
        assert torch.equal(rej_ood, s_ood <= math.log(lam * H))
        accepted.append((1 - rej_id.float().mean().item(), 1 - rej_ood.float().mean().item()))
        # threshold-free metrics come from the score alone and are the same at every lambda
        assert compute_metrics(s_id.numpy(), s_ood.numpy()) == metrics
    assert len(set(accepted)) >= 3  # ... while the binary decision does change with lambda
    # and FPR95 is the decision's FPR at the lambda whose threshold keeps 95% of ID inputs
    k = math.ceil(0.95 * len(s_id))
    t = torch.sort(s_id.double(), descending=True).values[k - 1].item()
    lam95 = math.exp(t) / H * (1 - 1e-12)
    rej_ood = decide(ood, lam95)
    assert int((~rej_ood).sum()) / len(s_ood) == pytest.approx(metrics["fpr95"], abs=1e-12)
    assert int((~decide(id_, lam95)).sum()) >= 0.95 * len(s_id)


def test_reclag_pattern_in_pipeline_refits_on_settings(data, workdir):
    common = ["--dataset", "cifar10", "--model", "wrn", "--layers", "10", "--widen-factor", "1",
              "--resize_val", "16", "--batch_size", "25", "--workers", "0", "--device", "cpu", "--quiet",
              "--dataset_path", str(data)]
    import train_model
    train_model.main(common + ["--epochs", "3", "--lr", "0.05", "--augment", "none"])
    generate_stored_pattern.main(common + ["--ood", "iSUN", "--reclag_epochs", "2", "--reclag_batch", "4"])
    path = workdir / "stored_pattern/cifar10/wrn/patterns/RecLag.pt"
    saved = torch.load(path, weights_only=True)
    assert saved["settings"] == {"hidden": 10, "beta": 5.0, "n_samples": 5, "batch_size": 4, "epochs": 2,
                                 "lr": 1e-3, "init": "random", "sampler": "reference", "seed": 1}
    he = workdir / "stored_pattern/cifar10/wrn/patterns/HE.pt"
    stamps = path.stat().st_mtime_ns, he.stat().st_mtime_ns
    for change in (["--hidden", "3"], ["--sampler", "posterior"], ["--init", "kmeans"], ["--seed", "5"]):
        generate_stored_pattern.main(common + ["--ood", "iSUN", "--reclag_epochs", "2", "--reclag_batch", "4",
                                               "--score", "RecLag", "HE"] + change)
        now = torch.load(path, weights_only=True)
        assert now["fingerprint"] != saved["fingerprint"], change
        saved = now
    assert saved["state"]["sizes"].max() == 10 and he.stat().st_mtime_ns == stamps[1]
    rows = test_score_ood_detection.main(common + ["--ood", "iSUN", "--score", "RecLag", "--reclag_epochs", "2",
                                                   "--reclag_batch", "4", "--seed", "5", "--results_dir", "r"])
    assert len(rows) == 1 and rows[0]["score"] == "RecLag" and 0 <= rows[0]["auroc"] <= 1
    assert torch.load(path, weights_only=True)["fingerprint"] == saved["fingerprint"]  # reused, not refitted
