"""Image files as the loaders read them: decoding (16-bit images scaled, corrupt files named), ImageFolder
trees read that way and counted without decoding, and torchvision downloads turned into one-line errors."""
import contextlib
import os
import re
import urllib.error
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from ood.errors import UserError


class BadImage(Exception):
    """An image file that cannot be decoded. Raised inside DataLoader workers, which re-raise it in the
    main process with the worker's traceback around the message; ``bad_image_message`` recovers the line
    that names the file."""


_BAD_IMAGE = "unreadable image"


def bad_image_message(error):
    m = re.search(rf"{_BAD_IMAGE}: [^\n]*", str(error))
    return m.group(0) if m else str(error).splitlines()[-1]


def load_image(path):
    """An image file as an RGB PIL image, as torchvision's ImageFolder loader does, except that 16-bit
    images are scaled to 8 bits (PIL's plain conversion clips them, which turns them almost white) and
    that a truncated or corrupt file raises ``BadImage`` naming it."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()
    except Exception as e:  # OSError (truncated), PIL.UnidentifiedImageError, SyntaxError, ...
        raise BadImage(f"{_BAD_IMAGE}: {path} ({type(e).__name__}: {e}). Remove or replace the file.") from None
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr // 257  # 0..65535 -> 0..255
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def image_folder(path, transform):
    """A torchvision ImageFolder read with ``load_image``."""
    return torchvision.datasets.ImageFolder(str(path), transform=transform, loader=load_image)


@contextlib.contextmanager
def download_errors(what, url, folder):
    """Turn a failed torchvision download (no network, proxy, checksum) into one clear line."""
    try:
        yield
    except (urllib.error.URLError, OSError, RuntimeError) as e:  # torchvision's MNIST wraps it in RuntimeError
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e).strip().splitlines()[-1]
        raise UserError(f"--download could not fetch {what} from {url} ({reason}). On a machine without "
                        f"internet, download it elsewhere and put it in {folder}.") from None


def _is_image(name):
    return name.lower().endswith(IMG_EXTENSIONS)


def count_image_folder(path):
    """(images, info, problem) of an ImageFolder tree as torchvision's ImageFolder would load it: files with an
    image extension anywhere below the class sub-folders (symlinks followed). None when absent."""
    path = Path(path)
    if not path.is_dir():
        return None, "", ""
    classes = sorted((e for e in os.scandir(path) if e.is_dir()), key=lambda e: e.name)
    total, empty = 0, []
    for c in classes:
        n = sum(1 for _, _, files in os.walk(c.path, followlinks=True) for f in files if _is_image(f))
        total += n
        if n == 0:
            empty.append(c.name)
    top = sum(1 for e in os.scandir(path) if e.is_file() and _is_image(e.name))
    info = f"{len(classes)} class folder{'s' if len(classes) != 1 else ''}"
    if top:
        info += f"; {top} images directly in the folder, ignored (ImageFolder reads sub-folders only)"
    problem = ""
    if empty:
        problem = (f"{len(empty)} class folder{'s' if len(empty) != 1 else ''} without images "
                   f"({', '.join(empty[:3])}{', ...' if len(empty) > 3 else ''}): ImageFolder refuses that")
    return total, info, problem


class ToUint8:
    """A PIL image (or an (H, W[, C]) uint8 array) as the (H, W, C) uint8 tensor that torchvision's
    ``ToTensor`` would divide by 255: the last step of an image stage (ood.data.batches). The modes whose
    pixels ``ToTensor`` passes on undivided (I, I;16, F: integers and floats wider than a byte) and arrays
    other than uint8 are refused rather than scaled another way; a data set of them converts its images
    to RGB or L first, as the loaders here do."""

    def __call__(self, img):
        if isinstance(img, np.ndarray):
            if img.dtype != np.uint8:
                raise ValueError(f"an image stage takes uint8 arrays, not {img.dtype}: convert the images "
                                 f"to RGB or L in the data set")
            a = torch.from_numpy(np.array(img, copy=True))
        elif img.mode in ("I", "F") or img.mode.startswith("I;16"):
            raise ValueError(f"images of PIL mode {img.mode} (not 8 bits per channel) cannot be normalised "
                             f"batch-wise: convert them to RGB or L in the data set")
        else:
            a = torch.from_numpy(np.array(img, np.uint8, copy=True))
            if img.mode == "1":  # one bit per pixel: ToTensor makes it 0 or 255
                a = a * 255
            a = a.view(img.size[1], img.size[0], len(img.getbands()))
        return a[..., None] if a.ndim == 2 else a

    def __repr__(self):
        return "ToUint8()"


def is_image_stage(transform):
    """Whether ``transform`` is the image stage of a split transform (ood.data.batches): a Compose whose
    last step is ``ToUint8``, so that its images are pixels still to be normalised a batch at a time."""
    steps = getattr(transform, "transforms", None)
    return isinstance(transform, torchvision.transforms.Compose) and bool(steps) and isinstance(steps[-1], ToUint8)
