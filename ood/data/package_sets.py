"""OOD sets made of real images that ship inside Python packages, so a pipeline can run offline.

Registered like any other OOD set (``--ood Digits Photos Faces GaussianNoise UniformNoise``):

- ``Digits``: scikit-learn's ``load_digits``, 1,797 handwritten digits (8x8, upscaled by the transform);
- ``Photos``: 2,000 random square crops (fixed seed) of the natural photographs shipped with
  scikit-image and scikit-learn;
- ``Faces``: scikit-image's ``lfw_subset``, 200 face crops (25x25) from Labeled Faces in the Wild;
- ``GaussianNoise`` / ``UniformNoise``: 1,000 noise images each (32x32 RGB, fixed seed).

Each set yields PIL images, so the ID set's own transform (resize, grayscale, normalise) applies to them
exactly as to an ImageFolder set.
"""
import numpy as np
import torch
from PIL import Image

from ood.data.declarations import OODSet, register_ood
from ood.data.layouts import Layout

PHOTO_NAMES = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "grass",
               "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket")


class ArrayImages(torch.utils.data.Dataset):
    """uint8 images (N, H, W) or (N, H, W, 3) as a dataset of (transform(PIL image), -1)."""

    def __init__(self, images, transform=None):
        self.images, self.transform = images, transform
        self.targets = [-1] * len(images)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i]).convert("RGB")
        return (self.transform(img) if self.transform else img), -1


def _to_uint8(x, top):
    return np.clip(np.asarray(x, np.float64) / top * 255, 0, 255).round().astype(np.uint8)


def digits():
    from sklearn.datasets import load_digits
    return _to_uint8(load_digits().images, 16)


def faces():
    import skimage.data
    return _to_uint8(skimage.data.lfw_subset(), 1.0)


def photos(n=2000, seed=0):
    import skimage.data
    from sklearn.datasets import load_sample_images
    sources = []
    for name in PHOTO_NAMES:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, -1)
        if img.dtype != np.uint8:
            img = _to_uint8(img, img.max() or 1)
        sources.append(img[..., :3])
    sources += list(load_sample_images().images)
    rng = np.random.default_rng(seed)
    crops = np.empty((n, 64, 64, 3), np.uint8)
    for i in range(n):
        img = sources[rng.integers(len(sources))]
        side = int(rng.integers(48, min(img.shape[:2]) // 2 + 1))
        y, x = rng.integers(img.shape[0] - side + 1), rng.integers(img.shape[1] - side + 1)
        crop = Image.fromarray(img[y:y + side, x:x + side]).resize((64, 64), Image.BILINEAR)
        crops[i] = np.asarray(crop)
    return crops


def noise(kind, n=1000, seed=0):
    rng = np.random.default_rng([seed, kind == "gaussian"])
    if kind == "gaussian":
        return _to_uint8(rng.normal(0.5, 0.25, (n, 32, 32, 3)), 1.0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


class PackageArrays(Layout):
    """A set made by ``make()`` from arrays inside Python packages: nothing under the data root to lay out,
    count or fetch; the verifier counts it by making it, and a missing package is what it reports."""
    under_root = False
    what = "images made from Python packages"

    def __init__(self, make):
        self.make = make

    def location(self, spec, split=None):
        return "(Python package)"

    def load(self, spec, root, split, transform, download=False):
        return ArrayImages(self.make(), transform)

    def count(self, spec, root, split=None):
        try:
            return len(self.make()), "inside Python packages", ""
        except ImportError as e:
            return None, "", f"cannot import {e.name}"

    def howto(self, spec, split=None):
        return "Install the packages of requirements.txt (scikit-learn, scikit-image)."


PACKAGE_OOD = tuple(register_ood(spec).name for spec in [
    OODSet("Digits", "package:sklearn.datasets.load_digits", 1797, layout=PackageArrays(digits),
           aliases=("sklearn-digits",)),
    OODSet("Photos", "package:skimage.data+sklearn.load_sample_images:crops64:seed0", 2000,
           layout=PackageArrays(photos)),
    OODSet("Faces", "package:skimage.data.lfw_subset", 200, layout=PackageArrays(faces), aliases=("lfw",)),
    OODSet("GaussianNoise", "package:noise:gaussian:seed0", 1000, layout=PackageArrays(lambda: noise("gaussian")),
           aliases=("gaussian",)),
    OODSet("UniformNoise", "package:noise:uniform:seed0", 1000, layout=PackageArrays(lambda: noise("uniform")),
           aliases=("uniform",)),
])
