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
from ood.runtime import options as cli
from ood.runtime.entry import cli_main
from ood.runtime.run import open_run
from ood.training.trainer import Trainer


def build_parser():
    p = cli.parser(__doc__)
    cli.add_common(p)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=cli.positive_int, default=100, help="training epochs")
    g.add_argument("--lr", type=cli.positive_float, default=0.2, help="initial learning rate (RecLag code 0.2, SHE code 0.1)")
    g.add_argument("--momentum", type=cli.nonnegative_float, default=0.9, help="SGD momentum")
    g.add_argument("--weight_decay", type=cli.nonnegative_float, default=5e-4, help="SGD weight decay (L2)")
    g.add_argument("--augment", choices=["autoaugment", "flip", "none"], default="autoaugment",
                   help="autoaugment: AutoAugment (CIFAR-10 policy) + flip, as the reference")
    g.add_argument("--resume", action="store_true", help="continue the run saved in the checkpoint")
    g.add_argument("--overwrite", action="store_true", help="start again even if the checkpoint exists")
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    hyper = {k: getattr(args, k) for k in ("epochs", "lr", "momentum", "weight_decay", "augment", "resume",
                                           "overwrite")}
    with open_run(args, training=True) as run:  # joins torchrun's process group, and leaves it at the end
        return Trainer(run.setup, hyper).run()


if __name__ == "__main__":
    main()
