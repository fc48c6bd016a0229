#!/usr/bin/env python3
"""Train a backbone (ResNet18/34 at 112x112, WRN-40-2 at 64x64, or any registered / torchvision model)
on an ID data set with the fixed recipe (the default, --recipe fixed; ood/training/recipes.py): the authors' recipe
as they describe it, SGD (lr 0.2, momentum 0.9, weight decay 5e-4), batch 128, 100 epochs, lr / 10 at 50%
and 75%, AutoAugment (CIFAR-10 policy) + horizontal flip, cross-entropy, trained at the size it is
evaluated at, last epoch kept. --recipe reference runs the authors' train_model.py as it ran instead
(64 px training, a ReduceLROnPlateau on top, validation in train mode, the best test-accuracy epoch).

Writes checkpoints/<dataset>/<model>.pt (after every epoch, atomically; --resume continues it) and the
per-epoch log checkpoints/<dataset>/<model>.log.csv.

Example:  python train_model.py --dataset cifar10 --model resnet18 --dataset_path ./data
Several GPUs:  torchrun --nproc_per_node 4 train_model.py ...  (DistributedDataParallel; --batch_size is
the total over all processes)
"""
import sys

from ood import api
from ood.runtime.entry import cli_main


def build_parser(argv=None):
    return api.parser("train", argv, __doc__)


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return api.train(api.parse("train", argv, __doc__))


if __name__ == "__main__":
    main()
