"""A GPU that is there but unusable stops every entry point before any work (the probe is faked: an
NVIDIA driver is reported, torch sees no CUDA device), ``--device cpu`` runs on purpose, and every run
records what produced it (device name, torch, torchvision, CUDA and cuDNN versions)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import generate_stored_pattern
import test_score_ood_detection
import train_model
from ood.system import device

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "fashionmnist", "--model", "tiny_models:no_norm_net", "--batch_size", "20", "--workers", "0",
        "--amp", "off", "--quiet"]
TRAIN = ["--epochs", "1", "--lr", "0.05", "--augment", "none", "--checkpoint", "m.pt"]


@pytest.fixture
def fmnist(small_fmnist):
    return ARGS + ["--dataset_path", str(small_fmnist)]


@pytest.fixture
def unusable_gpu(monkeypatch):
    """An NVIDIA driver 470.82.01 is there; this torch sees no CUDA device."""
    monkeypatch.setattr(device, "nvidia_driver", lambda: "470.82.01")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_an_unusable_gpu_stops_every_entry_point(fmnist, unusable_gpu, capsys):
    for main, extra in ((train_model.main, TRAIN), (generate_stored_pattern.main, ["--ood", "iSUN"]),
                        (test_score_ood_detection.main, ["--ood", "iSUN"])):
        for asked in ([], ["--device", "cuda"]):
            with pytest.raises(SystemExit) as e:
                main(fmnist + extra + asked)
            assert e.value.code == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1, err
            assert "NVIDIA GPU (driver 470.82.01)" in err and f"torch {torch.__version__}" in err
            assert ("CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}") in err
            assert "--device cpu" in err and "pytorch.org" in err
    assert not Path("m.pt").exists() and not Path("stored_pattern").exists()  # before any work


def test_device_cpu_runs_on_purpose_and_the_environment_is_recorded(fmnist, unusable_gpu, capsys):
    train_model.main(fmnist + TRAIN + ["--device", "cpu"])
    out = capsys.readouterr().out
    ckpt = torch.load("m.pt", weights_only=True)
    env = ckpt["environment"]
    assert env["device"].startswith("cpu") and env["torch"] == torch.__version__
    assert set(env) == {"device", "torch", "torchvision", "cuda", "cudnn"} and env["cuda"] == torch.version.cuda
    assert f"torch {torch.__version__}" in out
    rows = test_score_ood_detection.main(fmnist + ["--device", "cpu", "--checkpoint", "m.pt", "--ood", "iSUN",
                                                   "--score", "MSP", "--results_dir", "r"])
    assert "device: cpu" in capsys.readouterr().out
    assert all(r["environment"] == env and r["train_environment"] == env for r in rows)
    saved = json.loads(Path("r/results.json").read_text())["rows"]
    assert saved[0]["environment"]["torchvision"] == env["torchvision"]
    caption = Path("r/results.md").read_text().splitlines()[0]
    assert f"on {env['device']}" in caption and f"scored on {device.describe(env)}" in caption


@pytest.mark.slow
def test_the_reproduce_scripts_stop_before_any_work(tmp_path):
    """Through the shell script: a fake nvidia-smi on the PATH reports a driver, CUDA_VISIBLE_DEVICES
    hides any real GPU from torch (on a GPU machine the real driver answers first, with the same result);
    the script stops before verifying the data or training."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 470.82.01\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": "",
           "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts/reproduce_cifar10.sh"), "--dataset_path", str(tmp_path / "d"),
                           "--out", str(tmp_path / "out"), "--epochs", "1"], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "NVIDIA GPU (driver" in proc.stderr and "verify_data.py" not in proc.stdout
    assert not (tmp_path / "out").exists()
    ok = subprocess.run([sys.executable, str(ROOT / "scripts/check_device.py"), "--device", "cpu", "--workers", "2"],
                        env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and ok.stdout.startswith("device: cpu"), ok.stderr


def test_the_driver_probe_reads_what_the_machine_says(tmp_path, monkeypatch):
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
                    "GCC version:  gcc version 12.2.0\n")
    monkeypatch.setattr(device, "NVIDIA_PROC", str(proc))
    assert device.nvidia_driver() == "550.54.15"
    monkeypatch.setattr(device, "NVIDIA_PROC", str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setattr(device.os.path, "exists", lambda p: False)
    assert device.nvidia_driver() is None
