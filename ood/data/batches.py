"""Decode each image, normalise the batch: what a loader hands the model, at the model's rate on a CPU.

torchvision's ``ToTensor`` and ``Normalize`` cost 56 and 85 us on one 28x28 Fashion-MNIST image on a
2-core AVX2 CPU (torch 2.14: per-call overhead on a 784-element tensor), more than decoding, resizing and
grayscaling it (17 us), and a third of the demo's CNN forward per image. So an evaluation or training
transform that ends with them is ``split``:

- its **image stage** runs per image, in the loader's workers: the steps before ``ToTensor``, then
  ``ToUint8`` (the pixels as PIL holds them, a ``(H, W, C)`` uint8 tensor);
- its **batch stage** (``Normalise``) runs once per batch, on the model's device: to float, divided by 255,
  normalised, in one copy that is also the layout change (channels-last by default: an ``(N, C, H, W)``
  view of the ``(N, H, W, C)`` pixels), and a GPU receives a quarter of the bytes.

The values are those of the per-image transform bit for bit: the same float32 operations (divide by 255,
subtract the mean, divide by the standard deviation) in the same order on each element. A feature cache
keyed on the transform's ``repr`` therefore stays valid.

``BatchReader`` reads a batch of an image set at once. Where a set holds its images in memory as a uint8
array (torchvision's MNIST family, CIFAR and SVHN; ``ArrayImages``) and the image stage leaves them as
they are (a resize or crop to the size they have, a grayscale of gray pixels), a batch is one indexing
of that array instead of a PIL image per item; elsewhere it stacks the items of the image stage.
"""
import numpy as np
import torch
import torchvision
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision import transforms as T

from ood.data.datasets import ClassSubset
from ood.data.images import ToUint8, is_image_stage
from ood.data.package_sets import ArrayImages
from ood.system import accel

class Normalise:
    """The batch stage: (N, H, W, C) uint8 -> float32 (N, C, H, W), (x / 255 - mean) / std, on ``device``,
    in the layout asked for (channels-last or contiguous). A batch that is not uint8 comes from a data set that built its own
    tensors: it is moved to the device as it is."""

    def __init__(self, mean, std):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if any(s == 0 for s in self.std):  # as Normalize refuses it
            raise ValueError(f"a standard deviation of 0 in {self.std} would divide by zero")
        self._constants = {}

    def _on(self, device, channels):
        key = (str(device), channels)
        if key not in self._constants:
            def const(v):
                v = v * channels if len(v) == 1 else v  # Normalize broadcasts one value over the channels
                return torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)
            # 255 as a tensor on the device: CUDA divides by a Python scalar as a multiply by its reciprocal
            self._constants[key] = (torch.tensor(255.0, device=device), const(self.mean), const(self.std))
        return self._constants[key]

    def __call__(self, x, device, channels_last=True):
        if x.dtype != torch.uint8:
            return accel.to_input(x, device, channels_last)
        x = x.to(device, non_blocking=True).permute(0, 3, 1, 2)
        # the layout named, not inferred from the strides (a one-channel view of (N, H, W, 1) memory has
        # channels-last strides, which convolutions would follow even with --no_channels_last); one channel
        # is laid out as ``contiguous(memory_format=channels_last)`` leaves it, contiguous
        fmt = torch.channels_last if channels_last and x.shape[1] > 1 else torch.contiguous_format
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device, memory_format=fmt)
        scale, mean, std = self._on(x.device, x.shape[1])
        return out.copy_(x).div_(scale).sub_(mean).div_(std)

    def __repr__(self):
        return f"Normalise(mean={self.mean}, std={self.std})"


class Stages:
    """A transform as an image stage (per image) and a batch stage (``finish(batch, device, channels_last)``)."""

    def __init__(self, image, batch=None):
        self.image, self.batch = image, batch

    def finish(self, x, device, channels_last):
        if self.batch is None:
            return accel.to_input(x, device, channels_last)
        return self.batch(x, device, channels_last)


def split(transform):
    """``transform`` as ``Stages``: a ``Compose`` ending with ``ToTensor`` (and ``Normalize``), torchvision's
    own classes, is split before them; any other transform (a subclass included) stays whole, per image."""
    steps = list(transform.transforms) if type(transform) is T.Compose else None
    if not steps:
        return Stages(transform)
    mean, std = (0.0,), (1.0,)
    if type(steps[-1]) is T.Normalize and len(steps) > 1:
        norm = steps.pop()
        mean, std = tuple(np.atleast_1d(np.asarray(norm.mean, np.float64))), tuple(np.atleast_1d(np.asarray(norm.std, np.float64)))
    if not isinstance(steps[-1], T.ToTensor) or type(steps[-1]).__call__ is not T.ToTensor.__call__:
        return Stages(transform)
    return Stages(T.Compose(steps[:-1] + [ToUint8()]), Normalise(mean, std))


# -- reading a batch at once ---------------------------------------------------------------------------
class _Items:
    """Any data set: its items one by one through its own transform, stacked."""

    def __init__(self, dataset):
        self.dataset = dataset

    def read(self, idx):
        items = [self.dataset[int(i)] for i in idx]
        return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


class _Array:
    """A uint8 array (N, H, W, C) that the image stage leaves as it is, and its labels."""

    def __init__(self, images, labels, repeat=1):
        self.images, self.labels, self.repeat = images, np.asarray(labels, np.int64), repeat

    def read(self, idx):
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        if self.repeat > 1:  # gray pixels an RGB image repeats
            x = x.expand(-1, -1, -1, self.repeat).contiguous()
        return x, torch.from_numpy(self.labels[idx])


class _Mapped:
    """A subset: indices mapped into the data set below, labels replaced when the subset relabels."""

    def __init__(self, inner, indices, labels=None):
        self.inner, self.indices = inner, np.asarray(indices, np.int64)
        self.labels = None if labels is None else np.asarray(labels, np.int64)

    def read(self, idx):
        x, y = self.inner.read(self.indices[idx])
        return x, (y if self.labels is None else torch.from_numpy(self.labels[idx]))


class _Concat:
    def __init__(self, parts, ends):
        self.parts, self.ends = parts, list(ends)

    def read(self, idx):
        part = np.searchsorted(self.ends, idx, side="right")
        starts = np.r_[0, self.ends[:-1]]
        xs, ys, order = [], [], []
        for p in np.unique(part):
            where = np.flatnonzero(part == p)
            x, y = self.parts[p].read(idx[where] - starts[p])
            xs.append(x), ys.append(y), order.append(where)
        if len(xs) == 1:
            return xs[0], ys[0]
        x, y = torch.cat(xs), torch.cat(ys)
        inverse = np.empty(len(idx), np.int64)
        inverse[np.concatenate(order)] = np.arange(len(idx))
        return x[inverse], y[inverse]


def _pixels(dataset):
    """(uint8 images (N, H, W, C), labels, PIL mode the set hands its transform, transform) of a set that
    holds its images in memory and reads them exactly as torchvision's (or ArrayImages') ``__getitem__``
    does; None for any other set, a subclass that reads its own way, or a target transform."""
    tv = torchvision.datasets
    for cls, how in ((tv.MNIST, "mnist"), (tv.CIFAR10, "cifar"), (tv.SVHN, "svhn"), (ArrayImages, "array")):
        if isinstance(dataset, cls) and type(dataset).__getitem__ is cls.__getitem__:
            break
    else:
        return None
    if getattr(dataset, "target_transform", None) is not None:
        return None
    if how == "mnist":
        data = dataset.data.numpy() if isinstance(dataset.data, torch.Tensor) else dataset.data
        return data[..., None], np.asarray(dataset.targets), "L", dataset.transform
    if how == "cifar":
        return dataset.data, np.asarray(dataset.targets), "RGB", dataset.transform
    if how == "svhn":
        return dataset.data.transpose(0, 2, 3, 1), np.asarray(dataset.labels), "RGB", dataset.transform
    images = dataset.images
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or not (
            images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        return None
    # ArrayImages converts every image to RGB: gray pixels become three equal channels
    return (images[..., None] if images.ndim == 3 else images), np.asarray(dataset.targets), "RGB", dataset.transform


def _unchanged(stage, h, w, gray):
    """The channels an image stage (``ToUint8`` last) gives an (h, w) image whose pixels are all gray
    (``gray``) or RGB, if it leaves them as they are; None if it changes them (or is not an image stage)."""
    if not is_image_stage(stage):
        return None
    channels = 3
    for step in stage.transforms[:-1]:
        if type(step) is T.Resize and step.max_size is None:
            size = [step.size] if isinstance(step.size, int) else list(step.size)
            if size != ([min(h, w)] if len(size) == 1 else [h, w]):
                return None
        elif type(step) is T.CenterCrop:
            if list(step.size) != [h, w]:
                return None
        elif type(step) is T.Grayscale and step.num_output_channels == 1 and gray:
            channels = 1  # L of three equal channels is that value: PIL's weights sum to 2**16
        else:
            return None
    return channels


def _reader(dataset):
    """The fastest exact way to read batches of ``dataset``."""
    if isinstance(dataset, Subset) and type(dataset).__getitem__ is Subset.__getitem__:
        return _Mapped(_reader(dataset.dataset), dataset.indices)
    if type(dataset) is ClassSubset:
        return _Mapped(_reader(dataset.dataset), dataset.indices, dataset.targets)
    if type(dataset) is ConcatDataset:
        return _Concat([_reader(d) for d in dataset.datasets], dataset.cumulative_sizes)
    pixels = _pixels(dataset)
    if pixels is not None:
        images, labels, mode, stage = pixels
        gray = images.shape[-1] == 1
        channels = _unchanged(stage, images.shape[1], images.shape[2], gray)
        if channels is not None:
            # an "L" image stays one channel; gray pixels of an "RGB" image are repeated unless grayscaled
            repeat = 3 if gray and mode == "RGB" and channels == 3 else 1
            return _Array(images, labels, repeat)
    return _Items(dataset)


class BatchReader(Dataset):
    """``dataset`` read a batch at a time: ``reader[indices]`` = (images, labels) of those items, stacked.
    Use it with a ``BatchSampler`` as the sampler and ``batch_size=None``."""

    def __init__(self, dataset):
        self.n, self.reader = len(dataset), _reader(dataset)  # the reader holds what it reads, once

    def __len__(self):
        return self.n

    def __getitem__(self, indices):
        return self.reader.read(np.asarray(indices, np.int64))


__all__ = ["ToUint8", "Normalise", "Stages", "split", "BatchReader"]  # ToUint8 lives in ood.data.images
