"""Image files as the loaders read them: decoding (16-bit images scaled, corrupt files named), ImageFolder
trees read that way and counted without decoding, and torchvision downloads turned into one-line errors."""
import contextlib
import os
import re
import urllib.error
from pathlib import Path

import numpy as np
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
