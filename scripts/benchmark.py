#!/usr/bin/env python3
"""Speed benchmark of the pipeline: every figure is a ratio of two timings measured side by side in this
one run, so it means the same on a busy machine. Writes a JSON file and prints a summary.

1. extraction: feature-extraction throughput of the pipeline (DataLoader + transform + forward + copy
   to the CPU, ``ood.cache.features.extract``) vs the bare model forward on the same, already transformed
   tensors, in the layout the device uses by default, for the demo's CNN at 28 px (Fashion-MNIST shape),
   ResNet18 at 112 px and WRN-40-2 at 64 px (CIFAR shape): the median ratio of pairs timed back to
   back (target >= 0.95);
2. scoring: time to compute the paper's six scores for an ID test set and nine OOD sets from cached
   features of CIFAR shape vs one score (MSP), both alone and including the one backbone pass over the
   images that the cache stands for (target <= 1.3 for the latter); the whole extended table (every
   registered score, fitted and scored) against that backbone pass (target < 1); the intervals of that
   table (every row's bootstrap and DeLong) against fitting and scoring it (target < 1); and the number of
   backbone passes per full table against the reference's structure (one script run per score, each
   extracting its own features);
3. HE: scoring throughput in GFLOP/s vs a plain matrix multiply of the same shape (target >= 0.5);
4. precision: bf16 vs fp32 extraction speed (autocast on this device); on a GPU also training
   throughput with bf16 + channels-last (+ compile) vs the reference's fp32 setting;
5. the CPU demo's training step (small CNN, Fashion-MNIST size, batch 128) in fp32, bf16, channels-last
   and bf16 + channels-last, side by side, with the choice ``--amp auto`` makes on this CPU; and its
   training loop (kept loader workers, per-image augmentation, the batch normalised) vs the bare step;
6. fp32 feature extraction on the CPU in channels-last vs contiguous memory (the demo's CNN, WRN-40-2),
   and how far the two layouts' features differ;
7. torch.compile in training (the demo's CNN on a CPU, ResNet18 @112 in bf16 on CUDA): the compile time,
   the compiled vs eager step rate side by side, and the training images after which it pays for itself.

    python3 scripts/benchmark.py --json results/benchmark.json [--quick] [--device cuda]
"""
import argparse
import contextlib
import copy
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402
from benchtools import paired_ratio, timed_pair  # noqa: E402
import scores  # noqa: E402
from ood.system import accel  # noqa: E402
from ood.system.device import cpu_name  # noqa: E402
from ood.data import get_id_set, test_transform, train_transform  # noqa: E402
from ood.data.batches import split  # noqa: E402
from ood.evaluation.protocols import (DEFAULT_RESAMPLES, bootstrap_distribution, evaluate, interval_fields,  # noqa: E402
                            plan_for, resampled_ids)
from ood.evaluation.uncertainty import Bootstrap  # noqa: E402
from ood.data.package_sets import ArrayImages  # noqa: E402
from ood.cache.features import extract  # noqa: E402
from ood.params import Context  # noqa: E402
from scores.hopfield import lse_scores  # noqa: E402


# the backbones whose extraction is timed: (name, ID set whose images and transform it reads, input size)
EXTRACTION_CASES = {"cnn": ("fashionmnist", 28), "resnet18": ("cifar10", 112), "wrn": ("cifar10", 64)}


def bench_extraction(device, model_name, size, n, batch, workers, amp="off", with_bf16=False, repeats=5,
                     id_name="cifar10"):
    """Pipeline extraction (``ood.cache.features.extract`` as FeatureStore runs it: the evaluation
    transform split into its per-image and per-batch stages, in the memory layout this device uses by
    default) vs the bare forward over the same images already transformed, in that layout; and the
    pipeline in fp32 vs bf16. The images are random uint8 arrays of the ID set's shape (28x28 gray for
    Fashion-MNIST, 32x32 RGB for CIFAR), resized by the transform where the input size differs."""
    rng = np.random.default_rng(0)
    id_set = get_id_set(id_name)
    shape = (n, 28, 28) if id_set.channels == 1 else (n, 32, 32, 3)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    stages = split(test_transform(id_set, size))
    ds = ArrayImages(images, stages.image)
    cl = accel.use_channels_last(None, device)
    model = models.build_model(model_name, 10, id_set.channels).to(device).eval()
    if cl:
        model = model.to(memory_format=torch.channels_last)
    # the transformed images, in the model's layout, on the CPU as a loader would hand them over
    whole = ArrayImages(images, test_transform(id_set, size))  # the transform per image, as before the split
    tensors = torch.cat([x for x, _ in torch.utils.data.DataLoader(whole, batch_size=1024, num_workers=workers)])
    if cl:
        tensors = tensors.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def bare():
        for i in range(0, n, batch):
            x = tensors[i:i + batch].to(device, non_blocking=True)
            with accel.autocast(device, amp):
                f = model.forward_features(x)
                out = model.fc(f)
            f.float().cpu(), out.float().cpu()

    def pipeline(mode=amp):
        extract(model, ds, batch, device, workers, quiet=True, amp=mode, channels_last=cl, stages=stages)

    t_bare, t_pipe, ratio = paired_ratio(bare, pipeline, repeats=repeats)
    out = {"model": model_name, "id_set": id_name, "input_size": size, "images": n, "batch_size": batch,
           "workers": workers, "amp": amp, "channels_last": cl, "bare_img_s": n / t_bare,
           "pipeline_img_s": n / t_pipe, "ratio": ratio, "ratio_of_fastest": t_bare / t_pipe, "repeats": repeats,
           "target": ">= 0.95"}
    if with_bf16 and (device.type == "cuda" or accel.cpu_has_native_bf16()):
        t32, t16 = timed_pair(lambda: pipeline("off"), lambda: pipeline("bf16"))
        out["bf16_vs_fp32_pipeline_speed"] = t32 / t16
    elif with_bf16:
        out["bf16_vs_fp32_pipeline_speed"] = None  # emulated bf16 (no native support): not worth timing
    return out


# the OOD sets of a CIFAR table, as declared in ood/data/paper.py (the paper's nine)
N_OOD = len(get_id_set("cifar10").default_ood)


def fake_cache(n_train, n_test, n_ood, d=512, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(classes, d, generator=g)

    W = centres - centres.mean(0)  # a head that mostly classifies the ID features right

    def make(n, ood=False):
        y = torch.randint(classes, (n,), generator=g)
        f = (torch.rand(n, d, generator=g) + (0 if ood else 2 * centres[y])).relu()
        return {"features": f, "logits": f @ W.T, "labels": y}
    return make(n_train), make(n_test), {f"ood{i}": make(n_ood, True) for i in range(N_OOD)}, {"weight": W, "bias": torch.zeros(classes)}


def bench_scoring(quick, extraction_img_s, device):
    n_train, n_test, n_ood = (5000, 1000, 1000) if quick else (50000, 10000, 10000)
    train, test, oods, head = fake_cache(n_train, n_test, n_ood)
    ctx = Context(dataset="cifar10", model=models.get_spec("resnet18"), feature_dim=512, num_classes=10)
    built = {cls.name: cls(ctx=ctx, device=device) for cls in scores.registered()}
    names = [c.name for c in scores.paper_scores()]
    states, t_fit = {}, {}

    def fit(which):
        for name in which:
            s = built[name]
            t0 = time.perf_counter()
            states[name] = s.fit(train, head) if s.needs_fit() else {}
            t_fit[name] = time.perf_counter() - t0

    values = {}  # the extended table's per-sample scores, for its intervals below
    row_metrics = {}  # ... and each row's metrics, which its intervals are centred on

    def score_all(which):
        for name in which:
            s = built[name]
            ids = s.score(test, states[name], head).numpy()
            values[name] = {"id": ids}
            for o, f in oods.items():
                values[name][o] = s.score(f, states[name], head).numpy()
                row_metrics[(name, o)] = evaluate(ids, values[name][o], o)

    fit(names)
    t_one, t_all = timed_pair(lambda: score_all(["MSP"]), lambda: score_all(names), 1)
    # the whole extended table from the cache: every registered score fitted and scored, once
    t0 = time.perf_counter()
    fit(list(built))
    score_all(list(built))
    t_extended = time.perf_counter() - t0
    # ... and every row's intervals: the stratified bootstrap (the default resamples) and DeLong, timed after it
    boot = Bootstrap(200 if quick else DEFAULT_RESAMPLES)  # --quick: a smoke test of the path
    plan = plan_for("full", None, n_test)
    t0 = time.perf_counter()
    for name in built:
        sides = resampled_ids([values[name]["id"]], boot)
        for o in oods:
            dist = bootstrap_distribution(sides, [values[name][o]], o, plan, boot)
            interval_fields(dist, boot, row_metrics[(name, o)], [values[name]["id"]], [values[name][o]])
    t_intervals = time.perf_counter() - t0
    n_images = n_train + n_test + N_OOD * n_ood
    t_pass = n_images / extraction_img_s["resnet18"] if extraction_img_s else None
    # passes over an image set per full table: ours once per set; the reference runs one script per
    # score, each extracting the ID test set and the OOD sets, plus the training set when it fits
    ours = 1 + 1 + N_OOD
    reference = sum(1 + N_OOD + (1 if built[n].needs_fit() else 0) for n in names)
    return {"shape": {"train": n_train, "test": n_test, "ood_sets": N_OOD, "per_ood": n_ood, "d": 512},
            "scores": names, "fit_s": t_fit, "one_score_s": t_one, "six_scores_s": t_all,
            "ratio_scoring_only": t_all / t_one,
            "backbone_pass_s": t_pass, "backbone_img_s": extraction_img_s["resnet18"] if t_pass else None,
            "ratio_with_backbone_pass": (t_pass + t_all) / (t_pass + t_one) if t_pass else None,
            "target": "<= 1.3 (with the pass)",
            "extended": {"scores": list(built), "fit_and_score_s": t_extended,
                         "ratio_to_backbone_pass": t_extended / t_pass if t_pass else None, "target": "< 1",
                         "intervals_s": t_intervals, "resamples": boot.resamples, "rows": len(built) * len(oods),
                         "score_only_s": t_extended - sum(t_fit.values()),
                         "ratio_intervals_to_scoring": t_intervals / t_extended,
                         "ratio_intervals_to_score_only": t_intervals / (t_extended - sum(t_fit.values())),
                         "intervals_target": "< 1"},
            "backbone_passes_per_table": {"ours": ours, "reference": reference, "ratio": reference / ours}}


def bench_he(device, quick):
    nq, npat, d = (2000, 2000, 512) if quick else (10000, 5000, 512)
    g = torch.Generator().manual_seed(0)
    q, p = torch.rand(nq, d, generator=g).to(device), torch.rand(npat, d, generator=g).to(device)
    flops = 2 * nq * npat * d
    t_he, t_mm = timed_pair(lambda: lse_scores(q, p, 0.01), lambda: q @ p.T)
    return {"queries": nq, "patterns": npat, "d": d, "he_gflops": flops / t_he / 1e9,
            "matmul_gflops": flops / t_mm / 1e9, "ratio": t_mm / t_he, "target": ">= 0.5"}


TRAINING_CONFIGS = [("fp32 (reference)", "off", False, False), ("bf16+channels_last", "bf16", True, False),
                    ("bf16+channels_last+compile", "bf16", True, True)]
CPU_CONFIGS = [("fp32", "off", False, False), ("bf16", "bf16", False, False),
               ("fp32+channels_last", "off", True, False), ("bf16+channels_last", "bf16", True, False)]


def bench_training(device, model_name="resnet18", size=112, batch=256, steps=50, configs=TRAINING_CONFIGS,
                   in_channels=3, repeats=1):
    """Training-step throughput (img/s) of ``model_name`` at ``size`` for each (name, amp, channels-last,
    compile) configuration, on the same random batch; the configurations run alternately ``repeats``
    times and the best rate of each is kept."""
    x = torch.randn(batch, in_channels, size, size, device=device)
    y = torch.randint(10, (batch,), device=device)
    steppers = {}
    for name, amp, cl, comp in configs:
        torch.manual_seed(0)
        model = models.build_model(model_name, 10, in_channels).to(device)
        xx = x
        if cl:
            model, xx = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        net = torch.compile(model) if comp else model
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(net=net, xx=xx, opt=opt, amp=amp):
            with accel.autocast(device, amp):
                loss = F.cross_entropy(net(xx).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for _ in range(3):  # warm-up (and compilation)
            step()
        steppers[name] = step
    out = {name: 0.0 for name in steppers}
    for _ in range(repeats):
        for name, step in steppers.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            sync(device)
            out[name] = max(out[name], batch * steps / (time.perf_counter() - t0))
    base = out[configs[0][0]]
    return {"model": model_name, "input_size": size, "batch_size": batch, "img_s": out,
            "speedup": {k: v / base for k, v in out.items()}}


class _Labelled(ArrayImages):
    """ArrayImages with a label per image (training needs one)."""

    def __init__(self, images, labels, transform):
        super().__init__(images, transform)
        self.labels = labels

    def __getitem__(self, i):
        return super().__getitem__(i)[0], int(self.labels[i])


def bench_training_loop(device, n, batch=128, workers=2, epochs=2):
    """The demo's training loop as train_model.py runs it on this device (a DataLoader with ``workers``
    kept processes, Resize + Grayscale + RandomHorizontalFlip per image, the batch normalised on the
    device, the SGD step in the precision and layout --amp auto and the default choose) vs the bare
    step on already normalised tensors of the same shape, side by side: what the input pipeline costs
    training. Random 28x28 gray images with random labels, ``n`` of them per epoch."""
    rng = np.random.default_rng(0)
    id_set = get_id_set("fashionmnist")
    images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)
    stages = split(train_transform(id_set, 28, "flip"))
    amp, cl = accel.amp_mode("auto", device, True)[0], accel.use_channels_last(None, device)
    model = accel.prepare(models.build_model("cnn", 10, 1), device, cl)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(_Labelled(images, labels, stages.image), batch_size=batch, shuffle=True,
                                         persistent_workers=workers > 0, **accel.loader_options(workers, device))
    x0 = accel.to_input(torch.randn(batch, 1, 28, 28), device, cl)
    y0 = torch.from_numpy(labels[:batch]).to(device)

    def step(x, y):
        with accel.autocast(device, amp):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    def bare():
        for _ in range(epochs * ((n + batch - 1) // batch)):
            step(x0, y0)

    def pipeline():
        for _ in range(epochs):
            for x, y in loader:
                step(stages.finish(x, device, cl), y.to(device, non_blocking=True))

    model.train()
    t_bare, t_pipe, ratio = paired_ratio(bare, pipeline, repeats=3)
    return {"model": "cnn", "input_size": 28, "batch_size": batch, "workers": workers, "amp": amp,
            "channels_last": cl, "images": epochs * n, "bare_img_s": epochs * n / t_bare,
            "pipeline_img_s": epochs * n / t_pipe, "ratio": ratio, "ratio_of_fastest": t_bare / t_pipe}


def print_training_loop(r):
    print(f"5. the demo's training loop (cnn@28, batch {r['batch_size']}, {r['workers']} workers, {r['amp']}"
          f"{', channels-last' if r['channels_last'] else ''}): {r['pipeline_img_s']:.0f} img/s vs the bare step "
          f"{r['bare_img_s']:.0f} img/s (fastest of 3) -> ratio {r['ratio']:.3f}, the median of 3 pairs run back to back")


def bench_cpu_extraction(quick):
    """fp32 feature extraction on the CPU in channels-last vs contiguous (NCHW) memory, side by side: the
    demo's CNN at 28 px (grayscale, Fashion-MNIST size) and WRN-40-2 at 32 px; and how far the features of
    the two layouts differ (float round-off)."""
    out = {}
    rng = np.random.default_rng(0)
    shapes = (("cnn", 28, 1),) if quick else (("cnn", 28, 1), ("wrn", 32, 3))  # --quick: a smoke test
    for name, size, channels in shapes:
        n = 64 if quick else 4096
        x = torch.from_numpy(rng.random((n, channels, size, size), dtype=np.float32))
        model = models.build_model(name, 10, in_channels=channels).eval()
        layouts = {False: model, True: copy.deepcopy(model).to(memory_format=torch.channels_last)}

        def run(cl):
            m = layouts[cl]
            with torch.inference_mode():
                feats = []
                for i in range(0, n, 256):
                    xb = x[i:i + 256]
                    feats.append(m.forward_features(xb.contiguous(memory_format=torch.channels_last) if cl else xb))
            return torch.cat(feats)

        t_plain, t_cl = timed_pair(lambda: run(False), lambda: run(True))
        diff = (run(True) - run(False)).abs().max().item()
        out[f"{name}@{size}"] = {"images": n, "contiguous_img_s": n / t_plain, "channels_last_img_s": n / t_cl,
                                 "speedup": t_plain / t_cl, "max_abs_feature_difference": diff}
    return out


def bench_compile(device, model_name, size, batch, in_channels=3, steps=20, amp="off", channels_last=True,
                  backend="inductor"):
    """What ``--compile`` costs and saves in training: the seconds torch.compile spends before the first
    step (the full batch, then the smaller last batch of an epoch, which compiles again), beyond the
    eager steps on the same shapes; the eager and compiled step rates, timed side by side; and the
    training images after which the compiled run is ahead (the break-even that --compile auto uses).
    ``backend="eager"`` (Dynamo's capture alone) is the smoke test of --quick on a CPU."""
    x = torch.randn(batch, in_channels, size, size, device=device)
    y = torch.randint(10, (batch,), device=device)
    last = max(1, batch // 3)  # an epoch's last batch is smaller
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch._dynamo.reset()

    def stepper(compiled):
        torch.manual_seed(0)
        model = models.build_model(model_name, 10, in_channels).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        net = torch.compile(model, backend=backend) if compiled else model
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(n=batch):
            with accel.autocast(device, amp):
                loss = F.cross_entropy(net(x[:n]).float(), y[:n])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    warm = stepper(False)  # the device's own first-call costs (CUDA context, kernel selection), untimed
    warm(), warm(last)
    first = {}
    for compiled in (False, True):
        step = stepper(compiled)
        sync(device)
        t0 = time.perf_counter()
        with cold_compile_caches():
            step(), step(last)
        sync(device)
        first[compiled] = time.perf_counter() - t0, step
    eager, comp = first[False][1], first[True][1]

    def run(step):
        return lambda: [step() for _ in range(steps)]
    t_eager, t_comp = timed_pair(run(eager), run(comp), repeats=2)
    r_eager, r_comp = batch * steps / t_eager, batch * steps / t_comp
    compile_s = max(0.0, first[True][0] - first[False][0])
    saved = 1 / r_eager - 1 / r_comp  # seconds saved per training image
    return {"model": model_name, "input_size": size, "batch_size": batch, "amp": amp, "backend": backend,
            "compile_s": compile_s,
            "eager_img_s": r_eager, "compiled_img_s": r_comp, "speedup": r_comp / r_eager,
            "break_even_images": compile_s / saved if saved > 0 else None}


def cold_compile_caches():
    """Inductor's on-disk caches off, so the time is a first run's: a later run of the same model and
    shapes on the same machine finds its kernels cached and compiles in seconds."""
    import torch._inductor.config as inductor_config
    if not hasattr(inductor_config, "force_disable_caches"):
        return contextlib.nullcontext()
    return inductor_config.patch(force_disable_caches=True)


def compile_figures(device, quick):
    """Part 7 on ``device``: the demo's CNN at 28 px and batch 128 in fp32 on a CPU (its --amp auto
    there without native bf16), ResNet18 at 112 px and batch 128 in bf16 on CUDA."""
    if device.type == "cuda":
        return bench_compile(device, "resnet18", 112, 128, amp="bf16", steps=10 if quick else 50)
    amp = accel.amp_mode("auto", device, True)[0]
    return bench_compile(device, "cnn", 28, 16 if quick else 128, in_channels=1, steps=2 if quick else 20, amp=amp,
                         backend="eager" if quick else "inductor")


def print_compile(c):
    even = (f"pays for itself after {c['break_even_images']:,.0f} training images" if c["break_even_images"] is not None
            else "never pays for itself (no faster than eager)")
    print(f"7. --compile ({c['backend']}), training {c['model']}@{c['input_size']} ({c['amp']}): compiling took {c['compile_s']:.1f} s; "
          f"{c['compiled_img_s']:.0f} img/s compiled vs {c['eager_img_s']:.0f} eager ({c['speedup']:.2f}x); {even}")


def print_extraction(res):
    print(f"device: {res['machine']['device']} ({res['machine']['cpu']}, {res['machine']['cpus']} threads)")
    for m, r in res["extraction"].items():
        print(f"1. extraction {m}@{r['input_size']} (batch {r['batch_size']}, workers {r['workers']}, "
              f"{'channels-last' if r['channels_last'] else 'contiguous'}): pipeline {r['pipeline_img_s']:.1f} img/s "
              f"vs bare forward {r['bare_img_s']:.1f} img/s (fastest of {r['repeats']}) -> ratio {r['ratio']:.3f}, the "
              f"median of {r['repeats']} pairs run back to back (target >= 0.95)")


def print_scoring(s):
    line = f"2. six scores vs one from the cache: {s['six_scores_s']:.2f} s vs {s['one_score_s']:.2f} s " \
           f"(ratio {s['ratio_scoring_only']:.2f})"
    if s["backbone_pass_s"]:
        line += (f"; with the one backbone pass ({s['backbone_pass_s']:.0f} s at {s['backbone_img_s']:.1f} img/s): "
                 f"ratio {s['ratio_with_backbone_pass']:.3f} (target <= 1.3); backbone passes per table: "
                 f"{s['backbone_passes_per_table']['ours']} vs reference {s['backbone_passes_per_table']['reference']}")
    print(line)
    x = s["extended"]
    print(f"   extended table ({len(x['scores'])} scores, fitted and scored from the cache): {x['fit_and_score_s']:.1f} s"
          + (f" = {x['ratio_to_backbone_pass']:.4f} of one backbone pass (target < 1)" if x["ratio_to_backbone_pass"] else ""))
    print(f"   its intervals ({x['rows']} rows, {x['resamples']} stratified-bootstrap resamples and DeLong each): "
          f"{x['intervals_s']:.1f} s = {x['ratio_intervals_to_scoring']:.2f} of fitting and scoring it, "
          f"{x['ratio_intervals_to_score_only']:.2f} of scoring it alone ({x['score_only_s']:.1f} s; target < 1)")


def print_cpu_extraction(r):
    for k, v in r.items():
        print(f"6. CPU fp32 extraction {k}: channels-last {v['channels_last_img_s']:.0f} img/s vs contiguous "
              f"{v['contiguous_img_s']:.0f} img/s ({v['speedup']:.2f}x); features differ by at most "
              f"{v['max_abs_feature_difference']:.2e}")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True)
    p.add_argument("--device", default=None)
    p.add_argument("--quick", action="store_true", help="smaller shapes (a smoke test)")
    p.add_argument("--scoring_only", action="store_true",
                   help="only part 2 without its backbone-pass ratios: scoring from the cache and the intervals")
    p.add_argument("--extraction_only", action="store_true",
                   help="only part 1: extraction through the pipeline vs the bare forward (CNN, ResNet18, WRN-40-2)")
    p.add_argument("--training_only", action="store_true",
                   help="only the demo's training loop vs its bare step (part 5), on the CPU or --device")
    p.add_argument("--cpu_extraction_only", action="store_true",
                   help="only part 6: fp32 extraction on the CPU in channels-last vs contiguous memory")
    p.add_argument("--compile_only", action="store_true",
                   help="only part 7: what torch.compile costs and saves in training the demo's CNN on the CPU "
                        "(ResNet18 @112 with --device cuda)")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    res = {"machine": {"platform": platform.platform(), "cpu": cpu_name(), "native_bf16": accel.cpu_has_native_bf16(),
                       "cpus": torch.get_num_threads(), "torch": torch.__version__,
                       "device": torch.cuda.get_device_name(device) if gpu else "cpu"},
           "method": "each ratio compares two timings taken side by side in this run: the fastest of the repeats "
                     "of each, or (extraction, the training loop) the median ratio of pairs timed back to back"}
    if a.training_only:
        res["training_loop"] = bench_training_loop(device, 1024 if a.quick else 8192)
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
        print_training_loop(res["training_loop"])
        return
    if a.cpu_extraction_only:
        res["cpu_extraction"] = bench_cpu_extraction(a.quick)
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
        print_cpu_extraction(res["cpu_extraction"])
        return
    if a.compile_only:
        res["compile"] = compile_figures(device, a.quick)
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
        print_compile(res["compile"])
        return
    if a.scoring_only:
        res["scoring"] = bench_scoring(a.quick, None, device)
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
        print_scoring(res["scoring"])
        print(f"written to {a.json}")
        return
    n = (64 if a.quick else 128) if not gpu else 4096
    per_model = {"cnn": (16 if a.quick else 64) * n, "resnet18": n, "wrn": 2 * n}  # a few seconds a run each on a CPU
    res["extraction"] = {}
    for m, (id_name, s) in EXTRACTION_CASES.items():
        if a.quick and not gpu:
            s = 28 if m == "cnn" else 32
        res["extraction"][m] = bench_extraction(device, m, s, per_model[m], 64 if not gpu else 256, 0 if not gpu else 8,
                                                with_bf16=m == "wrn", id_name=id_name, repeats=2 if a.quick else 5)
    if a.extraction_only:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
        print_extraction(res)
        return
    img_s = {m: r["pipeline_img_s"] for m, r in res["extraction"].items()}
    res["scoring"] = bench_scoring(a.quick, img_s, device)
    res["he"] = bench_he(device, a.quick)
    if gpu:
        res["training"] = bench_training(device, steps=20 if a.quick else 50)
    # the CPU demo's training step (Fashion-MNIST CNN at 28 px, batch 128): what --amp auto chooses from
    cpu = torch.device("cpu")
    # (emulated bf16 is slow on a CPU without it: fewer steps there keep the benchmark short)
    steps = 1 if a.quick else (10 if accel.cpu_has_native_bf16() else 2)
    res["cpu_demo_training"] = bench_training(cpu, "cnn", 28, 16 if a.quick else 128, steps, CPU_CONFIGS, 1,
                                              repeats=1 if a.quick else 2)
    res["cpu_demo_training"]["auto_choice"] = list(accel.amp_mode("auto", cpu, True))
    res["cpu_demo_training"]["native_bf16"] = accel.cpu_has_native_bf16()
    res["training_loop"] = bench_training_loop(cpu, 1024 if a.quick else 8192)
    res["cpu_extraction"] = bench_cpu_extraction(a.quick)
    res["compile"] = compile_figures(device, a.quick)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1) + "\n")

    e, s, h = res["extraction"], res["scoring"], res["he"]
    print_extraction(res)
    print_scoring(s)
    print(f"3. HE: {h['he_gflops']:.1f} GFLOP/s vs matmul {h['matmul_gflops']:.1f} GFLOP/s -> ratio {h['ratio']:.2f} "
          f"(target >= 0.5)")
    ratio = e["wrn"]["bf16_vs_fp32_pipeline_speed"]
    print("4. bf16 vs fp32 extraction (wrn): " + (f"{ratio:.2f}x" if ratio else "not timed (no native bf16)"))
    if gpu:
        for k, v in res["training"]["speedup"].items():
            print(f"   training resnet18@112 {k}: {res['training']['img_s'][k]:.0f} img/s ({v:.2f}x)")
    c = res["cpu_demo_training"]
    print(f"5. CPU training step of the demo CNN (native bf16: {c['native_bf16']}; --amp auto: {c['auto_choice'][0]}): "
          + ", ".join(f"{k} {v:.0f} img/s ({c['speedup'][k]:.2f}x)" for k, v in c["img_s"].items()))
    print_training_loop(res["training_loop"])
    print_cpu_extraction(res["cpu_extraction"])
    print_compile(res["compile"])
    print(f"written to {a.json}")


if __name__ == "__main__":
    main()
