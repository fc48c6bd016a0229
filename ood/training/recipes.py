"""The two training recipes of ``train_model.py --recipe``.

``fixed`` (the default) is the authors' recipe without its defects: training at the size it is
evaluated at, train mode for training and eval mode for evaluation, the last epoch kept, MultiStepLR
(lr / 10 at 50 % and 75 % of the epochs), torchvision's AutoAugment, bf16 where the hardware has it.

``reference`` is the authors' ``train_model.py`` as it ran (docs/method.md, "Differences from the
reference code"), so that the effect of each defect can be measured:

- the transforms are built at ``--resize_val`` (its default, 64) before the model's size is set, so
  the ResNets train and validate at 64 x 64 while the checkpoint records the size they are evaluated at
  (112); the WRN is 64 in both;
- the model is never switched to eval mode: the per-epoch validation on the test set runs in train mode
  (BatchNorm uses and updates batch statistics of the test set, WRN's dropout is active);
- lr / 10 at the start of epochs E*2//4 and E*3//4, and on top of it a ReduceLROnPlateau (mode min,
  factor 0.94, patience 1, min_lr 1e-6) stepped after each epoch's training with the reference's
  running loss: after every batch, T <- (T + loss) / len(train set), so the value is about the last
  batch's loss divided by the data set size;
- the checkpoint is the epoch with the best (train-mode) test accuracy;
- fp32, contiguous tensors; the reference AutoAugment (ood/training/reference_autoaugment.py).

Both recipes initialise the ResNets as the reference does (models/resnet.py). Checkpoints of the two
recipes live under different names and their caches under different folders, so they never mix.
"""
from dataclasses import dataclass

import torch
from torchvision import transforms as T

from ood import data as D
from ood.training.reference_autoaugment import ReferenceCIFAR10Policy

REFERENCE_TRAIN_SIZE = 64  # the reference parser's --resize_val default, used by its transforms


@dataclass(frozen=True)
class Recipe:
    """The fixed recipe; ``ReferenceRecipe`` overrides what the authors' script does differently."""
    name: str = "fixed"
    eval_mode_validation: bool = True  # switch to eval mode to validate (the reference never does)
    keep: str = "last"                 # "last" epoch, or "best" test accuracy
    suffix: str = ""                   # of the default checkpoint and of the cache and results folders

    def train_size(self, setup, asked):
        """The size the training and validation transforms resize to (``asked``: --resize_val)."""
        return setup.input_size

    def recorded_size(self, setup):
        """The input size the checkpoint records (the one features are extracted at)."""
        return setup.input_size

    def train_transform(self, id_set, size, augment):
        return D.train_transform(id_set, size, augment)

    def schedulers(self, opt, epochs):
        """(per-epoch scheduler, plateau scheduler or None)."""
        milestones = sorted({max(1, int(epochs * 0.5)), max(1, int(epochs * 0.75))})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1), None

    def before_epoch(self, opt, epoch, epochs):
        pass


@dataclass(frozen=True)
class ReferenceRecipe(Recipe):
    name: str = "reference"
    eval_mode_validation: bool = False
    keep: str = "best"
    suffix: str = "-reference"

    def train_size(self, setup, asked):
        return asked or REFERENCE_TRAIN_SIZE

    def recorded_size(self, setup):
        return setup.model.input_size

    def train_transform(self, id_set, size, augment):
        if augment != "autoaugment":
            return super().train_transform(id_set, size, augment)
        steps = [T.Resize((size, size))] + ([T.Grayscale(1)] if id_set.channels == 1 else [])
        return T.Compose(steps + [ReferenceCIFAR10Policy(), T.RandomHorizontalFlip(), T.ToTensor(),
                                  T.Normalize(id_set.mean, id_set.std)])

    def schedulers(self, opt, epochs):
        return None, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "min", factor=0.94, patience=1, min_lr=1e-6)

    def before_epoch(self, opt, epoch, epochs):
        """The reference's manual lr / 10 at the start of epochs E*2//4 and E*3//4."""
        if epoch in (epochs * 2 // 4, epochs * 3 // 4):
            for group in opt.param_groups:
                group["lr"] /= 10


RECIPES = {r.name: r for r in (Recipe(), ReferenceRecipe())}


def running_loss(previous, loss, n_train):
    """One batch of the reference's running loss: (T + loss) / len(train set)."""
    return (previous + loss) / n_train
