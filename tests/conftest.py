import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import datagen  # noqa: E402

# The same precision and thread count on every machine: at most two threads (or OMP_NUM_THREADS), for
# this process and, through the environment, every script a test starts; oneDNN's opt-in bf16 fp32-math
# mode (set by some vendor images) would make fp32 convolutions run in bf16.
THREADS = int(os.environ.get("OMP_NUM_THREADS") or 0) or min(2, len(os.sched_getaffinity(0)))
os.environ["OMP_NUM_THREADS"] = str(THREADS)
os.environ.pop("ONEDNN_DEFAULT_FPMATH_MODE", None)
torch.set_num_threads(THREADS)


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


@pytest.fixture(scope="session")
def trained_fmnist(tmp_path_factory):
    """Made once per test session, for the script-level tests: Fashion-MNIST idx files (100 training,
    40 test images), two ImageFolder OOD sets (iSUN, 10 images; mine, 8), a WRN-10-1 trained at 16 px in
    fp32 (checkpoints/fashionmnist/wrn.pt) and a second checkpoint of it with shifted biases (other.pt).
    Tests copy what they need (``run_dir`` fixtures) and never write here."""
    import train_model
    base = tmp_path_factory.mktemp("trained")
    datagen.write_fashion_mnist(base / "data", n_train=100, n_test=40)
    datagen.write_image_folder(base / "data" / "iSUN", n=10, seed=4)
    datagen.write_image_folder(base / "data" / "mine", n=8, seed=5)
    cwd = os.getcwd()
    os.chdir(base)
    try:
        train_model.main(["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
                          "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet",
                          "--epochs", "3", "--lr", "0.05", "--augment", "none", "--resize_val", "16",
                          "--dataset_path", str(base / "data")])
    finally:
        os.chdir(cwd)
    ck = torch.load(base / "checkpoints/fashionmnist/wrn.pt", weights_only=True)
    ck["model"]["fc.bias"] += 0.5
    torch.save(ck, base / "other.pt")
    return base


@pytest.fixture
def fmnist_run(trained_fmnist, tmp_path, monkeypatch):
    """A working directory holding a copy of ``trained_fmnist``'s data and checkpoints (runs write there)."""
    shutil.copytree(trained_fmnist / "data", tmp_path / "data")
    shutil.copytree(trained_fmnist / "checkpoints", tmp_path / "checkpoints")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def small_fmnist(tmp_path, monkeypatch):
    """Fashion-MNIST idx files (60 training, 20 test images) and an ImageFolder OOD set iSUN (6 images)
    under tmp_path/data, with tmp_path as the working directory; returns the data root."""
    datagen.write_fashion_mnist(tmp_path / "data", n_train=60, n_test=20)
    datagen.write_image_folder(tmp_path / "data" / "iSUN", n=6)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a fresh directory so checkpoints/, stored_pattern/ and results/ land in tmp."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def refuse_writes_under(monkeypatch):
    """``refuse_writes_under(folder)`` makes ``folder`` (from then on, only it) unwritable for this process,
    also for root (who ignores the mode bits): every file the project creates goes through
    tempfile.mkstemp (atomic writes, staging folders' files, the writability probe), which then fails
    with EACCES there, as the kernel would for a user without write permission."""
    real = tempfile.mkstemp
    refused = []

    def mkstemp(*a, **k):
        where = Path(k.get("dir") or (a[2] if len(a) > 2 else tempfile.gettempdir())).resolve()
        if any(where == f or f in where.parents for f in refused):
            raise PermissionError(errno.EACCES, "Permission denied", str(where))
        return real(*a, **k)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    def refuse(folder):
        refused[:] = [Path(folder).resolve()]
    return refuse


@pytest.fixture(autouse=True)
def _score_registry_as_it_was():
    """A plug-in a test registers (``--score package.module:Class``) stays registered only for that test,
    as it would in its own process: ``--score extended`` in a later test must not include it."""
    import ood.plugins
    import scores
    registered, plugins = dict(scores._BY_KEY), dict(ood.plugins._SCORES)
    yield
    scores._BY_KEY.clear()
    scores._BY_KEY.update(registered)
    ood.plugins._SCORES.clear()
    ood.plugins._SCORES.update(plugins)


@pytest.fixture(scope="module")
def register_sets():
    """A function importing a test module that registers data sets (tests/extra_sets.py,
    tests/download_sets.py) and returning it; the ID and OOD registries are as they were after the test
    module, as a user's module registers sets in its own process only."""
    import importlib

    from ood import data as D
    saved, names = (dict(D.ID_SETS), dict(D.OOD_SETS)), []

    def register(name):
        sys.modules.pop(name, None)
        names.append(name)
        return importlib.import_module(name)
    yield register
    for registry, before in zip((D.ID_SETS, D.OOD_SETS), saved):
        registry.clear()
        registry.update(before)
    for name in names:
        sys.modules.pop(name, None)
