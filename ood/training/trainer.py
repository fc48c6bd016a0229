"""Backbone training with one of two recipes (ood/training/recipes.py): ``fixed``, the recipe of the authors'
train_model.py without its defects (docs/method.md, "Backbones"), or ``reference``, that script as it ran.

The checkpoint is rewritten atomically after every epoch with everything needed to resume: weights,
optimizer, scheduler, RNG states, the epoch and every training setting. The data order of each epoch
comes from a generator seeded by (seed, epoch) and the test loader has a generator of its own, so a
resumed run ends with the same weights as an uninterrupted one; resuming with other settings is refused.
"""
import csv
import io
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import (BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler, Subset,
                              get_worker_info)
from torch.utils.data._utils.worker import _generate_state  # how a DataLoader seeds numpy in its workers

from ood.system import accel
from ood.system.accel import loader_options
from ood.data.batches import BatchReader, Stages, split
from ood import data as D
from ood.system import inputs
from ood.training.checkpoints import clean_state_dict, read_checkpoint
from ood.system.device import describe
from ood.errors import UserError
from ood.data.sources import note_source
from ood.io import check_writable_file, save_torch, write_text
from ood.system.progress import track
from ood.training.recipes import RECIPES, running_loss

LOG_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]
PLATEAU_FIELD = "plateau_value"  # the reference recipe's ReduceLROnPlateau input, logged too
# settings a resumed run must share with the run it continues (they change the weights it ends with)
RESUME_SETTINGS = ("epochs", "lr", "momentum", "weight_decay", "augment", "batch_size", "seed", "subset", "recipe")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state():
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": random.getstate()}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))
    random.setstate(_tuplify(state["python"]))


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def evaluate(model, loader, device, amp="off", channels_last=False, eval_mode=True, stages=None):
    """Test loss and accuracy; under torchrun each process scores its shard and the sums are reduced.
    ``eval_mode=False`` validates in train mode, as the reference recipe does (BatchNorm then updates its
    running statistics from these batches). ``stages``: the split transform the loader's set was built
    with (ood.data.batches), whose batch stage normalises its uint8 batches; None for float batches."""
    finish = (stages or Stages(None)).finish
    if eval_mode:
        model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad(), accel.autocast(device, amp):
        for x, y in loader:
            x, y = finish(x, device, channels_last), y.to(device, non_blocking=True)
            out = model(x).float()
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    loss, correct, n = accel.all_reduce_sum([loss, correct, n], device)
    return loss / n, correct / n


def epoch_seed(seed, epoch):
    """The seed of an epoch's loader generator: a resumed run draws the same augmentations."""
    return seed * 100_003 + epoch


def base_seed(seed, epoch):
    """The base seed a DataLoader with that generator gives its workers (its first int64 draw): worker w
    seeds ``random`` and torch with base + w, numpy from (base, w), before it loads anything."""
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return int(torch.empty((), dtype=torch.int64).random_(generator=g).item())


class _EpochIndices(Sampler):
    """The training sampler's indices, each with the epoch and its base seed (so that a kept worker
    knows when an epoch begins and how to seed it)."""

    def __init__(self, sampler):
        self.sampler, self.epoch, self.base = sampler, 0, 0

    def __iter__(self):
        return ((self.epoch, self.base, i) for i in self.sampler)

    def __len__(self):
        return len(self.sampler)


class _EpochSeeded(Dataset):
    """A dataset read by kept worker processes: at the first item of each epoch a worker seeds its random
    generators exactly as a DataLoader made for that epoch would have seeded a fresh worker."""

    def __init__(self, dataset):
        self.dataset, self._epoch = dataset, None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, base, i = key
        if epoch != self._epoch:
            info = get_worker_info()
            w = info.id if info is not None else 0
            random.seed(base + w)
            torch.manual_seed(base + w)
            np.random.seed(_generate_state(base, w))
            self._epoch = epoch
        return self.dataset[i]


class EpochLoader:
    """The training loader of a run. With worker processes, one set of them serves every epoch (starting
    them costs seconds per epoch on a GPU machine); each epoch they reseed themselves as the workers of a
    loader made for that epoch with the generator ``epoch_seed(seed, epoch)`` would be seeded, so the
    augmentations, hence the weights, are those of fresh loaders and a resumed run repeats them. Without
    workers, a loader per epoch (nothing to keep) draws from the main process's random stream as before."""

    def __init__(self, dataset, sampler, batch_size, seed, workers, device):
        self.dataset, self.sampler, self.batch_size, self.seed = dataset, sampler, batch_size, seed
        self.workers, self.device = workers, device
        self.indices = _EpochIndices(sampler) if workers > 0 else None
        self.kept = None if workers == 0 else DataLoader(
            _EpochSeeded(dataset), batch_size=batch_size, sampler=self.indices, persistent_workers=True,
            generator=torch.Generator().manual_seed(seed), **loader_options(workers, device))

    def epoch(self, epoch):
        self.sampler.set_epoch(epoch)
        if self.kept is None:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            return DataLoader(self.dataset, batch_size=self.batch_size, sampler=self.sampler, generator=g,
                              **loader_options(self.workers, self.device))
        self.indices.epoch, self.indices.base = epoch, base_seed(self.seed, epoch)
        return self.kept


class Trainer:
    """Training of ``setup`` (an ood.runtime.setup.Setup) with ``hyper`` (the training settings: epochs, lr,
    momentum, weight_decay, augment, resume, overwrite)."""

    def __init__(self, setup, hyper):
        self.setup = s = setup
        self.hyper = h = dict(hyper)
        self.rank, self.world = accel.world()
        if s.batch_size % self.world:
            raise UserError(f"--batch_size {s.batch_size} (the total over all processes) is not divisible by "
                            f"the {self.world} processes of this torchrun.")
        self.path = Path(s.checkpoint)
        self.log_path = self.path.with_suffix(".log.csv")
        check_writable_file(self.path, "--checkpoint")
        self.recipe = RECIPES[s.recipe]
        self.train_size = self.recipe.train_size(s, s.asked_size)
        self.meta = {"model": s.model.name, "dataset": s.id_set.name, "num_classes": s.id_set.num_classes,
                     "in_channels": s.id_set.channels, "input_size": self.recipe.recorded_size(s),
                     "train_input_size": self.train_size, "options": s.options, "recipe": s.recipe}
        if s.model.sized is not None and self.train_size != self.meta["input_size"]:
            raise UserError(f"--recipe {s.recipe} trains at {self.train_size} px and records {self.meta['input_size']} "
                            f"px for extraction, but {s.model.name} is built for one input size; use --recipe fixed.")
        self.settings = {"epochs": h["epochs"], "lr": h["lr"], "momentum": h["momentum"],
                         "weight_decay": h["weight_decay"], "augment": h["augment"], "batch_size": s.batch_size,
                         "seed": s.seed, "subset": s.subset, "recipe": s.recipe}
        self.best = None  # the reference recipe keeps the best test-accuracy epoch: (accuracy, state dict)
        self.loader = None  # the training loader, made at the first epoch and kept (EpochLoader)

    def build(self):
        s, h = self.setup, self.hyper
        model = s.build_model(run_size=self.train_size)  # first: a size it cannot take is refused before the data
        # each image goes through the transforms' image stages in the workers; the batch is normalised on
        # the device (ood.data.batches: the same values, without ToTensor's and Normalize's cost per image)
        self.train_stages = split(self.recipe.train_transform(s.id_set, self.train_size, h["augment"]))
        self.test_stages = split(D.test_transform(s.id_set, self.train_size))
        train_ds = D.build_id_dataset(s.id_set, s.data_root, "train", self.train_stages.image, s.download)
        test_ds = D.build_id_dataset(s.id_set, s.data_root, "test", self.test_stages.image)
        self.train_ds, self.test_ds = D.subset(train_ds, s.subset), D.subset(test_ds, s.subset)
        for role, ds in (("train", self.train_ds), ("test", self.test_ds)):  # what a launcher's marker is keyed on
            note_source(ds, f"{s.id_set.key}/{role}")
        if self.world > 1 and s.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN statistics over the global batch
        self.model = accel.prepare(model, s.device, s.channels_last)  # the plain module: state dicts, checkpoints
        net = self.model
        if self.world > 1:
            net = DDP(net, device_ids=[s.device.index] if s.device.type == "cuda" else None)
        self.net = self.eager = net  # run() compiles self.net once it knows how long the run is
        self.opt = torch.optim.SGD(self.model.parameters(), lr=h["lr"], momentum=h["momentum"],
                                   weight_decay=h["weight_decay"])
        self.scaler = torch.amp.GradScaler(s.device.type, enabled=s.amp == "fp16")
        # The same permutation per epoch for any number of processes (rank r takes every W-th index),
        # so a torchrun run sees the global batches of a single-process run.
        self.sampler = DistributedSampler(self.train_ds, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=s.seed)
        self.sched, self.plateau = self.recipe.schedulers(self.opt, h["epochs"])

    def resume(self):
        """Restore the state saved after the last finished epoch; returns the epoch to start from. A
        checkpoint trained with other settings is refused, naming every difference."""
        ckpt = read_checkpoint(self.path)
        if not isinstance(ckpt, dict) or "optimizer" not in ckpt:
            raise UserError(f"{self.path} is not a resumable checkpoint of train_model.py.")
        saved = {**ckpt["meta"], **ckpt.get("settings", {})}
        saved.setdefault("epochs", ckpt.get("epochs"))
        wanted = {**self.meta, **self.settings}
        keys = dict.fromkeys((*self.meta, *RESUME_SETTINGS))  # each once ("recipe" is in both)
        diff = [f"{k}: {saved.get(k)!r} in the checkpoint, {wanted[k]!r} now" for k in keys
                if k in saved and saved.get(k) != wanted[k]]
        if diff:
            raise UserError(f"cannot resume {self.path} with other settings ({'; '.join(diff)}). Use the "
                            f"checkpoint's settings, or --overwrite to train from scratch.")
        if ckpt.get("amp") not in (None, self.setup.amp):
            warnings.warn(f"resuming {self.path}, trained so far with amp {ckpt['amp']}, with amp {self.setup.amp}.")
        self.model.load_state_dict(clean_state_dict(ckpt.get("last_model", ckpt["model"])))
        if "best_acc" in ckpt:
            self.best = (ckpt["best_acc"], ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        for sched, key in ((self.sched, "scheduler"), (self.plateau, "plateau")):
            if sched is not None:
                sched.load_state_dict(ckpt[key])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        return ckpt["epoch"], ckpt["log"]

    def save(self, epoch, log):
        """Rank 0 writes the checkpoint (a single-process state dict, without DDP's prefixes) with the
        whole configuration of the run."""
        if self.rank != 0:
            return
        s = self.setup
        state = clean_state_dict(self.model.state_dict())
        ckpt = {"log": log, "model": state, "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict(), "amp": s.amp, "channels_last": s.channels_last,
                "world_size": self.world, "rng": rng_state(), "epoch": epoch, "epochs": self.hyper["epochs"],
                "finished": epoch == self.hyper["epochs"], "meta": self.meta, "settings": self.settings,
                "recipe": s.recipe, "environment": s.environment}
        if self.sched is not None:
            ckpt["scheduler"] = self.sched.state_dict()
        if self.plateau is not None:
            ckpt["plateau"] = self.plateau.state_dict()
        if self.recipe.keep == "best":  # "model" is what extraction loads: the best epoch; resume needs the last
            ckpt.update(model=self.best[1], last_model=state, best_acc=self.best[0])
        save_torch(ckpt, self.path)

    def write_log(self, rows):
        if self.rank != 0:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, LOG_FIELDS + ([PLATEAU_FIELD] if self.plateau is not None else []),
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text(buf.getvalue(), self.log_path)

    def train_epoch(self, epoch):
        s = self.setup
        if self.loader is None:
            self.loader = EpochLoader(self.train_ds, self.sampler, s.batch_size // self.world, s.seed, s.workers,
                                      s.device)
        loader = self.loader.epoch(epoch)
        self.net.train()
        total, correct, n, running = 0.0, 0, 0, 0.0
        # rank 0 reports for all processes: its shard times their number, each batch as many times
        batches = track(loader, f"training epoch {epoch + 1}/{self.hyper['epochs']}", len(self.sampler) * self.world,
                        s.quiet or self.rank != 0, size=lambda batch: len(batch[1]) * self.world)
        for x, y in batches:
            x, y = self.train_stages.finish(x, s.device, s.channels_last), y.to(s.device, non_blocking=True)
            with accel.autocast(s.device, s.amp):
                out = self.net(x)
                loss = F.cross_entropy(out.float(), y)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            total += loss.item() * len(y)
            running = running_loss(running, loss.item(), len(self.train_ds))
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
        total, correct, n = accel.all_reduce_sum([total, correct, n], s.device)
        if self.plateau is not None:  # the reference steps it after training, before validation
            self.plateau.step(running)
        return total / n, correct / n, running

    def run(self):
        s, h = self.setup, self.hyper
        if self.path.exists() and not (h["resume"] or h["overwrite"]):
            raise UserError(f"checkpoint {self.path} already exists. Pass --resume to continue that run, "
                            f"--overwrite to train from scratch, or --checkpoint for another path.")
        seed_everything(s.seed)  # before build(): the initial weights depend on it
        self.build()
        start, log = self.resume() if h["resume"] and self.path.exists() else (0, [])
        epochs = h["epochs"]
        if start >= epochs:
            self.say(f"{self.path} is already trained for {epochs} epochs; nothing to do.")
            return log
        if s.recipe == "reference" and s.compile == "auto":  # as the authors ran it, unless asked otherwise
            compiled, compile_reason = False, "the reference recipe trains eager"
        else:
            # on the whole run's images, not those left: a resumed run decides as the uninterrupted one did
            compiled, compile_reason = accel.compile_mode(s.compile, s.device, True,
                                                          images=len(self.train_ds) * epochs // self.world)
        if compiled:  # the training step only: validation runs eager (one more compilation would not pay)
            self.net = torch.compile(self.eager)
        shard = BatchReader(Subset(self.test_ds, range(self.rank, len(self.test_ds), self.world)))
        # read a batch at a time (an in-memory set: one indexing per batch); its own generator: the
        # persistent workers must not draw their seeds from the global stream, whose position differs
        # between a resumed and an uninterrupted run (dropout draws from it)
        test_loader = DataLoader(shard, sampler=BatchSampler(SequentialSampler(shard), s.batch_size, drop_last=False),
                                 batch_size=None, persistent_workers=s.workers > 0,
                                 generator=torch.Generator().manual_seed(s.seed), **loader_options(s.workers, s.device))
        self.say(f"training {s.model.name} on {s.id_set.name} at {self.train_size}x{self.train_size}"
                 + (f" (recipe {s.recipe}; evaluated at {self.meta['input_size']})" if s.recipe != "fixed" else "")
                 + f": {len(self.train_ds)} "
                 f"images, epochs {start + 1}..{epochs}, device {s.device}"
                 + (f" x {self.world} processes" if self.world > 1 else "")
                 + f", amp {s.amp} ({s.amp_reason}){', channels-last' if s.channels_last else ''}"
                 + f", compile {'on' if compiled else 'off'} ({compile_reason})"
                 + f"\n  on {describe(s.environment)}")
        for epoch in range(start, epochs):
            t0 = time.time()
            self.recipe.before_epoch(self.opt, epoch, epochs)
            lr = self.opt.param_groups[0]["lr"]
            train_loss, train_acc, running = self.train_epoch(epoch)
            test_loss, test_acc = evaluate(self.eager, test_loader, s.device, s.amp, s.channels_last,
                                           eval_mode=self.recipe.eval_mode_validation, stages=self.test_stages)
            if self.sched is not None:
                self.sched.step()
            if self.recipe.keep == "best" and (self.best is None or test_acc > self.best[0]):
                self.best = (test_acc, {k: v.detach().clone() for k, v in
                                        clean_state_dict(self.model.state_dict()).items()})
            log.append({"epoch": epoch + 1, "lr": lr, "train_loss": round(train_loss, 5),
                        "train_acc": round(train_acc, 5), "test_loss": round(test_loss, 5),
                        "test_acc": round(test_acc, 5), "seconds": round(time.time() - t0, 1)})
            if self.plateau is not None:
                log[-1][PLATEAU_FIELD] = running
            self.save(epoch + 1, log)  # the checkpoint holds the log too, so the two never disagree
            self.write_log(log)
            accel.barrier()  # nobody runs ahead of the checkpoint
            self.say(f"epoch {epoch + 1}/{epochs}  lr {lr:.4g}  train loss {train_loss:.4f} acc {train_acc:.4f}"
                     f"  test loss {test_loss:.4f} acc {test_acc:.4f}  ({time.time() - t0:.1f} s)")
        self.say(f"checkpoint: {self.path}  log: {self.log_path}")
        inputs.note(f"checkpoint {self.path}", [self.path], contents=True)  # the step's marker follows it
        return log

    def say(self, text):
        if self.rank == 0:
            print(text, flush=True)
