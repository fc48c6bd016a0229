#!/usr/bin/env python3
"""test_score_ood_detection.py with the ImageNet-1k defaults, as the authors' test_score_ood_detection_imagenet.py:
torchvision's ResNet-50 with its IMAGENET1K_V1 weights, the ImageNet validation set (<dataset_path>/imagenet/val)
as ID test set against iNaturalist, SUN, Places and Textures, every score (MSP, Energy, ReAct, HE, SHE,
RecLag); results in results/imagenet/resnet50/ unless --results_dir says otherwise.

It adds --dataset imagenet --model resnet50 --pretrained unless you give --dataset, --model, or
--pretrained/--checkpoint yourself (--checkpoint: your own weights instead of torchvision's).
Every other option is test_score_ood_detection.py's (listed below).

Example:  python test_score_ood_detection_imagenet.py --dataset_path ./data --device cuda:0 --protocol sampled
"""
import test_score_ood_detection
from generate_stored_pattern_imagenet import run_with_imagenet_defaults


def main(argv=None):
    return run_with_imagenet_defaults(test_score_ood_detection, __doc__, argv)


if __name__ == "__main__":
    main()
