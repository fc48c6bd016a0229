#!/usr/bin/env python3
"""One prepared check for a GPU machine (about 9 minutes on one H100 or H200), run by scripts/gpu_check.sh.

It measures, in one run and on one card:
1. training throughput, side by side: ResNet18 @112 in the reference's setting (fp32, contiguous) vs this
   project's (bf16 + channels-last) vs + torch.compile, and the compilation's own time and break-even
   (what --compile auto assumes); ResNet34 @112 and WRN-40-2 @64 in bf16 +
   channels-last; feature extraction through the pipeline vs the bare forward on the same tensors;
2. the input pipeline: the training loader alone (Fashion-MNIST, Resize + AutoAugment + flip on CPU
   workers) at 112 and 64 px against the rate the GPU consumes images, and, for comparison, a loader that
   keeps the decoded images as one uint8 tensor on the GPU and resizes and flips batches there;
3. real data at the paper's resolutions: ResNet18 @112 and WRN-40-2 @64 trained for a few epochs on
   Fashion-MNIST (bf16 + channels-last), features extracted once, and the table of every registered score
   against the demo's OOD sets, plus the five-class near-OOD split (ResNet18); through the same scripts a
   user runs;
4. the bank-based scores at ImageNet scale (scripts/benchmark_scale.py on the GPU);
5. the CPU demo's training step in fp32 and bf16 (+ channels-last) on this machine's CPU;
6. GPU-hours of the whole reproduction grid, from the measured rates.
Figures go to --out as gpu_check.json and gpu_check.md. A section that would exceed --budget_s is skipped
and says so. ``--device cpu --quick`` runs every section on small shapes (the CI test of this script).

    python3 scripts/gpu_check.py --out results/gpu_check --data ./data [--device cuda] [--quick]
"""
import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchmark  # noqa: E402
import benchmark_scale  # noqa: E402
import scores  # noqa: E402
import test_score_ood_detection  # noqa: E402
import train_model  # noqa: E402
from ood.system import accel  # noqa: E402
from ood import data as D  # noqa: E402
from ood.data.batches import split  # noqa: E402
from ood.params import Context  # noqa: E402

DEMO_OOD = ["Digits", "Photos", "Faces", "GaussianNoise", "UniformNoise"]
GRID = {"datasets": 2, "backbones": {"resnet18": 112, "resnet34": 112, "wrn": 64}, "epochs": 100, "train": 50_000,
        "test": 10_000, "extracted": 170_597}


class Budget:
    def __init__(self, seconds):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self):
        return self.seconds - (time.perf_counter() - self.start)


def section(res, name, budget, need_s, fn):
    """Run one section, recording its result, its error or its skipping; never lose the others."""
    if budget.left() < need_s:
        res[name] = {"skipped": f"needs about {need_s} s, {budget.left():.0f} s of the budget left"}
        print(f"[{name}] skipped (budget)", flush=True)
        return
    t0 = time.perf_counter()
    try:
        res[name] = fn()
        res[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"[{name}] done in {time.perf_counter() - t0:.0f} s", flush=True)
    except Exception as e:  # a device check reports what failed and goes on
        res[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        print(f"[{name}] FAILED: {e}", flush=True)


def throughput(device, quick):
    """Training and extraction rates; ``quick`` measures the demo's small CNN instead (a smoke test)."""
    ours = [("bf16+channels_last", "bf16", True, False)]
    if quick:
        small = lambda configs: benchmark.bench_training(device, "cnn", 28, 16, 1, configs)  # noqa: E731
        r18, others = small(benchmark.TRAINING_CONFIGS[:2]), {m: small(ours) for m in ("resnet34", "wrn")}
        ext = benchmark.bench_extraction(device, "cnn", 28, 32, 16, 0, id_name="fashionmnist")
    else:
        r18 = benchmark.bench_training(device, "resnet18", 112, 256, 30, benchmark.TRAINING_CONFIGS, repeats=2)
        others = {m: benchmark.bench_training(device, m, s, 256, 30, benchmark.TRAINING_CONFIGS[1:])
                  for m, s in (("resnet34", 112), ("wrn", 64))}
        # a table's worth of images (the measure: >= 0.9 of the bare forward on 60,000+ images)
        ext = benchmark.bench_extraction(device, "resnet18", 112, 61_440, 256, min(16, os.cpu_count() or 1), repeats=1)
    runs = {"resnet18": r18, **others}
    compiled = benchmark.TRAINING_CONFIGS[2][0]
    return {"training_resnet18": r18, "training_bf16": {m: r["img_s"]["bf16+channels_last"] for m, r in runs.items()},
            # what the grid's 100-epoch runs train at by default (--compile auto compiles them); absent in --quick
            "training_compiled": {m: r["img_s"][compiled] for m, r in runs.items() if compiled in r["img_s"]},
            "extraction_resnet18": ext, "compile_resnet18": benchmark.compile_figures(device, quick)}


def loader_rates(data, device, quick, gpu_rates):
    """Images per second of the training loader alone, and of a uint8 tensor cache augmented on the device."""
    id_set = D.get_id_set("fashionmnist")
    workers = 0 if quick else min(16, os.cpu_count() or 1)
    out = {"workers": workers}
    for size in (112, 64):
        # the image stage of the training transform, as the trainer's workers run it (ood.data.batches)
        ds = D.build_id_dataset(id_set, data, "train", split(D.train_transform(id_set, 32 if quick else size)).image)
        ds = D.subset(ds, 256 if quick else 30_000)
        loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, num_workers=workers,
                                             **({"prefetch_factor": 4, "persistent_workers": False} if workers else {}))
        t0, n = time.perf_counter(), 0
        for i, (x, _) in enumerate(loader):
            if i == 0:
                t0, n = time.perf_counter(), 0  # worker start-up excluded
                continue
            n += len(x)
        out[f"cpu_autoaugment_{size}px_img_s"] = n / (time.perf_counter() - t0)
        # the decoded images once as a uint8 tensor on the device; per batch: resize, flip, normalise there
        raw = ds.dataset.data if hasattr(ds, "dataset") else ds.data
        cache = raw[:len(ds)].to(device).unsqueeze(1)
        g = torch.Generator(device=device).manual_seed(0)
        mean, std = id_set.mean[0], id_set.std[0]
        benchmark.sync(device)
        t0 = time.perf_counter()
        for i in range(0, len(cache), 256):
            xb = cache[i:i + 256].float().div_(255)
            xb = F.interpolate(xb, size=(size, size), mode="bilinear", align_corners=False)
            flip = torch.rand(len(xb), device=device, generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            xb = (xb - mean) / std
        benchmark.sync(device)
        out[f"device_cache_resize_flip_{size}px_img_s"] = len(cache) / (time.perf_counter() - t0)
    out["gpu_consumes_img_s"] = {"resnet18@112": gpu_rates.get("resnet18"), "wrn@64": gpu_rates.get("wrn")}
    out["loader_bound"] = {k: (out[f"cpu_autoaugment_{s}px_img_s"] < (gpu_rates.get(m) or 0))
                           for k, m, s in (("resnet18@112", "resnet18", 112), ("wrn@64", "wrn", 64))}
    return out


def real_data(data, device, quick, out_dir, epochs):
    """Fashion-MNIST through the project's scripts: train, extract once, every registered score."""
    workers = "0" if quick else str(min(16, os.cpu_count() or 1))
    base = ["--dataset", "fashionmnist", "--dataset_path", str(data), "--device", str(device), "--workers", workers,
            "--quiet", "--batch_size", "128"] + (["--amp", "off"] if quick else [])  # quick: the same on any CPU
    runs = {"resnet18": (["--model", "resnet18"], DEMO_OOD, []),
            "wrn": (["--model", "wrn"], DEMO_OOD, []),
            "resnet18_near_ood": (["--model", "resnet18"], ["HeldOut", "Digits", "Photos"],
                                  ["--id_classes", "0", "1", "2", "3", "4"])}
    if quick:
        runs = {k: (["--model", "wrn", "--layers", "10", "--widen_factor", "1", "--resize_val", "16",
                     "--subset", "200"], o, extra) for k, (_, o, extra) in runs.items()}
    out = {}
    for name, (model, oods, extra) in runs.items():
        ckpt = out_dir / "checkpoints" / f"{name}.pt"
        t0 = time.perf_counter()
        log = train_model.main(base + model + extra + ["--epochs", str(epochs), "--lr", "0.1", "--checkpoint", str(ckpt),
                                                       "--overwrite"] + (["--augment", "none"] if quick else []))
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):
            rows = test_score_ood_detection.main(
                base + model + extra + ["--checkpoint", str(ckpt), "--ood", *oods, "--score", "extended",
                                        "--stored_pattern_dir", str(out_dir / "stored_pattern"),
                                        "--results_dir", str(out_dir / "results" / name)])
        out[name] = {"epochs": epochs, "test_acc": log[-1]["test_acc"], "train_s": round(t_train, 1),
                     "epoch_s": [r["seconds"] for r in log], "extract_and_score_s": round(time.perf_counter() - t0, 1),
                     "input_size": rows[0]["input_size"],
                     "table": (out_dir / "results" / name / "results.md").read_text()}
    return out


def scale(device, quick):
    shape = benchmark_scale.QUICK if quick else benchmark_scale.IMAGENET
    bank = benchmark_scale.random_features(shape["bank"], shape["dim"], 0)
    labels = torch.randint(shape["classes"], (shape["bank"],), generator=torch.Generator().manual_seed(1))
    queries = benchmark_scale.random_features(shape["inputs"], shape["dim"], 2)
    head = {"weight": 0.05 * torch.randn(shape["classes"], shape["dim"]), "bias": torch.zeros(shape["classes"])}
    train, data = {"features": bank, "labels": labels}, {"features": queries, "logits": queries @ head["weight"].T}
    ctx = Context(dataset="imagenet", feature_dim=shape["dim"], num_classes=shape["classes"])
    out = {"shape": shape}
    for name, settings in (("KNN", {"k": 1000, "bank_fraction": 1.0}), ("Mahalanobis", {}), ("RMD", {})):
        out[name] = benchmark_scale.run(name, settings, train, data, head, device, ctx, shape["inputs"])
    return out


def cpu_step(quick):
    cpu = torch.device("cpu")
    r = benchmark.bench_training(cpu, "cnn", 28, 16 if quick else 128, 1 if quick else 10, benchmark.CPU_CONFIGS, 1,
                                 repeats=1 if quick else 2)
    r.update(auto_choice=list(accel.amp_mode("auto", cpu, True)), native_bf16=accel.cpu_has_native_bf16(),
             cpu_capability=torch.backends.cpu.get_cpu_capability())
    return r


def default_rates(t):
    """({backbone: img/s}, compiled?): the training rates of the grid's default settings, compiled
    (--compile auto compiles its 100-epoch runs) where all three backbones were measured compiled."""
    compiled = t.get("training_compiled") or {}
    if len(compiled) == len(GRID["backbones"]):
        return compiled, True
    return t.get("training_bf16", {}), False


def gpu_hours(res):
    """Hours of the whole reproduction grid (CIFAR-10 and -100, three backbones, 100 epochs) on this card:
    training at the measured rate of the default settings (bf16 + channels-last, compiled since
    --compile auto compiles runs this long, plus the compilation measured for ResNet18, twice: the full
    and the last batch), or at the loader's rate where that is lower, the per-epoch test pass and one
    extraction pass at the pipeline's rate."""
    t = res.get("throughput", {})
    rates, compiled = default_rates(t)
    compile_s = (t.get("compile_resnet18") or {}).get("compile_s", 0.0) if compiled else 0.0
    ext = res.get("throughput", {}).get("extraction_resnet18", {}).get("pipeline_img_s")
    loader = res.get("loader", {})
    if not rates or not ext:
        return {"skipped": "no throughput figures"}
    r18 = rates["resnet18"]
    rows, total_gpu, total_loader = {}, 0.0, 0.0
    for m, size in GRID["backbones"].items():
        rate = rates.get(m)
        if not rate:
            continue
        ext_m = ext * rate / r18  # extraction scales like training between backbones
        load = loader.get(f"cpu_autoaugment_{size}px_img_s") or float("inf")
        train_s = GRID["epochs"] * GRID["train"] / rate + compile_s
        bound_s = GRID["epochs"] * GRID["train"] / min(rate, load) + compile_s
        rest_s = GRID["epochs"] * GRID["test"] / ext_m + GRID["extracted"] / ext_m
        rows[m] = {"train_img_s": rate, "loader_img_s": load if load != float("inf") else None,
                   "hours_per_dataset_and_seed_gpu_bound": (train_s + rest_s) / 3600,
                   "hours_per_dataset_and_seed_with_loader": (bound_s + rest_s) / 3600}
        total_gpu += GRID["datasets"] * (train_s + rest_s) / 3600
        total_loader += GRID["datasets"] * (bound_s + rest_s) / 3600
    return {"compiled": compiled, "per_backbone": rows, "one_seed_hours_gpu_bound": total_gpu, "one_seed_hours_with_loader": total_loader,
            "three_seeds_hours_with_loader": 3 * total_loader}


def markdown(res):
    lines = [f"# GPU check: {res['machine']['device']} ({res['machine']['date']}, torch {res['machine']['torch']})", ""]
    t = res.get("throughput", {})
    if "training_resnet18" in t:
        r = t["training_resnet18"]
        lines += ["## Training throughput, ResNet18 @112 (batch 256)", "", "| setting | img/s | vs fp32 |", "|---|---|---|"]
        lines += [f"| {k} | {v:.0f} | {r['speedup'][k]:.2f}x |" for k, v in r["img_s"].items()]
        lines += ["", "bf16 + channels-last img/s: " + ", ".join(f"{m} {v:.0f}" for m, v in t["training_bf16"].items())]
        e = t["extraction_resnet18"]
        lines += [f"Extraction ResNet18 @112: pipeline {e['pipeline_img_s']:.0f} img/s vs bare forward "
                  f"{e['bare_img_s']:.0f} img/s (ratio {e['ratio']:.3f})", ""]
        c = t.get("compile_resnet18")
        if c:
            even = f"{c['break_even_images']:,.0f}" if c["break_even_images"] is not None else "never"
            lines += [f"torch.compile ({c['backend']}), training {c['model']} @{c['input_size']} batch {c['batch_size']} "
                      f"({c['amp']}): compiling {c['compile_s']:.1f} s, {c['compiled_img_s']:.0f} vs {c['eager_img_s']:.0f} "
                      f"img/s eager ({c['speedup']:.2f}x); pays for itself after {even} training images "
                      f"(--compile auto assumes {accel.COMPILE_BREAK_EVEN_IMAGES:,})", ""]
    if "cpu_autoaugment_112px_img_s" in res.get("loader", {}):
        lo = res["loader"]
        lines += ["## Input pipeline", "", "| | 112 px | 64 px |", "|---|---|---|",
                  f"| CPU workers ({lo['workers']}), Resize + AutoAugment + flip | {lo['cpu_autoaugment_112px_img_s']:.0f} | "
                  f"{lo['cpu_autoaugment_64px_img_s']:.0f} |",
                  f"| uint8 cache on the device, resize + flip there | {lo['device_cache_resize_flip_112px_img_s']:.0f} | "
                  f"{lo['device_cache_resize_flip_64px_img_s']:.0f} |",
                  f"| the GPU trains at (bf16 + channels-last) | {lo['gpu_consumes_img_s']['resnet18@112'] or 0:.0f} (ResNet18) | "
                  f"{lo['gpu_consumes_img_s']['wrn@64'] or 0:.0f} (WRN-40-2) |", ""]
    for name, r in res.get("real_data", {}).items():
        if isinstance(r, dict) and "table" in r:
            lines += [f"## {name}: {r['epochs']} epochs at {r['input_size']} px, test accuracy {100 * r['test_acc']:.2f} %, "
                      f"training {r['train_s']:.0f} s, extraction + every score {r['extract_and_score_s']:.0f} s", "",
                      r["table"], ""]
    sc = res.get("scale", {})
    if "KNN" in sc:
        lines += ["## ImageNet-scale scoring (1,281,167 x 2048 bank, 90,000 inputs)", "",
                  "| score | fit s | score s | peak RSS GiB | GPU peak GiB |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['fit_s']} | {v['score_s']} | {v['peak_rss_gib']} | {v.get('gpu_peak_gib', '–')} |"
                  for k, v in sc.items() if isinstance(v, dict) and "fit_s" in v]
        lines += [""]
    c = res.get("cpu_step", {})
    if "img_s" in c:
        lines += [f"## CPU demo training step ({c['cpu_capability']}, native bf16: {c['native_bf16']}, auto: "
                  f"{c['auto_choice'][0]})", "", ", ".join(f"{k} {v:.0f} img/s ({c['speedup'][k]:.2f}x)"
                                                           for k, v in c["img_s"].items()), ""]
    h = res.get("gpu_hours", {})
    if "per_backbone" in h:
        lines += ["## GPU-hours of the reproduction grid (CIFAR-10 and -100, 100 epochs, "
                  + ("compiled, as --compile auto trains them)" if h.get("compiled") else "not compiled)"), "",
                  "| backbone | train img/s | loader img/s | h per data set and seed (GPU-bound) | with the loader |",
                  "|---|---|---|---|---|"]
        lines += [f"| {m} | {v['train_img_s']:.0f} | {v['loader_img_s'] or 0:.0f} | "
                  f"{v['hours_per_dataset_and_seed_gpu_bound']:.2f} | {v['hours_per_dataset_and_seed_with_loader']:.2f} |"
                  for m, v in h["per_backbone"].items()]
        lines += ["", f"One seed of both tables: {h['one_seed_hours_with_loader']:.1f} GPU-hours "
                      f"({h['one_seed_hours_gpu_bound']:.1f} if the loader kept up); three seeds "
                      f"{h['three_seeds_hours_with_loader']:.1f}.", ""]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--data", default="./data", help="data root with FashionMNIST/raw/ (idx files)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="small shapes everywhere (a smoke test, e.g. on a CPU)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of the real-data runs")
    p.add_argument("--budget_s", type=float, default=570, help="skip sections that would end after this")
    a = p.parse_args()
    device = torch.device(a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget(a.budget_s)
    res = {"machine": {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                       "torch": torch.__version__, "cpus": os.cpu_count(), "platform": platform.platform(),
                       "date": time.strftime("%Y-%m-%d")},
           "registered_scores": scores.names()}
    quick = a.quick
    section(res, "throughput", budget, 10 if quick else 240, lambda: throughput(device, quick))
    gpu = default_rates(res.get("throughput", {}))[0]
    section(res, "loader", budget, 5 if quick else 45, lambda: loader_rates(a.data, device, quick, gpu))
    section(res, "real_data", budget, 20 if quick else 150, lambda: real_data(a.data, device, quick, out, a.epochs))
    section(res, "scale", budget, 5 if quick else 90, lambda: scale(device, quick))
    section(res, "cpu_step", budget, 5 if quick else 40, lambda: cpu_step(quick))
    res["gpu_hours"] = gpu_hours(res)
    (out / "gpu_check.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(res))
    print(markdown(res))
    print(f"total {time.perf_counter() - budget.start:.0f} s; written to {out}/gpu_check.json and gpu_check.md")


if __name__ == "__main__":
    main()
