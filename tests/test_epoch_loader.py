"""The training loader keeps its worker processes between epochs (ood/training/trainer.py, EpochLoader) and
still hands out, epoch by epoch, exactly what a loader made for that epoch would: the augmentations of a
kept worker are those of a fresh one, so the weights and the exact resume do not change."""
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ood.training.trainer import EpochLoader, epoch_seed


class Draws(Dataset):
    """Every item draws from the three generators an augmentation may use."""

    def __len__(self):
        return 24

    def __getitem__(self, i):
        return torch.tensor([float(i), random.random(), float(np.random.rand()), torch.rand(()).item()])


def test_kept_workers_draw_what_fresh_loaders_draw():
    ds, seed = Draws(), 7
    kept_sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=seed)
    fresh_sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=seed)
    kept = EpochLoader(ds, kept_sampler, 5, seed, 2, torch.device("cpu"))
    for epoch in range(3):
        fresh_sampler.set_epoch(epoch)
        fresh = DataLoader(ds, batch_size=5, sampler=fresh_sampler, num_workers=2,
                           generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        a = torch.cat(list(kept.epoch(epoch)))
        b = torch.cat(list(fresh))
        assert torch.equal(a, b), epoch
    assert kept.kept is not None and kept.kept.persistent_workers
    # a run resumed at epoch 2 (a new loader, new workers) draws epoch 2's items again
    again = EpochLoader(ds, DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=seed), 5, seed, 2,
                        torch.device("cpu"))
    assert torch.equal(torch.cat(list(again.epoch(2))), a)
