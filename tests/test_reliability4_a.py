"""Reliability, round 4 (a): bad input a careful user can give, through the scripts.

- A data file is never unpickled before its checksum is verified: a CIFAR batch that would run code when
  unpickled is refused by md5 in verify_data.py and in the training script, and never runs; torchvision's
  pretrained weights found in torch's hub cache are read with torch's restricted unpickler.
"""
import os
import pickle
import shutil

import pytest
import torch
import torchvision

import models
import train_model
import verify_data
from ood.errors import UserError

CIFAR_TINY = ["--dataset", "cifar10", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
              "--resize_val", "16", "--batch_size", "25", "--workers", "0", "--device", "cpu", "--amp", "off",
              "--quiet"]


def one_line(code, err, *phrases):
    """Exit status ``code`` is 2 and stderr ``err`` is one line, no traceback, containing ``phrases``."""
    err = err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for p in phrases:
        assert p in err, err
    return err


def exits_2(fn, argv, capsys, *phrases):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    return one_line(e.value.code, capsys.readouterr().err, *phrases)


class _Creates:
    """Unpickled, it creates the file ``path`` (builtins.open in write mode): the harmless stand-in of a
    pickle that runs code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def malicious_pickle(marker):
    """A pickle shaped like a CIFAR batch that creates ``marker`` when unpickled."""
    return pickle.dumps({"labels": [0, 1], "data": _Creates(marker), "filenames": ["a.png", "b.png"]})


# ----------------------------------------------------------------------------------------------------
# 1. No data file is unpickled before its checksum is verified
# ----------------------------------------------------------------------------------------------------
def test_a_malicious_cifar_batch_is_never_unpickled(data, workdir, capsys):
    """verify_data.py counts CIFAR images from the batches' label lists: only of files whose md5 is
    torchvision's, and without running anything; the training script's data check (torchvision's, which
    hashes before it unpickles) names the file that fails it."""
    root, marker = workdir / "root", workdir / "pwned"
    shutil.copytree(data / "cifar-10-batches-py", root / "cifar-10-batches-py")
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(malicious_pickle(marker))
    rc = verify_data.main(["--dataset_path", str(root), "--for", "cifar10", "--ood", "SVHN",
                           "--expect", "cifar10/train=100", "--expect", "cifar10/test=40"])
    out = capsys.readouterr().out
    assert not marker.exists()
    assert rc == 1
    train = next(line for line in out.splitlines() if line.startswith("CIFAR-10 train"))
    assert "md5 mismatch: data_batch_1" in train and "not counted (md5 mismatch, not read): data_batch_1" in train
    assert "too few images (80 of 100)" in train  # the four intact batches are counted
    assert "CIFAR-10 train: too few images (80 of 100); md5 mismatch: data_batch_1" in out  # the summary

    exits_2(train_model.main, CIFAR_TINY + ["--dataset_path", str(root), "--epochs", "1"], capsys,
            "md5 mismatch (not read): data_batch_1", str(root / "cifar-10-batches-py"))
    assert not marker.exists()
    assert not (workdir / "checkpoints").exists()


def test_cached_torchvision_weights_are_read_weights_only(tmp_path, monkeypatch):
    """torchvision reads its weights with torch.load(weights_only=False) and checks a file's hash only when
    it downloads it: a file copied into torch's hub cache (as an offline user is told to) is read with
    torch's restricted unpickler instead, and a file that would run code is refused in one line."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = tmp_path / "hub" / "checkpoints" / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    cached.write_bytes(pickle.dumps({"fc.weight": _Creates(marker)}))
    with pytest.raises(UserError) as e:
        models.build_model("tv:resnet18", 1000, pretrained=True)
    assert not marker.exists()
    assert str(cached) in str(e.value) and "not a plain weights file" in str(e.value)
    assert len(str(e.value).splitlines()) == 1
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # the process's environment is as it was
    # a plain state dict there is read as before
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, cached)
    model = models.build_model("tv:resnet18", 1000, pretrained=True)
    assert torch.equal(model.fc.weight, state["fc.weight"])
