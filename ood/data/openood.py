"""OpenOOD v1.5, declared once: its four ID sets, their validation and near/far OOD sets, the image lists
they are read from, the test preprocessing, the archives that hold them and its released checkpoints.

OpenOOD v1.5 (Zhang et al., "OpenOOD v1.5: Enhanced Benchmark for Out-of-Distribution Detection", 2023)
is the benchmark post-hoc detectors are compared on today. Every fact below is read from its code
(github.com/Jingkang50/OpenOOD): the splits and lists from ``DATA_INFO`` in
``openood/evaluation_api/datasets.py``, the preprocessing from ``default_preprocessing_dict`` in
``openood/evaluation_api/preprocessor.py``, the Google Drive ids from ``download_id_dict`` and the
folder of each image set from ``dir_dict`` (same file), and the released checkpoints (``CHECKPOINTS``) from
its README and ``scripts/download/download.py``.

The covariate-shifted ID ("csid") sets of OpenOOD's full-spectrum setting (``eval_ood(fsood=True)``,
``--fsood``) are declared here too, from ``DATA_INFO[id]['csid']['datasets']``: ID images under another
distribution (corruptions, renditions, a new test set), labelled with the ID set's classes, which that
setting counts as ID beside the ID test set. CIFAR-10 has CIFAR-10-C, CIFAR-100 none, ImageNet-200
ImageNet-V2, -C and -R, ImageNet-1k those and ImageNet-ES. Their lists are in benchmark_imglist.zip, their
images in archives of their own (``cifar10c.zip`` is not in the evaluation API's ``download_id_dict``; its
Drive id is that of OpenOOD's scripts/download/download.py). ImageNet-C's images are read as OpenOOD's
``ImageNetCPreProcessor`` reads them: ToTensor and Normalize only, no resize or crop (``unresized``).

On disk, under ``--dataset_path``, the layout is OpenOOD's own::

    benchmark_imglist/<id>/{train,val,test}_<id>.txt       the ID splits
    benchmark_imglist/<id>/val_<ood>.txt                   the validation OOD set
    benchmark_imglist/<id>/test_<ood>.txt                  each near and far OOD set
    benchmark_imglist/<id>/test_<csid>.txt                 each covariate-shifted ID set (--fsood)
    images_classic/<set>/...   images_largescale/<set>/... the images the lists name

Each list has one ``relative/path label`` per line, the path relative to the set's image folder
(``images_classic/`` or ``images_largescale/``). The sets are declared with the same classes as the
paper's (``IDSet``, ``OODSet``, ood/data/declarations.py) and read through one layout, ``ImageList``; --benchmark
openood selects them (``BENCHMARKS["openood"]``).
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import transforms as T

from ood.data import declarations as D
from ood.data.images import ToUint8, is_image_stage, load_image
from ood.data.layouts import Layout
from ood.errors import UserError

LISTS = "benchmark_imglist"
CLASSIC, LARGESCALE = "images_classic", "images_largescale"
CSID = "csid"  # the group (OODSet.group) of a covariate-shifted ID set


@dataclass(frozen=True)
class ListRule:
    """What the lines of an image list must hold, declared with the list (``_declare``) and applied where
    it is read (``ImageList.load``) and where it is verified (``ImageList.count``), so that a list the
    verifier passes is one the scripts read as it says. ``classes`` > 0: an ID list, whose every line has
    a label, an integer class in [0, classes) (a line without one, "0.0", -5 or 10 of 10 classes would
    score or fit a class that is not the image's); 0: an OOD list, whose label is not used (OpenOOD writes
    -1 or a dict of extras there): anything, or nothing."""
    classes: int = 0

    def label(self, text):
        """The label of a line's ``text`` after its path: (label, "") or (-1, what is wrong with it)."""
        text = text.strip()
        integer = re.fullmatch(r"[+-]?[0-9]+", text) is not None  # not int(): it also takes "1_0" and "١"
        if not self.classes:
            return (int(text) if integer else -1), ""
        if not text:
            return -1, "no label"
        if not integer:
            return -1, f"label {text!r} is not an integer"
        if not 0 <= int(text) < self.classes:
            return -1, f"label {int(text)} is out of range"
        return int(text), ""


ANY_LABEL = ListRule()


class ImageListDataset(torch.utils.data.Dataset):
    """The images an OpenOOD image list names, with their labels (read as ``rule`` says: see ListRule).
    ``source_files`` tells the cache fingerprint (ood.data.sources) which files the set reads: the list and
    every image, so that a rewritten list or image is noticed."""

    def __init__(self, list_path, image_dir, transform=None, rule=ANY_LABEL):
        self.list_path, self.image_dir, self.transform = Path(list_path), Path(image_dir), transform
        self.samples = read_image_list(self.list_path, self.image_dir, rule)
        self.targets = [y for _, y in self.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, y = self.samples[i]
        img = load_image(path)
        return (self.transform(img) if self.transform else img), y

    def source_files(self):
        return [str(self.list_path)] + [p for p, _ in self.samples]


def read_image_list(list_path, image_dir, rule=ANY_LABEL):
    """[(image path, label)] of an image list, in its order, its labels checked by ``rule``. It is UTF-8
    text, as OpenOOD writes it (a byte order mark starting a line is read past; UTF-16 or bytes that are not
    UTF-8 are refused, naming the line). A malformed line is one clear error, naming the file and the
    first bad line (and how many more there are); an unreadable file is an OSError."""
    data = Path(list_path).read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError(f"image list {list_path} is UTF-16 text; OpenOOD's lists are UTF-8: save it as UTF-8 "
                        f"(or download it again).")
    out, bad = [], []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            # a UTF-8 byte order mark, which some editors add (at the start of each list concatenated)
            line = raw.decode("utf-8").strip().lstrip("\ufeff")
        except UnicodeDecodeError as e:
            bad.append(f"line {number}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8 text "
                       f"(OpenOOD's lists are UTF-8: download it again or save it as UTF-8)")
            continue
        if not line:
            continue
        if "\0" in line:
            bad.append(f"line {number}: holds NUL bytes (is the list UTF-16, or not a text file?)")
            continue
        name, _, extra = line.partition(" ")
        if "\t" in name:
            bad.append(f"line {number}: holds a tab; a list separates the path and the label with a space")
            continue
        if name.startswith("/") or ".." in Path(name).parts:
            bad.append(f"line {number}: {name!r} must be a path relative to {image_dir}")
            continue
        label, wrong = rule.label(extra)
        if wrong:
            bad.append(f"line {number}: {wrong} (an ID list gives each image its class after a space, an integer "
                       f"in 0..{rule.classes - 1})")
            continue
        out.append((str(Path(image_dir) / name), label))
    if bad:
        more = f" ({len(bad) - 1} more bad line{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise UserError(f"image list {list_path}, {bad[0]}{more}.")
    return out


class ImageList(Layout):
    """An OpenOOD image list (``benchmark_imglist/...``), the image folder its paths are relative to and
    the rule its lines follow (``ListRule``: an ID list's labels are classes, an OOD list's anything).
    For an ID set the list of split ``s`` is ``<folder>/<s>_<name>.txt``; for an OOD set its ``folder`` is
    the list itself. Counted from the list (no image decoded): the images it names that are present, so
    that a partial download is too few images; a bad line is a problem the verifier reports."""
    what = "an OpenOOD image list"

    def __init__(self, image_dir, rule=ANY_LABEL, resized=True):
        self.image_dir, self.rule, self.resized = image_dir, rule, resized

    def __repr__(self):
        return f"ImageList({self.image_dir!r}, {self.rule!r}{'' if self.resized else ', resized=False'})"

    def read(self, spec, root, split=None):
        """[(image path, label)] of the list, read by its rule."""
        return read_image_list(Path(root) / self.list_path(spec, split), Path(root) / self.image_dir, self.rule)

    def list_path(self, spec, split=None):
        return f"{spec.folder}/{split}_{spec.name}.txt" if split else spec.folder

    def location(self, spec, split=None):
        return self.list_path(spec, split)

    def load(self, spec, root, split, transform, download=False):
        path = Path(root) / self.list_path(spec, split)
        if not path.is_file():
            what = f"{spec.label} {split}" if split else \
                f"{'covariate-shifted ID' if spec.group == CSID else 'OOD'} set {spec.name}"
            raise UserError(f"{what} of OpenOOD v1.5 was not found: expected the image list {path}. "
                            f"{self.howto(spec, split)} Pass --dataset_path for another data root.")
        if not self.resized:
            transform = unresized(transform)
        try:
            return ImageListDataset(path, Path(root) / self.image_dir, transform, self.rule)
        except OSError as e:
            raise UserError(f"image list {path} cannot be read ({e.strerror}).") from None

    def count(self, spec, root, split=None):
        """(images present, info, problem): the images the list names that are there, against the number
        it names (the verifier compares the count with the declared one too, when one is declared)."""
        path = Path(root) / self.list_path(spec, split)
        if not path.is_file():
            return None, "", ""
        try:
            samples = self.read(spec, root, split)
        except UserError as e:
            return 0, "", str(e).rstrip(".")
        except OSError as e:
            return 0, "", f"image list {path} cannot be read ({e.strerror})"
        missing = [p for p, _ in samples if not os.path.isfile(p)]
        info = f"{len(samples):,} listed, under {self.image_dir}/"
        problem = ""
        if missing:
            problem = (f"{len(missing):,} of the {len(samples):,} listed images missing (e.g. "
                       f"{os.path.relpath(missing[0], root)})")
        return len(samples) - len(missing), info, problem

    def howto(self, spec, split=None):
        by_hand = spec.fetched_by_hand(split) if split else ""
        fsood = " --fsood" if not split and spec.group == CSID else ""
        return by_hand or (f"Get OpenOOD v1.5's image lists and images with verify_data.py --benchmark openood "
                           f"--download{fsood} (or OpenOOD's scripts/download/download.py) into the data root.")


def unresized(transform):
    """What OpenOOD reads ImageNet-C's images with (``ImageNetCPreProcessor``, preprocessor.py): ToTensor
    and Normalize only, no resize or crop (its images are 224 x 224 crops already), with the statistics of
    the run's own transform, read as OpenOOD's ``get_id_ood_dataloader`` reads them: the last Normalize of
    a Compose, or the mean and std of a torchvision preset (``weights.transforms()``). None stays None.
    The image stage of a split transform (ood.data.batches) gives the pixels alone: its batch stage
    normalises them with the run's statistics (none, mean 0 and std 1, where the run's transform had no
    Normalize: its own images are not normalised either)."""
    if transform is None:
        return None
    if is_image_stage(transform):
        return T.Compose([ToUint8()])
    norms = [t for t in getattr(transform, "transforms", ()) if isinstance(t, T.Normalize)]
    mean, std = (norms[-1].mean, norms[-1].std) if norms else \
        (getattr(transform, "mean", None), getattr(transform, "std", None))
    if mean is None or std is None:
        raise UserError(f"the images of a covariate-shifted ID set that OpenOOD reads without resizing (ImageNet-C) "
                        f"are normalised with the statistics of the run's transform, and {transform!r} has none "
                        f"(no Normalize, no mean and std).")
    return T.Compose([T.ToTensor(), T.Normalize(mean, std)])


# Google Drive ids of OpenOOD v1.5's archives (download_id_dict) and the image folder each unpacks into
# (dir_dict); benchmark_imglist.zip holds the lists.
_DRIVE_IDS = {
    "benchmark_imglist": "1lI1j0_fDDvjIt9JlWAw09X8ks-yrR_H1",
    "cifar10": "1Co32RiiWe16lTaiOU6JMMnyUYS41IlO1", "cifar100": "1PGKheHUsf29leJPPGuXqzLBMwl8qMF8_",
    "tin": "1PZ-ixyx52U989IKsMA2OT-24fToTrelC", "mnist": "1CCHAGWqA1KJTFFswuF9cbhmB-j98Y1Sb",
    "svhn": "1DQfc11HOtB1nEwqS4pWUFp8vtQ3DczvI", "texture": "1OSz1m3hHfVWbRdmMwKbUzoU8Hg9UKcam",
    "places365": "1Ec-LRSTf6u5vEctKX9vRp9OA6tqnJ0Ay", "imagenet_1k": "1i1ipLDFARR-JZ9argXd2-0a6DXwVhXEj",
    "ssb_hard": "1PzkA-WGG8Z18h0ooL_pDdz9cO-DCIouE", "ninco": "1Z82cmvIB0eghTehxOGP5VTdLt7OD3nk6",
    "inaturalist": "1zfLfMvoUD0CUlKNnkk7LgxZZBnTBipdj", "openimage_o": "1VUFXnB_z70uHfdgJG2E_pjYOcEgqM7tE",
    # the covariate-shifted ID sets' images (--fsood); cifar10c from scripts/download/download.py
    "cifar10c": "170DU_ficWWmbh6O2wqELxK9jxRiGhlJH", "imagenet_v2": "1akg2IiE22HcbvTBpwXQoD7tgfPCdkoho",
    "imagenet_r": "1EzjMN2gq-bVV7lg-MEAdeuBuz-7jbGYU", "imagenet_c": "1JeXL9YH4BO8gCJ631c5BHbaSsl-lekHt",
    "imagenet_es": "1ATz11vKmPqyzfEaEDRaPTF9TXiC244sw",
}
_FOLDER = {**{n: CLASSIC for n in ("cifar10", "cifar100", "tin", "mnist", "svhn", "texture", "places365",
                                   "cifar10c")},
           **{n: LARGESCALE for n in ("imagenet_1k", "ssb_hard", "ninco", "inaturalist", "openimage_o",
                                      "imagenet_v2", "imagenet_c", "imagenet_r", "imagenet_es")}}


def _archive(name):
    """OpenOOD's data_setup unpacks benchmark_imglist.zip into the data root (it holds benchmark_imglist/)
    and each image set's zip, as it is, into images_*/<set>/: so do we."""
    if name == LISTS:
        return D.Archive(name, f"{name}.zip", LISTS, drive_id=_DRIVE_IDS[name])
    return D.Archive(name, f"{name}.zip", f"{_FOLDER[name]}/{name}", drive_id=_DRIVE_IDS[name], flatten=False)


_IMAGENET_TRAIN = ("ImageNet-1k's training images (ILSVRC2012, https://image-net.org), which OpenOOD does not "
                   "distribute: once verify_data.py --benchmark openood --download has unpacked imagenet_1k.zip, "
                   "put them under images_largescale/imagenet_1k/train/ as {list} names them.")


@dataclass(frozen=True)
class _Row:
    """One ID set of DATA_INFO. Every set is named with the archive that holds its images: (set, archive)."""
    name: str
    label: str
    classes: int
    resize: int                    # pre_size
    size: int                      # img_size
    stats: tuple                   # (mean, std)
    images: str                    # the archive of the ID images
    val: tuple                     # the validation OOD set
    near: tuple
    far: tuple
    by_hand: tuple = ()            # ID splits no archive holds
    csid: tuple = ()               # DATA_INFO's csid 'datasets': (set, list test_<stem>.txt, archive), in order
    unresized: tuple = ()          # csid sets read without resize or crop (ImageNet-C)


_CIFAR_FAR = (("mnist", "mnist"), ("svhn", "svhn"), ("texture", "texture"), ("places365", "places365"))
_IMAGENET_NEAR = (("ssb_hard", "ssb_hard"), ("ninco", "ninco"))
_IMAGENET_FAR = (("inaturalist", "inaturalist"), ("textures", "texture"), ("openimage_o", "openimage_o"))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _imagenet_csid(id_name, es=False):
    """ImageNet's covariate-shifted sets: V2, C, R (and ES for ImageNet-1k), listed as test_<id>_<v2|c|r|es>.txt."""
    shifts = ("v2", "c", "r", "es") if es else ("v2", "c", "r")
    return tuple((f"imagenet_{s}", f"{id_name}_{s}", f"imagenet_{s}") for s in shifts)


TABLE = (
    _Row("cifar10", "CIFAR-10", 10, 32, 32, ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), "cifar10",
         ("tin", "tin"), (("cifar100", "cifar100"), ("tin", "tin")), _CIFAR_FAR,
         csid=(("cifar10c", "cifar10c", "cifar10c"),)),
    _Row("cifar100", "CIFAR-100", 100, 32, 32, ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)), "cifar100",
         ("tin", "tin"), (("cifar10", "cifar10"), ("tin", "tin")), _CIFAR_FAR),
    _Row("imagenet200", "ImageNet-200", 200, 256, 224, _IMAGENET, "imagenet_1k", ("openimage_o", "openimage_o"),
         _IMAGENET_NEAR, _IMAGENET_FAR, (("train", _IMAGENET_TRAIN.format(list="train_imagenet200.txt")),),
         csid=_imagenet_csid("imagenet200"), unresized=("imagenet_c",)),
    _Row("imagenet", "ImageNet-1k", 1000, 256, 224, _IMAGENET, "imagenet_1k", ("openimage_o", "openimage_o"),
         _IMAGENET_NEAR, _IMAGENET_FAR, (("train", _IMAGENET_TRAIN.format(list="train_imagenet.txt")),),
         csid=_imagenet_csid("imagenet", es=True), unresized=("imagenet_c",)),
)


def _declare(row):
    """The IDSet, its OOD sets (validation first, then near, then far), the archives they need, its
    covariate-shifted ID sets and their archives. Each list's rule is declared with it: the ID and csid lists'
    labels are classes of the ID set, the OOD lists' anything."""
    folder = f"{LISTS}/{row.name}"

    def ood(name, archive, group, split="test"):
        return D.OODSet(name if group != "val" else f"val_{name}", f"{folder}/{split}_{name}.txt", 0,
                        layout=ImageList(_FOLDER[archive], ANY_LABEL), group=group)
    oods = [ood(*row.val, "val", "val")] + [ood(n, a, "near") for n, a in row.near] + \
        [ood(n, a, "far") for n, a in row.far]
    id_set = D.IDSet(row.name, row.classes, *row.stats, "openood", tuple(o.name for o in oods if o.group != "val"),
                     layout=ImageList(_FOLDER[row.images], ListRule(classes=row.classes)), folder=folder,
                     label=row.label,
                     splits=(("train", 0), ("test", 0), ("val", 0)), url="https://github.com/Jingkang50/OpenOOD",
                     benchmark="openood", resize=row.resize, input_size=row.size, by_hand=row.by_hand)
    needed = (LISTS, row.images, row.val[1], *(a for _, a in row.near), *(a for _, a in row.far))
    csid = tuple(D.OODSet(name, f"{folder}/test_{stem}.txt", 0, group=CSID,
                          layout=ImageList(_FOLDER[archive], ListRule(classes=row.classes), name not in row.unresized))
                 for name, stem, archive in row.csid)
    return (id_set, tuple(oods), tuple(_archive(a) for a in dict.fromkeys(needed)), csid,
            tuple(_archive(a) for a in dict.fromkeys(a for _, _, a in row.csid)))


# OpenOOD v1.5's released checkpoints (README "Pre-trained checkpoints", scripts/download/download.py:
# download_id_dict and --checkpoints ood_v1.5; tests/fixtures/openood_postprocessors.md, section 5). Each
# ResNet-18 zip holds the three training runs of one ID set, s<k>/best.ckpt (a plain state dict) under the
# run folder OpenOOD's scripts read (scripts/ood/*/<id>_test_ood_*.sh: ./results/<run folder>/s<k>/best.ckpt).
# The zips' inner layout is not in OpenOOD's git tree: the folder holding s0/, s1/ and s2/ becomes
# <checkpoints root>/<run folder>/ wherever it lies in the zip (ood.data.download.unpack, ``contents``), so
# that --checkpoints_dir ./results gives OpenOOD's own layout.
RUNS = 3


def _released(id_set, key, drive_id, run="", model="", note=""):
    contents = tuple(f"s{k}/best.ckpt" for k in range(RUNS)) if run else ()
    return D.Released(id_set, D.Archive(key, f"{key}.zip", run or key, drive_id=drive_id, contents=contents),
                      model, note)


CHECKPOINTS = (
    _released("cifar10", "cifar10_res18_v1.5", "1byGeYxM_PlLjT72wZsMQvP6popJeWBgt",
              "cifar10_resnet18_32x32_base_e100_lr0.1_default", "openood_resnet18_32x32",
              "ResNet-18, cross-entropy, 3 training runs"),
    _released("cifar100", "cifar100_res18_v1.5", "1s-1oNrRtmA0pGefxXJOUVRYpaoAML0C-",
              "cifar100_resnet18_32x32_base_e100_lr0.1_default", "openood_resnet18_32x32",
              "ResNet-18, cross-entropy, 3 training runs"),
    _released("imagenet200", "imagenet200_res18_v1.5", "1ddVmwc8zmzSjdLUO84EuV4Gz1c7vhIAs",
              "imagenet200_resnet18_224x224_base_e90_lr0.1_default", "openood_resnet18_224x224",
              "ResNet-18 at 224x224, cross-entropy, 3 training runs"),
    _released("imagenet", "imagenet_res50_v1.5", "15PdDMNRfnJ7f2oxW6lI-Ge4QJJH3Z0Fy",
              note="ResNet-50s of other training methods (MOS, CIDER, AugMix, PixMix, ...); the baseline is "
                   "torchvision's own weights, --model resnet50 --pretrained, which need no download"),
)

_DECLARED = [_declare(row) for row in TABLE]
BENCHMARK = D.register_benchmark(D.Benchmark(
    "openood", "OpenOOD v1.5", *(tuple(d[k] for d in _DECLARED) for k in range(3)), fpr_variant="openood",
    source="github.com/Jingkang50/OpenOOD, openood/evaluation_api/datasets.py (DATA_INFO)",
    checkpoints=CHECKPOINTS, csid=tuple(d[3] for d in _DECLARED), csid_archives=tuple(d[4] for d in _DECLARED)))
