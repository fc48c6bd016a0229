"""Speed: mixed precision, channels-last memory layout, torch.compile, and multi-process runs under
torchrun (DistributedDataParallel for training, sharded feature extraction).

Defaults (``--amp``/``--channels_last`` left unset): on CUDA, training runs in bf16 autocast with
channels-last tensors; feature extraction runs in fp32 (scores are compared at the 0.1-point level) with
channels-last. On CPU everything runs in fp32, contiguous. fp16 uses a gradient scaler.
"""
import contextlib
import os

import torch
import torch.distributed as dist

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_mode(args, device, training):
    """The autocast mode actually used: the flag, or the default for this device and phase."""
    if getattr(args, "amp", None):
        return args.amp
    return "bf16" if training and device.type == "cuda" else "off"


def channels_last(args, device):
    flag = getattr(args, "channels_last", None)
    return device.type == "cuda" if flag is None else flag


def autocast(device, mode):
    dtype = AMP_DTYPES[mode]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def prepare(model, device, args):
    """Move ``model`` to ``device`` in the memory layout asked for (channels-last by default on CUDA)."""
    model = model.to(device)
    if channels_last(args, device):
        model = model.to(memory_format=torch.channels_last)
    return model


def to_input(x, device, args):
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last(args, device) else x


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
