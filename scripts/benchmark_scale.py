#!/usr/bin/env python3
"""Memory and time of the bank-based scores at ImageNet scale: KNN, Mahalanobis and RMD fitted on a
1,281,167 x 2048 bank of random non-negative features (1,000 classes) and scoring 50,000 + 4 x 10,000
inputs, the shape of the ImageNet-1k protocol with ResNet-50 features.

The bank alone is 10.5 GB in float32. Every score runs block by block (KNN: a running top-k of the
similarities; Mahalanobis and RMD: covariances accumulated over blocks of training features, inputs
whitened block by block), so the peak resident memory stays near that of the bank: the script reports
the process's peak RSS (sampled every 5 ms) after the bank is made and while each score fits and scores.

On a CPU, scoring 90,000 inputs against the full bank is ~4.7e14 multiply-adds for KNN (hours on two
cores); ``--queries N`` scores N of them and the report gives the measured rate and the time it implies
for all 90,000 (labelled as extrapolated). On CUDA (``--device cuda``) everything runs in full.

    python3 scripts/benchmark_scale.py --json results/benchmark_scale.json [--queries 2000] [--device cuda]
    python3 scripts/benchmark_scale.py --json /tmp/s.json --quick      # a small shape (smoke test)
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scores  # noqa: E402
from benchtools import PeakRSS  # noqa: E402
from ood.params import Context  # noqa: E402

IMAGENET = {"bank": 1_281_167, "dim": 2048, "classes": 1000, "inputs": 50_000 + 4 * 10_000}
QUICK = {"bank": 20_000, "dim": 256, "classes": 100, "inputs": 3_000}
BLOCK = 1 << 16


def random_features(n, d, seed, device="cpu"):
    """ReLU of Gaussians (phi >= 0, like pooled post-ReLU features), filled block by block so that no
    second copy of the array is ever made."""
    out = torch.empty(n, d)
    g = torch.Generator().manual_seed(seed)
    for i in range(0, n, BLOCK):
        out[i:i + BLOCK] = torch.randn(min(BLOCK, n - i), d, generator=g).relu_()
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(name, cls_settings, train, queries, head, device, ctx, n_total):
    cls = scores.get(name)
    score = cls(ctx=ctx, device=device, **cls_settings)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        state = score.fit(train, head)
        sync(device)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = score.score(queries, state, head)
        sync(device)
        t_score = time.perf_counter() - t0
    assert torch.isfinite(out).all()
    rate = len(queries["features"]) / t_score
    row = {"fit_s": round(t_fit, 2), "score_s": round(t_score, 2), "inputs_scored": len(queries["features"]),
           "inputs_per_s": round(rate, 1), "peak_rss_gib": round(mem.peak / 1024, 2),
           "peak_rss_increase_gib": round((mem.peak - mem.start) / 1024, 2), "settings": score.settings}
    if len(queries["features"]) < n_total:
        row["score_s_all_inputs_extrapolated"] = round(n_total / rate, 1)
    if device.type == "cuda":
        row["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.reset_peak_memory_stats(device)
    print(f"{name}: fit {t_fit:.1f} s, score {len(queries['features'])} inputs in {t_score:.1f} s "
          f"({rate:.0f}/s), peak RSS {mem.peak / 1024:.2f} GiB", flush=True)
    del state
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--queries", type=int, default=None, help="inputs to score (default: all 90,000)")
    p.add_argument("--quick", action="store_true", help="a small shape, to check that the script runs")
    p.add_argument("--scores", nargs="+", default=["KNN", "Mahalanobis", "RMD"])
    a = p.parse_args()
    shape = QUICK if a.quick else IMAGENET
    device = torch.device(a.device)
    n_q = min(a.queries or shape["inputs"], shape["inputs"])
    res = {"machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
           "shape": {**shape, "inputs_scored": n_q}, "scores": {}}
    with PeakRSS() as mem:
        bank = random_features(shape["bank"], shape["dim"], 0)
        labels = torch.randint(shape["classes"], (shape["bank"],), generator=torch.Generator().manual_seed(1))
        queries = random_features(n_q, shape["dim"], 2)
        g = torch.Generator().manual_seed(3)
        head = {"weight": 0.05 * torch.randn(shape["classes"], shape["dim"], generator=g),
                "bias": torch.zeros(shape["classes"])}
        train = {"features": bank, "labels": labels, "logits": None}
        data = {"features": queries, "logits": queries @ head["weight"].T}
    res["data_rss_gib"] = round(mem.peak / 1024, 2)
    print(f"bank {tuple(bank.shape)} + {n_q} inputs in memory: {mem.peak / 1024:.2f} GiB RSS", flush=True)
    ctx = Context(dataset="imagenet", feature_dim=shape["dim"], num_classes=shape["classes"])
    settings = {"KNN": {"k": 1000, "bank_fraction": 1.0}}  # the full bank (the paper's alpha = 100 % setting)
    for name in a.scores:
        res["scores"][name] = run(name, settings.get(name, {}), train, data, head, device, ctx, shape["inputs"])
    res["peak_rss_gib"] = max(r["peak_rss_gib"] for r in res["scores"].values())
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    print(f"peak RSS {res['peak_rss_gib']} GiB; written to {a.json}")


if __name__ == "__main__":
    main()
