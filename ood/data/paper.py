"""The data sets of the paper's protocol (Moriai et al., AAAI 2025, and the reference code's data
root): its ID sets CIFAR-10, CIFAR-100 and ImageNet-1k, Fashion-MNIST, and the far-OOD sets, with the
archives, URLs and md5 sums they are published with. Each is one ``register_*`` call."""
import os
from pathlib import Path

import torchvision

from ood.data.declarations import IDSet, OODSet, register_id, register_ood
from ood.data.layouts import IMAGE_FOLDER, CifarPickles, HeldOutClasses, IdxFiles, SVHNFile


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_MOS = "http://pages.cs.wisc.edu/~huangrui/imagenet_ood_dataset/"
for _spec in [
    OODSet("SVHN", "SVHN", 26032, torchvision.datasets.SVHN.split_list["test"][0], "test_32x32.mat",
           torchvision.datasets.SVHN.split_list["test"][2], "put it in <root>/SVHN/", ("svhn",), SVHNFile()),
    OODSet("LSUN_C", "LSUN_C", 10000, "https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz",
           "LSUN.tar.gz", "458a0a0ab8e5f1cb4516d7400568e460",
           "extract it and rename the folder LSUN/ to <root>/LSUN_C/", ("lsun-c", "lsunc", "lsun")),
    OODSet("LSUN_R", "LSUN_resize", 10000, "https://www.dropbox.com/s/moqh2wh8696c3yl/LSUN_resize.tar.gz",
           "LSUN_resize.tar.gz", "278b7b31c8cb7e804a1465a8ce03a2dc", "extract it into <root>/",
           ("lsun-r", "lsunr", "lsun_resize")),
    OODSet("iSUN", "iSUN", 8925, "https://www.dropbox.com/s/ssz7qxfqae0cca5/iSUN.tar.gz", "iSUN.tar.gz",
           "be77b0f2c26fda898afac5f99645ee70", "extract it into <root>/"),
    OODSet("Places", "Places", 10000, _MOS + "Places.tar.gz", "Places.tar.gz",
           "b5cb5eba2754ae2a28beea8718db699a", "extract it into <root>/", ("places365",)),
    OODSet("Textures", "dtd/images", 5640, "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
           "dtd-r1.0.1.tar.gz", "fff73e5086ae6bdbea199a49dfb8a4c1",
           "extract it into <root>/ (it creates dtd/images/)", ("dtd",)),
    OODSet("TinyImageNet", "Imagenet_resize", 10000,
           "https://www.dropbox.com/s/kp3my3412u5k9rl/Imagenet_resize.tar.gz", "Imagenet_resize.tar.gz",
           "0f9ff11d45babf2eff5fe12281d1ac31", "extract it into <root>/",
           ("tiny-imagenet", "tinyimagenet_r", "imagenet_resize", "tim")),
    OODSet("SUN", "SUN", 10000, _MOS + "SUN.tar.gz", "SUN.tar.gz", "8469c3ada62211477954ec1be53b12d0",
           "extract it into <root>/"),
    OODSet("iNaturalist", "iNaturalist", 10000, _MOS + "iNaturalist.tar.gz", "iNaturalist.tar.gz",
           "5be6ea8aa027d7b631916427b32cb335", "extract it into <root>/", ("inat",)),
    # The near-OOD set of an --id_classes split, built from the ID test split by ood.data.datasets.held_out.
    OODSet("HeldOut", "id-test:classes-not-in-id_classes", 0, aliases=("held-out", "near-ood"),
           layout=HeldOutClasses()),
]:
    register_ood(_spec)

IMAGENET_OOD = ("iNaturalist", "SUN", "Places", "Textures")

_C10, _C100 = torchvision.datasets.CIFAR10, torchvision.datasets.CIFAR100
for _spec in [
    IDSet("cifar10", 10, CIFAR_MEAN, CIFAR_STD, "cifar", label="CIFAR-10", layout=CifarPickles("CIFAR10"),
          splits=(("train", 50000), ("test", 10000)), url=_C10.url, archive=_C10.filename, md5=_C10.tgz_md5,
          paper=True),
    # The reference code normalises CIFAR-100 and all OOD sets with the CIFAR-10 statistics.
    IDSet("cifar100", 100, CIFAR_MEAN, CIFAR_STD, "cifar", label="CIFAR-100", layout=CifarPickles("CIFAR100"),
          splits=(("train", 50000), ("test", 10000)), url=_C100.url, archive=_C100.filename, md5=_C100.tgz_md5,
          paper=True),
    IDSet("imagenet", 1000, IMAGENET_MEAN, IMAGENET_STD, "imagenet", IMAGENET_OOD, label="ImageNet-1k",
          layout=IMAGE_FOLDER, folder="imagenet", splits=(("train", 1281167), ("val", 50000)),
          url="https://image-net.org/download.php", archive="ILSVRC2012",
          hint="as extracted by torchvision's ImageNet helpers",
          paper=True),
    IDSet("fashionmnist", 10, FASHION_MNIST_MEAN, FASHION_MNIST_STD, "cifar", channels=1, label="Fashion-MNIST",
          layout=IdxFiles("FashionMNIST", gz_copy=lambda: os.environ.get("FASHION_MNIST_GZ", DEBIAN_FASHION_MNIST)),
          splits=(("train", 60000), ("test", 10000)), url=torchvision.datasets.FashionMNIST.mirrors[0],
          hint="install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"),
]:
    register_id(_spec)
