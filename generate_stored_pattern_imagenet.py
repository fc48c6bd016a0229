#!/usr/bin/env python3
"""generate_stored_pattern.py with the ImageNet-1k defaults, as the authors' generate_stored_pattern_imagenet.py:
torchvision's ResNet-50 with its IMAGENET1K_V1 weights, features of the ImageNet training set
(<dataset_path>/imagenet/train, an ImageFolder tree), of the validation set (imagenet/val) and of the OOD
sets iNaturalist, SUN, Places and Textures, then the stored pattern of every registered score that fits
one (--score extended; --score all for the paper's six).

It adds --dataset imagenet --model resnet50 --pretrained unless you give --dataset, --model, or
--pretrained/--checkpoint yourself (--checkpoint: your own weights instead of torchvision's).
Every other option is generate_stored_pattern.py's (listed below).

Example:  python generate_stored_pattern_imagenet.py --dataset_path ./data --device cuda:0 --workers 16
"""
import sys

import generate_stored_pattern
from ood.commands.imagenet import IMAGENET_DEFAULTS, imagenet_argv


def run_with_imagenet_defaults(script, doc, argv=None):
    """Call ``script.main`` with the ImageNet defaults; with --help, print ``doc`` first."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        print(f"(the defaults shown below are {script.__name__}.py's; this entry point adds {IMAGENET_DEFAULTS})\n")
    return script.main(imagenet_argv(argv))


def main(argv=None):
    return run_with_imagenet_defaults(generate_stored_pattern, __doc__, argv)


if __name__ == "__main__":
    main()
