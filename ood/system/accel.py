"""Speed: mixed precision, channels-last memory layout, torch.compile, and multi-process runs under
torchrun (DistributedDataParallel for training, sharded feature extraction).

``--amp auto`` (the default) picks the training precision from the hardware: bf16 autocast on CUDA and
on a CPU with native bf16 arithmetic (AVX512-BF16 or AMX, which torch reports), fp32 elsewhere, so a CPU
without it is not slowed down by emulated bf16 (14 times slower than fp32 on an AVX2 CPU, measured).
Training and feature extraction use channels-last tensors by default on CUDA and on CPUs (oneDNN's
convolutions are faster in that layout: the demo's training step 1.33x in fp32 on an AVX2 CPU, 1.38x in
fp32 and 2.65x with bf16 on an AVX512/AMX CPU; fp32 extraction on the AVX2 CPU 1.75x for the demo's CNN
and 1.24x for WRN-40-2, scripts/benchmark.py). Feature extraction runs in fp32 unless ``--amp`` asks
otherwise (scores are compared at the 0.1-point level); its features in the two layouts agree within
float round-off, so the layout is not part of a feature cache's key. fp16 uses a gradient scaler.
"""
import contextlib
import os

import torch
import torch.distributed as dist

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_CHOICES = ("auto", *AMP_DTYPES)


def cpu_has_native_bf16():
    """True if this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), as torch's own checks say."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(c()) for c in checks if c is not None)
    except Exception:
        return False


def amp_mode(flag, device, training):
    """(mode, why): the autocast mode a phase uses for ``--amp flag`` on ``device``."""
    if flag and flag != "auto":
        return flag, "--amp"
    if not training:
        return "off", "auto: feature extraction in fp32"
    if device.type == "cuda":
        return "bf16", "auto: CUDA"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16", "auto: this CPU has native bf16"
    return "off", f"auto: no native bf16 on this {device.type}"


def use_channels_last(flag, device):
    """``--channels_last`` if given; else on for CUDA and CPUs (faster there in every precision and
    phase measured), off on other devices (MPS, XPU, ...), where it was not measured."""
    if flag is not None:
        return flag
    return device.type in ("cuda", "cpu")


# --compile auto compiles training on CUDA when the run trains on at least this many images. From the
# H200 check (docs/gpu_check_h200.json, 2026-11-27): ResNet18 @112 in bf16 + channels-last trains at
# 7,551 img/s compiled against 5,788 eager, 40 us saved per image. That run did not time the compilation
# apart, but its throughput section took 51.5 s, 17.2 s of it timed steps, so compiling took at most
# 34 s, and at most 69 s with the recompilation for an epoch's smaller last batch: the compiled run is
# ahead after at most 1.7 million images. 2 million is 40 epochs of CIFAR: a run of the default 100
# epochs compiles, the demo's 2 epochs do not. (A faster backbone gains fewer seconds per image: WRN-40-2
# @64, eager at 10,127 img/s, would need about 3 million at the same 1.3x, so its runs of 2-3 million
# images may compile at a small loss; it was not measured compiled.) scripts/benchmark.py part 7 and scripts/gpu_check.py time
# the compilation itself (compile_s, break_even_images).
COMPILE_BREAK_EVEN_IMAGES = 2_000_000
COMPILE_CHOICES = ("auto", "on", "off")


def compile_mode(flag, device, training, images=0):
    """(compile?, why) for ``--compile flag``; ``images``: the training images of the whole run (epochs x
    images per epoch, per process; a resumed run decides as the uninterrupted one, so it resumes exactly).
    auto compiles only training on CUDA, for runs of at least COMPILE_BREAK_EVEN_IMAGES:
    on a CPU the compiled training step of the demo's CNN ran at 0.93x the eager one after 37 s of
    compiling (scripts/benchmark.py part 7, AVX2), and extraction is one pass, shorter than the compilation."""
    if flag in ("on", "off"):
        return flag == "on", "--compile"
    if flag != "auto":
        raise ValueError(f"--compile: auto, on or off, not {flag!r}")
    if device.type != "cuda":
        return False, f"auto: not on {device.type}, where it was measured slower"
    if not training:
        return False, "auto: extraction is one pass over the images, shorter than compiling"
    if not compile_available():
        return False, "auto: torch.compile cannot run here (no Triton, or Dynamo unsupported)"
    if images < COMPILE_BREAK_EVEN_IMAGES:
        return False, (f"auto: {images:,} training images, fewer than the {COMPILE_BREAK_EVEN_IMAGES:,} after "
                       f"which compiling pays for itself")
    return True, f"auto: {images:,} training images, compiling pays for itself after {COMPILE_BREAK_EVEN_IMAGES:,}"


def compile_available():
    """Whether torch.compile's default backend can generate CUDA kernels here: Dynamo supports this
    Python and Triton is installed (torch's CUDA wheels bring it; other builds may not)."""
    import importlib.util
    try:
        import torch._dynamo
        supported = getattr(torch._dynamo, "is_dynamo_supported", lambda: True)
        return bool(supported()) and importlib.util.find_spec("triton") is not None
    except Exception:
        return False


def loader_options(workers, device):
    """DataLoader settings that keep the model, not decoding and resizing, the bottleneck."""
    opts = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        opts["prefetch_factor"] = 4
    return opts


def threads_for(tasks, bytes_each=0, budget=2 << 30):
    """How many threads to share ``tasks`` independent numpy computations among (numpy releases the GIL in
    its loops): this process's torch threads (OMP_NUM_THREADS), at most one per task, and no more than
    hold ``bytes_each`` apiece within ``budget`` bytes (2 GiB): a machine of many cores must not multiply
    the memory of the statistics of large sets by its core count."""
    n = min(tasks, torch.get_num_threads())
    if bytes_each:
        n = min(n, budget // bytes_each)
    return max(1, n)


def autocast(device, mode):
    dtype = AMP_DTYPES[mode]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def prepare(model, device, channels_last):
    """Move ``model`` to ``device`` in the memory layout asked for."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def to_input(x, device, channels_last):
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# -- torchrun ------------------------------------------------------------------------------------------
def world():
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup(device_flag):
    """Join the process group when started by torchrun (WORLD_SIZE > 1): nccl with one GPU per process
    (cuda:LOCAL_RANK), or gloo on CPU. Returns the device this process uses, or None outside torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    use_cuda = torch.cuda.is_available() and (device_flag is None or device_flag.startswith("cuda"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def teardown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier():
    if world()[1] > 1:
        dist.barrier()


def all_reduce_sum(values, device):
    """Sum a list of numbers over all processes."""
    if world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_in_order(part, n):
    """Rank r holds items r, r + W, r + 2W, ... of a set of n items (a dict of tensors with the item
    index first); every rank receives all n items in their original order."""
    rank, size = world()
    if size == 1:
        return part
    parts = [None] * size
    dist.all_gather_object(parts, {k: v.cpu() for k, v in part.items()})
    out = {}
    for k in part:
        first = parts[0][k]
        full = torch.empty((n, *first.shape[1:]), dtype=first.dtype)
        for r in range(size):
            full[r::size] = parts[r][k]
        out[k] = full
    return out
