"""AutoAugment's CIFAR-10 policy as the authors' training script ran it (``--recipe reference``).

The RecLag and SHE training scripts use an early third-party ``CIFAR10Policy`` (DeepVoltaire's
AutoAugment port), not torchvision's. Its 25 sub-policies, probabilities and 10 magnitude bins are those
of torchvision's ``AutoAugment(AutoAugmentPolicy.CIFAR10)`` (read from it here), but five operations
behave differently:

- shear, translate and rotate fill the uncovered area with grey (128), not black;
- rotate always turns counter-clockwise by +m (no random sign);
- shear resamples with BICUBIC, not NEAREST;
- translate moves by a fractional number of pixels (m x width, PIL's nearest sampling), not an integer;
- solarize uses the thresholds linspace(256, 0, 10), not linspace(255, 0, 10).

A sub-policy is chosen uniformly and each of its two operations is applied with its probability, drawing
from Python's ``random`` as the original does (the DataLoader seeds it in every worker).
"""
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps
from torchvision import transforms as T

FILL = 128
MAGNITUDES = {
    "ShearX": np.linspace(0, 0.3, 10), "ShearY": np.linspace(0, 0.3, 10),
    "TranslateX": np.linspace(0, 150 / 331, 10), "TranslateY": np.linspace(0, 150 / 331, 10),
    "Rotate": np.linspace(0, 30, 10), "Color": np.linspace(0.0, 0.9, 10), "Contrast": np.linspace(0.0, 0.9, 10),
    "Sharpness": np.linspace(0.0, 0.9, 10), "Brightness": np.linspace(0.0, 0.9, 10),
    "Posterize": np.round(np.linspace(8, 4, 10), 0).astype(int), "Solarize": np.linspace(256, 0, 10),
}


def _sign():
    return random.choice((-1, 1))


def _fill(img):
    return FILL if img.mode in ("L", "I", "F") else (FILL,) * len(img.getbands())


def _shear(img, m, axis):
    coeffs = (1, m * _sign(), 0, 0, 1, 0) if axis == "x" else (1, 0, 0, m * _sign(), 1, 0)
    return img.transform(img.size, Image.AFFINE, coeffs, Image.BICUBIC, fillcolor=_fill(img))


def _translate(img, m, axis):
    coeffs = (1, 0, m * img.size[0] * _sign(), 0, 1, 0) if axis == "x" else (1, 0, 0, 0, 1, m * img.size[1] * _sign())
    return img.transform(img.size, Image.AFFINE, coeffs, fillcolor=_fill(img))


def _rotate(img, m):
    rotated = img.convert("RGBA").rotate(m)
    grey = Image.new("RGBA", rotated.size, (FILL,) * 4)
    return Image.composite(rotated, grey, rotated).convert(img.mode)


def _enhance(cls):
    return lambda img, m: cls(img).enhance(1 + m * _sign())


OPS = {
    "ShearX": lambda img, m: _shear(img, m, "x"), "ShearY": lambda img, m: _shear(img, m, "y"),
    "TranslateX": lambda img, m: _translate(img, m, "x"), "TranslateY": lambda img, m: _translate(img, m, "y"),
    "Rotate": _rotate, "Color": _enhance(ImageEnhance.Color), "Contrast": _enhance(ImageEnhance.Contrast),
    "Sharpness": _enhance(ImageEnhance.Sharpness), "Brightness": _enhance(ImageEnhance.Brightness),
    "Posterize": lambda img, m: ImageOps.posterize(img, int(m)), "Solarize": lambda img, m: ImageOps.solarize(img, m),
    "AutoContrast": lambda img, m: ImageOps.autocontrast(img), "Equalize": lambda img, m: ImageOps.equalize(img),
    "Invert": lambda img, m: ImageOps.invert(img),
}


class ReferenceCIFAR10Policy:
    """The reference training script's AutoAugment (CIFAR-10 policy) on PIL images."""

    def __init__(self):
        self.policies = T.AutoAugment(T.AutoAugmentPolicy.CIFAR10).policies

    def __call__(self, img):
        for name, p, level in self.policies[random.randint(0, len(self.policies) - 1)]:
            if random.random() < p:
                img = OPS[name](img, MAGNITUDES[name][level] if level is not None else None)
        return img

    def __repr__(self):
        return "ReferenceCIFAR10Policy()"
