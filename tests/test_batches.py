"""ood.data.batches: the split transform (image stage per image, batch stage per batch) and the batch reader
give the model exactly the inputs of the whole transform applied image by image, for every kind of set
the runs read, and the reader indexes in-memory arrays only where that is exact."""
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import ConcatDataset, Subset
from torchvision import transforms as T

import datagen
from ood import data as D
from ood.data.batches import BatchReader, Normalise, ToUint8, split
from ood.data.package_sets import ArrayImages

CPU = torch.device("cpu")


def per_image(ds, idx):
    items = [ds[int(i)] for i in idx]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def batched(ds, stages, idx, channels_last=True):
    x, y = BatchReader(ds)[idx]
    return stages.finish(x, CPU, channels_last), y


def assert_same_inputs(whole, staged, stages, idx, path=None):
    """The batch of ``staged`` (built with the image stage), finished, is the per-image batch of ``whole``
    bit for bit (the same float32 operations on each element), in the channels-last layout."""
    ref, ref_y = per_image(whole, idx)
    x, y = batched(staged, stages, idx)
    assert x.dtype == torch.float32 and x.shape == ref.shape
    assert torch.equal(x, ref)
    assert torch.equal(y, ref_y)
    assert x.is_contiguous(memory_format=torch.channels_last)
    if path is not None:
        assert type(BatchReader(staged).reader).__name__ == path


@pytest.mark.parametrize("id_name,size,shape,path", [
    ("fashionmnist", 28, (60, 28, 28), "_Array"),      # gray at its size: one indexing per batch
    ("fashionmnist", 28, (60, 28, 28, 3), "_Items"),   # RGB grayscaled by PIL: image by image
    ("fashionmnist", 32, (60, 28, 28), "_Items"),      # resized
    ("cifar10", 32, (60, 32, 32, 3), "_Array"),
    ("cifar10", 32, (60, 32, 32), "_Array"),           # gray pixels repeated into RGB
    ("cifar10", 64, (60, 32, 32, 3), "_Items"),
    ("imagenet", 24, (60, 32, 32, 3), "_Items"),       # resize then centre crop
])
def test_array_sets_give_the_per_image_inputs(id_name, size, shape, path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    whole = D.test_transform(D.get_id_set(id_name), size)
    stages = split(whole)
    idx = rng.permutation(len(images))[:40]  # any order, as a shuffled sampler asks
    assert_same_inputs(ArrayImages(images, whole), ArrayImages(images, stages.image), stages, idx, path)


def test_subsets_and_concatenations_keep_order_and_labels():
    rng = np.random.default_rng(1)
    ids = D.get_id_set("cifar10")
    whole, stages = D.test_transform(ids, 32), split(D.test_transform(ids, 32))
    a, b = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), rng.integers(0, 256, (20, 8, 8), dtype=np.uint8)

    def build(tf):
        return ConcatDataset([Subset(ArrayImages(a, tf), list(range(0, 30, 2))), ArrayImages(b, tf)])
    assert_same_inputs(build(whole), build(stages.image), stages, rng.permutation(35), "_Concat")


def test_torchvision_sets_in_their_formats(data, tmp_path):
    """CIFAR-10 (pickles), SVHN (.mat) and Fashion-MNIST (idx files), as the runs load them, a class subset
    of them relabelled, and a set subsampled by --subset."""
    datagen.write_fashion_mnist(tmp_path / "fm", n_train=20, n_test=30)
    cases = [("cifar10", 32, lambda tf: D.build_id_dataset(D.get_id_set("cifar10"), data, "test", tf)),
             ("cifar10", 32, lambda tf: D.OOD_SETS["svhn"].build(data, tf)),
             ("fashionmnist", 28,
              lambda tf: D.build_id_dataset(D.get_id_set("fashionmnist"), tmp_path / "fm", "test", tf))]
    for id_name, size, build in cases:
        whole = D.test_transform(D.get_id_set(id_name), size)
        stages = split(whole)
        full, staged = build(whole), build(stages.image)
        idx = np.arange(min(25, len(full)))
        assert_same_inputs(full, staged, stages, idx, "_Array")
        assert_same_inputs(D.ClassSubset(full, [1, 3], {1: 0, 3: 1}), D.ClassSubset(staged, [1, 3], {1: 0, 3: 1}),
                           stages, np.arange(len(D.ClassSubset(full, [1, 3]))), "_Mapped")
        assert_same_inputs(D.subset(full, 7), D.subset(staged, 7), stages, np.arange(7), "_Mapped")


def test_a_subclass_or_a_target_transform_is_read_image_by_image():
    images = np.zeros((4, 28, 28), np.uint8)
    stages = split(D.test_transform(D.get_id_set("fashionmnist"), 28))

    class Mine(ArrayImages):
        def __getitem__(self, i):
            return super().__getitem__(i)
    assert type(BatchReader(Mine(images, stages.image)).reader).__name__ == "_Items"
    ds = torchvision.datasets.FakeData(4, (1, 28, 28), transform=stages.image)
    assert type(BatchReader(ds).reader).__name__ == "_Items"


def test_training_transform_draws_the_same_augmentations():
    """The image stage of a random training transform draws what the whole transform draws, image by image:
    the same seed gives the same batch (ToTensor and Normalize draw nothing)."""
    ids = D.get_id_set("cifar10")
    images = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    whole = D.train_transform(ids, 32, "autoaugment")
    stages = split(whole)
    torch.manual_seed(5)
    ref, _ = per_image(ArrayImages(images, whole), range(16))
    torch.manual_seed(5)
    x = torch.stack([ArrayImages(images, stages.image)[i][0] for i in range(16)])
    assert torch.equal(stages.finish(x, CPU, False), ref)


def test_other_transforms_stay_whole():
    tf = T.Compose([T.ToTensor(), T.RandomErasing(), T.Normalize((0.5,), (0.5,))])
    assert split(tf).image is tf and split(tf).batch is None
    assert split(T.Resize(8)).batch is None
    x = torch.rand(2, 3, 8, 8)  # a set that built its own tensors: handed over as they are
    assert torch.equal(split(tf).finish(x, CPU, False), x)
    assert torch.equal(Normalise((0.5,), (0.5,))(x, CPU, False), x)


def test_pixel_modes():
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    assert torch.equal(ToUint8()(bits)[..., 0].float() / 255, T.ToTensor()(bits)[0])
    with pytest.raises(ValueError, match="mode F"):
        ToUint8()(Image.fromarray(np.zeros((2, 2), np.float32)))
    norm = Normalise((0.5, 0.4, 0.3), (0.2, 0.3, 0.4))
    rgb = torch.randint(0, 256, (3, 5, 5, 3), dtype=torch.uint8)
    plain, cl = norm(rgb, CPU, False), norm(rgb, CPU, True)
    assert plain.is_contiguous() and cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, cl)


def test_the_layout_asked_for_even_with_one_channel():
    """A gray batch is an (N, 1, H, W) view of (N, H, W, 1) pixels, whose strides read as channels-last: the
    batch stage hands over the strides the per-image path gave (a contiguous batch, made channels-last by
    ``contiguous(memory_format=...)`` when asked), gray or RGB."""
    norm = Normalise((0.5,), (0.5,))
    for c in (1, 3):
        pixels = torch.randint(0, 256, (4, 6, 6, c), dtype=torch.uint8)
        plain, cl = norm(pixels, CPU, False), norm(pixels, CPU, True)
        assert plain.stride() == torch.empty(plain.shape).stride()
        assert cl.stride() == torch.empty(cl.shape).contiguous(memory_format=torch.channels_last).stride()
        assert torch.equal(plain, cl)


def test_modes_as_to_tensor_takes_them():
    """8-bit modes are taken as ToTensor takes them (HSV too); the wider ones it leaves undivided are
    refused; a Normalize subclass, or a zero standard deviation, is not split into a plain normalisation."""
    hsv = Image.fromarray(np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)).convert("HSV")
    assert torch.equal(ToUint8()(hsv).permute(2, 0, 1).float() / 255, T.ToTensor()(hsv))
    for mode in ("I", "I;16", "F"):
        with pytest.raises(ValueError, match=f"mode {mode}"):
            ToUint8()(Image.new(mode, (2, 2)))
    with pytest.raises(ValueError, match="uint8 arrays"):
        ToUint8()(np.zeros((2, 2), np.float32))

    class Clamped(T.Normalize):
        def forward(self, x):
            return super().forward(x).clamp(-1, 1)
    tf = T.Compose([T.ToTensor(), Clamped((0.5,), (0.5,))])
    assert split(tf).batch is None
    with pytest.raises(ValueError, match="standard deviation of 0"):
        split(T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.0,))]))
