"""Data sets in their real on-disk formats through torchvision's own classes, transforms, names."""
import gzip
import shutil

import pytest
import torch
from torchvision import transforms as T

import datagen
from ood import data as D
from ood.data import paper
from ood.errors import UserError


def test_cifar_protocol_transform():
    tf = D.test_transform(D.get_id_set("cifar100"), 112)
    kinds = [type(t) for t in tf.transforms]
    assert kinds == [T.Resize, T.ToTensor, T.Normalize]
    assert tf.transforms[0].size == (112, 112)
    assert tf.transforms[2].mean == (0.4914, 0.4822, 0.4465) and tf.transforms[2].std == (0.2023, 0.1994, 0.2010)
    train = D.train_transform(D.get_id_set("cifar10"), 64)
    assert [type(t) for t in train.transforms] == [T.Resize, T.AutoAugment, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    assert train.transforms[0].size == (64, 64) and train.transforms[1].policy == T.AutoAugmentPolicy.CIFAR10
    inet = D.test_transform(D.get_id_set("imagenet"), 224)
    assert [type(t) for t in inet.transforms][:2] == [T.Resize, T.CenterCrop] and inet.transforms[0].size == 256


def test_cifar10_cifar100_svhn_load(data):
    tf = D.test_transform(D.get_id_set("cifar10"), 20)
    c10 = D.build_id_dataset(D.get_id_set("cifar10"), data, "train", tf)
    assert len(c10) == 100 and c10[0][0].shape == (3, 20, 20)
    c100 = D.build_id_dataset(D.get_id_set("cifar100"), data, "test", tf)
    assert len(c100) == 100 and max(c100.targets) == 99
    svhn = D.resolve_ood("SVHN").build(data, tf)
    assert len(svhn) == 30 and svhn[0][0].shape == (3, 20, 20)


def test_torchvision_still_verifies_md5(data_root, tmp_path):
    """Without the test-side md5 replacement, generated CIFAR files fail torchvision's integrity check,
    and we report that as a user error."""
    root, _ = data_root
    with pytest.raises(UserError, match="not found or is corrupted"):
        D.build_id_dataset(D.get_id_set("cifar10"), root, "train", None)


def test_image_folder_sets_and_names(data, tmp_path):
    tf = D.test_transform(D.get_id_set("cifar10"), 16)
    assert D.resolve_ood("lsun_c").name == "LSUN_C" and D.resolve_ood("dtd").name == "Textures"
    assert D.resolve_ood("LSUN_resize").name == "LSUN_R" and D.resolve_ood("TINYIMAGENET").folder == "Imagenet_resize"
    tex = D.resolve_ood("Textures").build(data, tf)
    assert len(tex) == 24 and tex[0][0].shape == (3, 16, 16)
    custom = D.resolve_ood(f"mine={data / 'iSUN'}")
    assert custom.name == "mine" and len(custom.build(data, tf)) == 12
    with pytest.raises(UserError, match="NAME=PATH"):
        D.resolve_ood("=x")


def test_fashion_mnist_real_format_and_debian_copy(tmp_path, monkeypatch):
    fm = D.get_id_set("fashion-mnist")
    tf = D.test_transform(fm, 28)
    assert isinstance(tf.transforms[1], T.Grayscale)
    datagen.write_fashion_mnist(tmp_path / "a")
    ds = D.build_id_dataset(fm, tmp_path / "a", "test", tf)
    assert len(ds) == 20 and ds[0][0].shape == (1, 28, 28)
    # Debian's package layout: gzip files in one folder, unpacked on first use
    deb = tmp_path / "debian"
    deb.mkdir()
    for f in (tmp_path / "a/FashionMNIST/raw").iterdir():
        with open(f, "rb") as src, gzip.open(deb / (f.name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    monkeypatch.setattr(paper, "DEBIAN_FASHION_MNIST", deb)
    monkeypatch.delenv("FASHION_MNIST_GZ", raising=False)  # it would take precedence over the folder above
    ds = D.build_id_dataset(fm, tmp_path / "b", "train", tf)
    assert len(ds) == 60 and (tmp_path / "b/FashionMNIST/raw/train-images-idx3-ubyte").exists()
    # RGB OOD images become grayscale for a grayscale ID set
    datagen.write_image_folder(tmp_path / "ood", n=3)
    img = D.resolve_ood(f"x={tmp_path / 'ood'}").build(tmp_path, tf)[0][0]
    assert img.shape == (1, 28, 28)
    monkeypatch.setattr(paper, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        D.build_id_dataset(fm, tmp_path / "c", "train", tf)


def test_imagenet_image_folder(tmp_path):
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            datagen.write_image_folder(tmp_path / "imagenet" / split, n=2, subdirs=(c,))
    inet = D.get_id_set("imagenet")
    ds = D.build_id_dataset(inet, tmp_path, "test", D.test_transform(inet, 24))
    assert len(ds) == 4 and ds[0][0].shape == (3, 24, 24) and sorted(set(ds.targets)) == [0, 1]
    with pytest.raises(UserError, match="ImageNet-1k train split not found"):
        D.build_id_dataset(inet, tmp_path / "none", "train", None)


def test_subset_and_labels(data):
    ds = D.build_id_dataset(D.get_id_set("cifar10"), data, "train", None)
    sub = D.subset(ds, 7)
    assert len(sub) == 7 and sub.indices[0] == 0 and sub.indices[-1] == 99
    assert torch.equal(D.dataset_labels(sub), torch.tensor(ds.targets)[sub.indices])
    assert D.subset(ds, 0) is ds and D.subset(ds, 1000) is ds


def test_unknown_names():
    with pytest.raises(UserError, match="unknown data set"):
        D.get_id_set("mnist")
    with pytest.raises(UserError, match="unknown OOD set"):
        D.resolve_ood("cifar5")


def test_package_ood_sets():
    from ood.data.package_sets import PACKAGE_OOD, photos
    tf = D.test_transform(D.get_id_set("fashionmnist"), 28)
    sizes = {}
    for name in PACKAGE_OOD:
        ds = D.resolve_ood(name.lower()).build("unused", tf)
        sizes[name] = len(ds)
        x, y = ds[len(ds) - 1]
        assert x.shape == (1, 28, 28) and y == -1 and torch.isfinite(x).all()
    assert sizes == {"Digits": 1797, "Photos": 2000, "Faces": 200, "GaussianNoise": 1000, "UniformNoise": 1000}
    a, b = photos(n=5), photos(n=5)
    assert (a == b).all() and a.std() > 10  # fixed seed, real image content


def test_id_classes_split(tmp_path):
    datagen.write_fashion_mnist(tmp_path, n_train=60, n_test=20)
    split = D.get_id_set("fashionmnist", [7, 3])
    assert (split.name, split.num_classes, split.classes, split.base) == ("fashionmnist_classes7-3", 2, (7, 3), "fashionmnist")
    tf = D.test_transform(split, 28)
    ds = D.build_id_dataset(split, tmp_path, "train", tf)
    assert len(ds) == 12 and sorted(set(ds.targets)) == [0, 1] and ds[0][0].shape == (1, 28, 28)
    assert ds.targets[ds.indices.index(3) if 3 in ds.indices else 0] in (0, 1)
    full = D.build_id_dataset(D.get_id_set("fashionmnist"), tmp_path, "train", tf)
    assert all(full.targets[i] == (7, 3)[t] for i, t in zip(ds.indices, ds.targets))  # relabelled in the given order
    held = D.held_out(split, tmp_path, tf)
    assert len(held) == 16 and set(held.targets) == {0, 1, 2, 4, 5, 6, 8, 9}
    for bad in ([3], [3, 3], [0, 10], list(range(10))):
        with pytest.raises(UserError, match="--id_classes"):
            D.get_id_set("fashionmnist", bad)
    with pytest.raises(UserError, match="train a backbone on some classes"):
        D.held_out(D.get_id_set("fashionmnist"), tmp_path, tf)
