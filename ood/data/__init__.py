"""Data sets and transforms: the in-distribution (ID) sets, the OOD sets, and their transforms.

Everything loads through torchvision's own classes (CIFAR10/100, SVHN, FashionMNIST, ImageFolder) from
one data root, ``--dataset_path``, laid out as in the reference code (docs/method.md, "Data"):

    <root>/cifar-10-batches-py/  <root>/cifar-100-python/   torchvision's CIFAR folders
    <root>/FashionMNIST/raw/                                torchvision's Fashion-MNIST folder
    <root>/imagenet/train/  <root>/imagenet/val/            ImageNet-1k as ImageFolder trees
    <root>/SVHN/test_32x32.mat                              torchvision's SVHN, test split
    <root>/LSUN_C/ LSUN_resize/ iSUN/ Places/ dtd/images/ Imagenet_resize/ SUN/ iNaturalist/

A missing or empty set stops with a message naming the folder it expected, where to download the data
and the archive's md5 sum.

Each set is declared once, as one ``register_id(IDSet(...))`` or ``register_ood(OODSet(...))``: its
layout (``Layout``: how to load, count and fetch it), folder, image counts, archive, URL, md5, hint,
preprocessing family, channels, statistics, classes and default OOD sets. The loaders, ``--dataset`` and
``--ood`` help and defaults, the error messages and ``verify_data.py``'s rows and targets derive from the
declarations; a module of one's own that registers sets before a script builds its parser adds sets
without editing this repository (tests/extra_sets.py does that).

The package, by responsibility (imports point down this list, never up):

- ``images``: image files as the loaders read and count them, and an image's pixels as uint8 (``ToUint8``);
- ``layouts``: how a declared set lies under the data root (load, count, verify, fetch);
- ``declarations``: ``OODSet``, ``IDSet``, ``Archive``, ``Benchmark``, their registries and help texts;
- ``paper``, ``package_sets``, ``openood``: the declared sets of the paper, of Python packages and of
  OpenOOD v1.5 (registered when this package is imported);
- ``datasets``: transforms and the torch data sets a run builds from a declaration;
- ``batches``: a transform split into its per-image and per-batch stages, and sets read a batch at a time;
- ``download``, ``verify``: fetching archives and ``verify_data.py``'s checks, derived from the declarations.

Everything a user or a plug-in needs is importable from ``ood.data`` itself (``__all__``).
"""
from ood.data.datasets import (ClassSubset, build_id_dataset, dataset_labels, held_out, subset, test_transform,
                               train_transform)
from ood.data.declarations import (BENCHMARKS, CIFAR_OOD, DRIVE, ID_SETS, OOD_SETS, PAPER, PREPROCESSING, Archive,
                                   Benchmark, IDSet, OODSet, benchmark_help, benchmark_names, benchmark_ood,
                                   builtin_ood, dataset_help, get_benchmark, get_id_set, id_key, ood_help,
                                   register_benchmark, register_id, register_ood, resolve_ood)
from ood.data.images import (BadImage, ToUint8, bad_image_message, count_image_folder, download_errors, image_folder,
                             load_image)
from ood.data.layouts import (IMAGE_FOLDER, CifarPickles, HeldOutClasses, IdxFiles, ImageFolderTree, Layout,
                              SVHNFile, TorchvisionLayout, cifar_labels)
from ood.data import paper  # noqa: F401  (registers the paper's sets)
from ood.data import package_sets  # noqa: F401  (registers the OOD sets shipped inside Python packages)
from ood.data import openood  # noqa: F401  (registers the benchmark OpenOOD v1.5)
from ood.data.paper import (CIFAR_MEAN, CIFAR_STD, FASHION_MNIST_MEAN, FASHION_MNIST_STD, IMAGENET_MEAN,
                            IMAGENET_OOD, IMAGENET_STD)

__all__ = [
    # declarations and their registries
    "OODSet", "IDSet", "Archive", "Benchmark", "register_ood", "register_id", "register_benchmark",
    "OOD_SETS", "ID_SETS", "BENCHMARKS", "PAPER", "DRIVE", "CIFAR_OOD", "IMAGENET_OOD", "PREPROCESSING",
    "get_id_set", "get_benchmark", "benchmark_names", "resolve_ood", "builtin_ood", "benchmark_ood", "id_key",
    "benchmark_help", "dataset_help", "ood_help",
    # layouts, for a set in a new on-disk format
    "Layout", "ImageFolderTree", "IMAGE_FOLDER", "TorchvisionLayout", "CifarPickles", "IdxFiles", "SVHNFile",
    "HeldOutClasses", "cifar_labels",
    # image files
    "load_image", "image_folder", "count_image_folder", "BadImage", "bad_image_message", "download_errors", "ToUint8",
    # the data sets a run builds
    "test_transform", "train_transform", "build_id_dataset", "held_out", "subset", "dataset_labels", "ClassSubset",
    # the paper's normalisation statistics
    "CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
]
