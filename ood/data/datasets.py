"""The data sets a run builds from the declarations: the transforms (evaluation and training), an ID
split (a class subset for --id_classes), the held-out classes as an OOD set, deterministic subsets and
labels read without decoding images."""
import numpy as np
import torch
from torch.utils.data import Subset
from torchvision import transforms as T

from ood.data.declarations import ID_SETS, id_key
from ood.errors import UserError


def test_transform(id_set, size):
    """The evaluation transform (docs/method.md, "Backbones"), shared by ID train/test features and OOD sets.
    Grayscale ID sets (in_channels 1) see every image in grayscale."""
    if id_set.preprocessing == "imagenet":
        resize = [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]
    elif id_set.preprocessing == "openood":
        # OpenOOD's Resize(pre_size) + CenterCrop(img_size), scaled when a backbone needs another input size
        scaled = round(id_set.resize * size / id_set.input_size) if id_set.input_size else size
        resize = [T.Resize(scaled), T.CenterCrop(size)]
    else:
        resize = [T.Resize((size, size))]
    gray = [T.Grayscale(1)] if id_set.channels == 1 else []
    return T.Compose(resize + gray + [T.ToTensor(), T.Normalize(id_set.mean, id_set.std)])


def train_transform(id_set, size, augment="autoaugment"):
    """Training transform of the fixed recipe: Resize -> AutoAugment (CIFAR-10 policy) ->
    RandomHorizontalFlip -> ToTensor -> Normalize, as the authors describe it, at the input size actually
    used for testing (``--recipe reference`` builds its own, ood/training/recipes.py)."""
    if id_set.preprocessing == "imagenet":
        steps = [T.RandomResizedCrop(size)]
    else:
        steps = [T.Resize((size, size))]
    if id_set.channels == 1:
        steps.append(T.Grayscale(1))
    if augment == "autoaugment":
        steps.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
    if augment in ("autoaugment", "flip"):
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps + [T.ToTensor(), T.Normalize(id_set.mean, id_set.std)])


class ClassSubset(torch.utils.data.Dataset):
    """The images of ``dataset`` whose label is in ``classes``; labels mapped through ``relabel``
    (a dict) when given, kept otherwise."""

    def __init__(self, dataset, classes, relabel=None):
        labels = dataset_labels(dataset).tolist()
        keep = set(classes)
        self.dataset, self.relabel = dataset, relabel
        self.indices = [i for i, y in enumerate(labels) if y in keep]
        self.targets = [relabel[labels[i]] if relabel else labels[i] for i in self.indices]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x, _ = self.dataset[self.indices[i]]
        return x, self.targets[i]


def build_id_dataset(id_set, root, role, transform, download=False):
    """The ID split playing ``role`` ("train", "test", or "val" for a set with a validation split), as its
    declaration's layout loads it (only the --id_classes classes, relabelled, for a near-OOD split)."""
    if id_set.classes:
        full = build_id_dataset(ID_SETS[id_key(id_set.base)], root, role, transform, download)
        return ClassSubset(full, id_set.classes, {c: k for k, c in enumerate(id_set.classes)})
    return id_set.build(root, role, transform, download)


def held_out(id_set, root, transform, download=False):
    """The OOD set ``HeldOut`` of a near-OOD split: the ID test images of the classes not in --id_classes."""
    if not id_set.classes:
        raise UserError(f"the OOD set HeldOut is the test images of the classes a near-OOD split leaves out, "
                        f"and this run uses all classes of {id_set.name}: train a backbone on some classes "
                        f"(train_model.py --dataset {id_set.name} --id_classes 0 1 2 3 4 ...) and score it with "
                        f"the same --id_classes, or leave HeldOut out of --ood.")
    base = ID_SETS[id_key(id_set.base)]
    full = build_id_dataset(base, root, "test", transform, download)
    return ClassSubset(full, [c for c in range(base.num_classes) if c not in id_set.classes])


def subset(dataset, n):
    """At most ``n`` images of ``dataset``, at evenly spaced indices (deterministic; for quick trials)."""
    if not n or n >= len(dataset):
        return dataset
    return Subset(dataset, np.linspace(0, len(dataset) - 1, n).round().astype(int).tolist())


def dataset_labels(dataset):
    """Integer labels of a dataset without decoding its images."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(dataset.indices)]
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return torch.as_tensor(np.asarray(getattr(dataset, attr)), dtype=torch.long)
    return torch.full((len(dataset),), -1, dtype=torch.long)
