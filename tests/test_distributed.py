"""torchrun with 2 CPU processes (gloo): DistributedDataParallel training and sharded feature
extraction give the results of a single-process run, and checkpoints move between the two."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import datagen
import generate_stored_pattern
import train_model
from ood.data import resolve_ood
from ood.training.trainer import Trainer

pytestmark = pytest.mark.slow  # see pytest.ini

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def torchrun(script, args, cwd):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}", "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo"}  # gloo on the loopback, whatever the host name resolves to
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture
def fmnist(tmp_path, monkeypatch):
    datagen.write_fashion_mnist(tmp_path / "data", n_train=80, n_test=20)
    datagen.write_image_folder(tmp_path / "data" / "ood", n=7)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def common(root, ckpt):
    return ["--dataset", "fashionmnist", "--model", "tiny_models:no_norm_net", "--dataset_path", str(root / "data"),
            "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet", "--augment", "none",
            "--lr", "0.05", "--epochs", "2", "--checkpoint", ckpt]


def test_ddp_training_matches_single_process(fmnist, monkeypatch):
    train_model.main(common(fmnist, "single.pt"))
    proc = torchrun("train_model.py", common(fmnist, "ddp.pt"), fmnist)
    assert "x 2 processes" in proc.stdout
    single = torch.load("single.pt", weights_only=True)
    ddp = torch.load("ddp.pt", weights_only=True)
    assert ddp["world_size"] == 2 and ddp["model"].keys() == single["model"].keys()  # no "module." prefix
    for k, v in single["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-5)
    assert [r["test_acc"] for r in ddp["log"]] == [r["test_acc"] for r in single["log"]]

    # a run interrupted after epoch 1 in one process resumes under torchrun to the same weights
    real_save = Trainer.save

    def save_then_die(self, *a):
        real_save(self, *a)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_model.main(common(fmnist, "part.pt"))
    monkeypatch.setattr(Trainer, "save", real_save)
    assert torch.load("part.pt", weights_only=True)["epoch"] == 1
    torchrun("train_model.py", common(fmnist, "part.pt") + ["--resume"], fmnist)
    resumed = torch.load("part.pt", weights_only=True)
    assert resumed["epoch"] == 2
    for k, v in single["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=1e-4, atol=1e-5)


def test_sharded_extraction_matches_single_process(fmnist):
    train_model.main(common(fmnist, "m.pt"))
    args = [a for a in common(fmnist, "m.pt") if a not in ("--augment", "none", "--lr", "0.05", "--epochs", "2")]
    args += ["--ood", f"mine={fmnist / 'data' / 'ood'}", "--score", "ReAct"]
    generate_stored_pattern.main(args + ["--stored_pattern_dir", "single"])
    torchrun("generate_stored_pattern.py", args + ["--stored_pattern_dir", "ddp"], fmnist)
    for name in ("train", "test", resolve_ood(f"mine={fmnist / 'data' / 'ood'}").key):
        a = torch.load(f"single/fashionmnist/tiny_models_no_norm_net/features/{name}.pt", weights_only=True)
        b = torch.load(f"ddp/fashionmnist/tiny_models_no_norm_net/features/{name}.pt", weights_only=True)
        assert a["fingerprint"] == b["fingerprint"]
        assert torch.equal(a["labels"], b["labels"])  # gathered in the original order
        torch.testing.assert_close(a["features"], b["features"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a["logits"], b["logits"], rtol=1e-5, atol=1e-6)
    assert list(Path("ddp/fashionmnist/tiny_models_no_norm_net/patterns").glob("react-*.pt"))
