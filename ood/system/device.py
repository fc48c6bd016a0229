"""The device a run uses, and what produced its numbers.

GPU servers usually come with a CUDA driver and a PyTorch build chosen by their admins. A torch wheel
for a newer CUDA than the driver supports, or a CPU-only build, makes ``torch.cuda.is_available()``
False on a machine that has an NVIDIA GPU; "cuda if available" would then start a 100-epoch run on the
CPU with one line, "device cpu", among the log. ``resolve_device`` stops such a run before any work
with one line that names the driver, torch's CUDA version and the fix; ``--device cpu`` runs on the
CPU on purpose. ``environment`` is what every run prints and records (checkpoint, result rows) so that a
table says what produced it: the device's name, torch, torchvision, CUDA and cuDNN versions.
"""
import functools
import os
import platform
import re
import shutil
import subprocess

import torch
import torchvision

from ood.errors import UserError

NVIDIA_PROC = "/proc/driver/nvidia/version"
TORCH_INSTALL = "https://pytorch.org/get-started/locally/"


def nvidia_driver():
    """The NVIDIA driver's version when this machine has an NVIDIA GPU (the kernel module's version file,
    else ``nvidia-smi``, else a /dev/nvidia0 device node: "unknown"), None otherwise."""
    try:
        with open(NVIDIA_PROC) as f:
            m = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+([0-9][0-9.]*)", f.read())
        if m:
            return m.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20)
            versions = out.stdout.split()
            if out.returncode == 0 and versions:
                return versions[0]
        except (OSError, subprocess.SubprocessError):
            pass
        return "unknown"
    return "unknown" if os.path.exists("/dev/nvidia0") else None


def unusable_gpu_message(driver):
    """Why torch cannot use the GPU that is there, and the fix, on one line."""
    build = (f"torch {torch.__version__} is a CPU-only build" if torch.version.cuda is None else
             f"torch {torch.__version__} was built for CUDA {torch.version.cuda}, which this driver does not "
             f"support (it needs a newer driver)")
    return (f"this machine has an NVIDIA GPU (driver {driver}) but PyTorch cannot use it: {build}. Install the "
            f"torch build for your driver's CUDA ({TORCH_INSTALL}), then check it with python -c \"import torch; "
            f"print(torch.version.cuda, torch.cuda.is_available())\"; or pass --device cpu to run on the CPU "
            f"on purpose.")


def check_usable(name):
    """Stop when ``--device`` is cuda or not given, torch sees no CUDA device, and an NVIDIA GPU is there
    all the same (see the module docstring). ``--device cpu`` is never stopped."""
    if (name is None or name.startswith("cuda")) and not torch.cuda.is_available():
        driver = nvidia_driver()
        if driver is not None:
            raise UserError(unusable_gpu_message(driver))


def resolve_device(name):
    """``--device`` as a torch.device. None means cuda when torch can use it, else the CPU, unless an
    NVIDIA GPU is present that torch cannot use: that stops the run (``check_usable``)."""
    check_usable(name)
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device name (use cpu, cuda or cuda:N).") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: this project runs on cpu or cuda devices.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for, but this PyTorch sees no CUDA device. Use --device cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                        f"cuda:0..cuda:{torch.cuda.device_count() - 1}.")
    return dev


@functools.lru_cache(maxsize=None)
def cpu_name():
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device):
    """What produced a run's numbers: the device's name and the versions of torch, torchvision, CUDA and
    cuDNN (None where torch has none). Plain values, for checkpoints and result rows."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu: {cpu_name()}"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"device": name, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "cuda": torch.version.cuda, "cudnn": cudnn}


def describe(env):
    """An environment on one line, as the scripts print it."""
    extra = ", ".join(f"{k} {env[k]}" for k in ("cuda", "cudnn") if env.get(k))
    return f"{env['device']}; torch {env['torch']}, torchvision {env['torchvision']}" + (f", {extra}" if extra else "")
