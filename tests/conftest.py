import os
import sys
from pathlib import Path

import pytest
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import datagen  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A data root in the real formats: CIFAR-10/100 pickles, SVHN .mat, three ImageFolder OOD sets."""
    root = tmp_path_factory.mktemp("data")
    md5s = datagen.write_all(root)
    return root, md5s


@pytest.fixture
def data(data_root, monkeypatch):
    """The generated data root, with torchvision's expected md5 sums replaced by those of the generated
    files. torchvision still verifies every file (the production path is unchanged); it just checks
    them against the sums of our files instead of the published archives'."""
    root, md5s = data_root
    C10, C100, SVHN = torchvision.datasets.CIFAR10, torchvision.datasets.CIFAR100, torchvision.datasets.SVHN
    for cls, key in ((C10, "cifar10"), (C100, "cifar100")):
        monkeypatch.setattr(cls, "train_list", [[n, md5s[key][n]] for n, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[n, md5s[key][n]] for n, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5s[key][cls.meta["filename"]]})
    split = dict(SVHN.split_list)
    split["test"] = [split["test"][0], split["test"][1], md5s["svhn"]]
    monkeypatch.setattr(SVHN, "split_list", split)
    return root


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a fresh directory so checkpoints/, stored_pattern/ and results/ land in tmp."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
