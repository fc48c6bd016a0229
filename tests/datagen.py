"""Small data sets written in the real on-disk formats that torchvision reads: CIFAR python pickles,
the SVHN .mat file, idx files of the MNIST family (Fashion-MNIST, KMNIST) and ImageFolder trees of PNGs.

Images of class k are noisy images around a class-specific colour and stripe pattern, so a tiny network
can learn something in one epoch; OOD folders hold other patterns.
"""
import hashlib
import pickle
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def class_images(labels, rng, size=32):
    """uint8 (N, size, size, 3) images whose colour and stripe frequency depend on the label."""
    n = len(labels)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.float32)
    for i, k in enumerate(labels):
        hue = np.array([np.sin(k * 1.3), np.sin(k * 2.1 + 1), np.sin(k * 0.7 + 2)]) * 0.35 + 0.5
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (k % 5 + 1) * (xx if k % 2 else yy))
        out[i] = hue * (0.6 + 0.4 * stripes[..., None])
    out += rng.normal(0, 0.08, out.shape)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def write_cifar(root, num_classes=10, n_train=100, n_test=40, seed=0):
    """torchvision's CIFAR10 (num_classes 10) or CIFAR100 (100) folder. Returns {file name: md5}."""
    rng = np.random.default_rng(seed)
    cifar10 = num_classes == 10
    folder = Path(root) / ("cifar-10-batches-py" if cifar10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    key = "labels" if cifar10 else "fine_labels"

    def dump(name, labels):
        imgs = class_images(labels, rng)
        entry = {"data": imgs.transpose(0, 3, 1, 2).reshape(len(labels), -1), key: list(map(int, labels)),
                 "filenames": [f"{name}_{i}.png" for i in range(len(labels))]}
        if not cifar10:
            entry["coarse_labels"] = [int(x) // 5 for x in labels]
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)

    train_labels = np.arange(n_train) % num_classes
    rng.shuffle(train_labels)
    test_labels = np.arange(n_test) % num_classes
    rng.shuffle(test_labels)
    if cifar10:
        for b, part in enumerate(np.array_split(train_labels, 5)):
            dump(f"data_batch_{b + 1}", part)
        dump("test_batch", test_labels)
        meta = {"label_names": [f"class{k}" for k in range(10)]}
        meta_name = "batches.meta"
    else:
        dump("train", train_labels)
        dump("test", test_labels)
        meta = {"fine_label_names": [f"class{k}" for k in range(100)],
                "coarse_label_names": [f"super{k}" for k in range(20)]}
        meta_name = "meta"
    with open(folder / meta_name, "wb") as f:
        pickle.dump(meta, f)
    return {p.name: md5(p) for p in folder.iterdir()}


def write_svhn(root, n=30, seed=1):
    """torchvision's SVHN test split: <root>/SVHN/test_32x32.mat. Returns its md5."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "SVHN"
    folder.mkdir(parents=True, exist_ok=True)
    labels = rng.integers(1, 11, n)  # SVHN stores digit 0 as 10
    imgs = 255 - class_images(labels + 20, rng)
    scipy.io.savemat(folder / "test_32x32.mat", {"X": imgs.transpose(1, 2, 3, 0), "y": labels[:, None].astype(np.uint8)})
    return md5(folder / "test_32x32.mat")


def write_image_folder(path, n=20, seed=2, size=36, subdirs=("images",)):
    """An ImageFolder tree of PNGs (the layout of the extracted LSUN, iSUN, Textures, ... archives)."""
    rng = np.random.default_rng(seed)
    for j, sub in enumerate(subdirs):
        d = Path(path) / sub
        d.mkdir(parents=True, exist_ok=True)
        imgs = class_images(rng.integers(30, 60, n), rng, size)
        for i, img in enumerate(imgs):
            Image.fromarray(img).save(d / f"{i:05d}.png")
    return Path(path)


def write_fashion_mnist(root, n_train=60, n_test=20, seed=3):
    """torchvision's FashionMNIST/raw/ idx files."""
    write_idx_set(root, "FashionMNIST", n_train, n_test, seed)


def write_idx_set(root, folder, n_train=60, n_test=20, seed=3):
    """The idx files of torchvision's MNIST family (MNIST, FashionMNIST, KMNIST, ...) in <root>/<folder>/raw/:
    big-endian headers (magic 0x803 / 0x801, counts, 28 x 28) followed by uint8 pixels and labels."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        imgs = class_images(labels, rng, 28).mean(-1).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([0x803, n, 28, 28], ">i4").tobytes() + imgs.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([0x801, n], ">i4").tobytes() + labels.tobytes())


OOD_FOLDERS = {"LSUN_C": ("test",), "iSUN": ("iSUN_patches",), "dtd/images": ("banded", "dotted")}


def write_all(root):
    """CIFAR-10, CIFAR-100, SVHN and three ImageFolder OOD sets under one data root."""
    md5s = {"cifar10": write_cifar(root, 10), "cifar100": write_cifar(root, 100, n_train=200, n_test=100),
            "svhn": write_svhn(root)}
    for i, (folder, subdirs) in enumerate(OOD_FOLDERS.items()):
        write_image_folder(Path(root) / folder, n=12, seed=10 + i, subdirs=subdirs)
    return md5s


def write_openood(root, id_name, n_id=(40, 16, 12), n_ood=10, size=None, seed=5, n_csid=6):
    """OpenOOD v1.5's on-disk layout, in small, for ID set ``id_name``: its image lists in their format
    (``relative/path label`` per line, paths relative to images_classic/ or images_largescale/) under
    benchmark_imglist/<id>/ and the images they name, as OpenOOD's archives unpack them. Every path comes
    from the declarations in ood/data/openood.py. ``n_id``: (train, test, val) images (labels cycle through
    the first classes, so that a tiny head can tell them apart); ``n_ood``: images per OOD set; ``n_csid``:
    images per covariate-shifted ID set (the full-spectrum setting's test_<csid>.txt lists: ID classes as
    labels, the ID patterns under more noise and a colour cast, a little more in each set). ID and csid
    images are JPEGs, OOD images PNGs of another pattern (some grayscale, as MNIST's are); sizes vary, so
    the resize and centre crop matter, except ImageNet-C's, which OpenOOD reads without resizing: they are
    the input size exactly, as its 224 x 224 crops are. Returns the ID set's declaration."""
    from ood.data import get_benchmark, get_id_set
    id_set = get_id_set(id_name, None, "openood")
    bench = get_benchmark("openood")
    rng = np.random.default_rng(seed)
    size = size or id_set.input_size
    root = Path(root)

    def write(lines_path, image_dir, folder, labels, pattern, gray=False, ext="png", shift=0, exact=False):
        rel = []
        for i, y in enumerate(labels):
            side = size if exact else int(size * rng.uniform(1.0, 1.4))
            img = class_images([pattern(y)], rng, side)[0]
            if shift:  # a covariate shift: noise and a colour cast over the class pattern
                cast = np.array([70.0, -50.0, 25.0]) * shift
                img = np.clip(img + rng.normal(0, 30 * shift, img.shape) + cast, 0, 255).astype(np.uint8)
            name = f"{folder}/{i:05d}.{ext}"
            path = root / image_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pil = Image.fromarray(img)
            (pil.convert("L") if gray else pil).save(path)
            rel.append(f"{name} {y}")
        lines_path.parent.mkdir(parents=True, exist_ok=True)
        lines_path.write_text("\n".join(rel) + "\n")

    layout = id_set.layout
    for (split, _), n in zip(id_set.splits, n_id):
        labels = [i % min(4, id_set.num_classes) for i in range(n)]
        write(root / layout.list_path(id_set, split), layout.image_dir, f"{id_name}_like/{split}", labels,
              lambda y: y, ext="jpg")
    for k, o in enumerate(bench.ood_sets(id_set)):
        write(root / o.layout.list_path(o), o.layout.image_dir, f"{o.name}_like", [-1] * n_ood,
              lambda y, k=k: 20 + 3 * k, gray=o.name == "mnist")
    for k, c in enumerate(bench.csid_sets(id_set)):
        labels = [(i + k) % min(4, id_set.num_classes) for i in range(n_csid)]
        write(root / c.layout.list_path(c), c.layout.image_dir, f"{c.name}_like", labels, lambda y: y, ext="jpg",
              shift=1 + k, exact=not c.layout.resized)
    return id_set
