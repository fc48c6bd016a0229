"""Backbone training: the recipe of the authors' train_model.py (METHOD.md section 1) without its defects.

- trains at the input size it is tested at (the reference built its transform before setting the size);
- the model is in train mode for training and eval mode for evaluation (the reference never switched
  back, so BatchNorm statistics came from the test set);
- the checkpoint holds the last epoch's weights; test accuracy is logged to a CSV each epoch, never used
  to choose the weights (the reference kept the best test-accuracy epoch);
- MultiStepLR (lr / 10 at 50% and 75% of training) stepped once per epoch.

The checkpoint is rewritten atomically after every epoch with everything needed to resume: weights,
optimizer, scheduler, RNG states and the epoch. The data order of each epoch comes from a generator
seeded by (seed, epoch), so a resumed run ends with the same weights as an uninterrupted one.
"""
import csv
import io
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

import models
from . import accel
from . import data as D
from .checkpoints import clean_state_dict, default_checkpoint, read_checkpoint
from .cli import model_options, resolve_device
from .errors import UserError
from .io import save_torch, write_text

LOG_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]


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


def evaluate(model, loader, device, args, amp="off"):
    """Test loss and accuracy; under torchrun each process scores its shard and the sums are reduced."""
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.inference_mode(), accel.autocast(device, amp):
        for x, y in loader:
            x, y = accel.to_input(x, device, args), y.to(device, non_blocking=True)
            out = model(x).float()
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    loss, correct, n = accel.all_reduce_sum([loss, correct, n], device)
    return loss / n, correct / n


class Trainer:
    def __init__(self, args):
        self.args = a = args
        self.id_set = D.get_id_set(a.dataset, a.id_classes)
        self.spec = models.get_spec(a.model)
        self.size = a.resize_val or self.spec.input_size
        self.device = accel.setup(a.device) or resolve_device(a.device)
        self.rank, self.world = accel.world()
        self.amp = accel.amp_mode(a, self.device, training=True)
        if a.batch_size % self.world:
            raise UserError(f"--batch_size {a.batch_size} (the total over all processes) is not divisible by "
                            f"the {self.world} processes of this torchrun.")
        self.path = Path(a.checkpoint or default_checkpoint(self.id_set.name, a.model))
        self.log_path = self.path.with_suffix(".log.csv")
        self.meta = {"model": a.model, "dataset": self.id_set.name, "num_classes": self.id_set.num_classes,
                     "in_channels": self.id_set.channels, "input_size": self.size, "options": model_options(a)}
        if a.epochs < 1:
            raise UserError("--epochs must be at least 1.")

    def build(self):
        a = self.args
        train_ds = D.build_id_dataset(self.id_set, a.dataset_path, True,
                                      D.train_transform(self.id_set, self.size, a.augment), a.download)
        test_ds = D.build_id_dataset(self.id_set, a.dataset_path, False, D.test_transform(self.id_set, self.size))
        self.train_ds, self.test_ds = D.subset(train_ds, a.subset), D.subset(test_ds, a.subset)
        model = models.build_model(a.model, self.id_set.num_classes, self.id_set.channels,
                                   pretrained=a.pretrained, **model_options(a))
        if self.world > 1 and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN statistics over the global batch
        self.model = accel.prepare(model, self.device, a)  # the plain module: state dicts, checkpoints
        net = self.model
        if self.world > 1:
            net = DDP(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.net = torch.compile(net) if a.compile else net
        self.opt = torch.optim.SGD(self.model.parameters(), lr=a.lr, momentum=a.momentum,
                                   weight_decay=a.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        # The same permutation per epoch for any number of processes (rank r takes every W-th index),
        # so a torchrun run sees the global batches of a single-process run.
        self.sampler = DistributedSampler(self.train_ds, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=a.seed)
        milestones = sorted({max(1, int(a.epochs * 0.5)), max(1, int(a.epochs * 0.75))})
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones, gamma=0.1)

    def resume(self):
        """Restore the state saved after the last finished epoch; returns the epoch to start from."""
        ckpt = read_checkpoint(self.path)
        if not isinstance(ckpt, dict) or "optimizer" not in ckpt:
            raise UserError(f"{self.path} is not a resumable checkpoint of train_model.py.")
        for k in ("model", "dataset", "num_classes", "in_channels", "input_size", "options"):
            if ckpt["meta"].get(k) != self.meta[k]:
                raise UserError(f"cannot resume {self.path}: it was trained with {k}={ckpt['meta'].get(k)!r}, "
                                f"this run asks for {self.meta[k]!r}. Use the same settings, or --overwrite.")
        if ckpt["epochs"] != self.args.epochs:
            raise UserError(f"cannot resume {self.path}: it was started with --epochs {ckpt['epochs']}, this "
                            f"run asks for {self.args.epochs} (the learning-rate schedule depends on it).")
        self.model.load_state_dict(clean_state_dict(ckpt["model"]))
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        return ckpt["epoch"], ckpt["log"]

    def save(self, epoch, log):
        """Rank 0 writes the checkpoint (a single-process state dict, without DDP's prefixes)."""
        if self.rank != 0:
            return
        save_torch({"log": log, "model": clean_state_dict(self.model.state_dict()), "optimizer": self.opt.state_dict(),
                    "scaler": self.scaler.state_dict(), "amp": self.amp, "world_size": self.world,
                    "scheduler": self.sched.state_dict(), "rng": rng_state(), "epoch": epoch,
                    "epochs": self.args.epochs, "finished": epoch == self.args.epochs, "meta": self.meta,
                    "args": {k: v for k, v in vars(self.args).items() if isinstance(v, (int, float, str, bool))}},
                   self.path)

    def write_log(self, rows):
        if self.rank != 0:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, LOG_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text(buf.getvalue(), self.log_path)

    def train_epoch(self, epoch):
        a = self.args
        self.sampler.set_epoch(epoch)
        # worker processes draw their augmentation seeds from this generator: seeded per epoch, so a
        # resumed run repeats them (the workers are therefore not persistent across epochs)
        g = torch.Generator().manual_seed(a.seed * 100_003 + epoch)
        loader = DataLoader(self.train_ds, batch_size=a.batch_size // self.world, sampler=self.sampler,
                            generator=g, **loader_options(a.workers, self.device))
        self.net.train()
        total, correct, n = 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{a.epochs}", leave=False,
                   disable=a.quiet or self.rank != 0 or not sys.stderr.isatty())
        for x, y in bar:
            x, y = accel.to_input(x, self.device, a), y.to(self.device, non_blocking=True)
            with accel.autocast(self.device, self.amp):
                out = self.net(x)
                loss = F.cross_entropy(out.float(), y)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            total += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
        total, correct, n = accel.all_reduce_sum([total, correct, n], self.device)
        return total / n, correct / n

    def run(self):
        a = self.args
        if self.path.exists() and not (a.resume or a.overwrite):
            raise UserError(f"checkpoint {self.path} already exists. Pass --resume to continue that run, "
                            f"--overwrite to train from scratch, or --checkpoint for another path.")
        seed_everything(a.seed)  # before build(): the initial weights depend on it
        self.build()
        start, log = self.resume() if a.resume and self.path.exists() else (0, [])
        if start >= a.epochs:
            self.say(f"{self.path} is already trained for {a.epochs} epochs; nothing to do.")
            return log
        shard = Subset(self.test_ds, range(self.rank, len(self.test_ds), self.world))
        test_loader = DataLoader(shard, batch_size=a.batch_size, shuffle=False,
                                 persistent_workers=a.workers > 0, **loader_options(a.workers, self.device))
        self.say(f"training {a.model} on {self.id_set.name} at {self.size}x{self.size}: {len(self.train_ds)} "
                 f"images, epochs {start + 1}..{a.epochs}, device {self.device}"
                 + (f" x {self.world} processes" if self.world > 1 else "") + f", amp {self.amp}")
        for epoch in range(start, a.epochs):
            t0 = time.time()
            lr = self.opt.param_groups[0]["lr"]
            train_loss, train_acc = self.train_epoch(epoch)
            test_loss, test_acc = evaluate(self.net, test_loader, self.device, a, self.amp)
            self.sched.step()
            log.append({"epoch": epoch + 1, "lr": lr, "train_loss": round(train_loss, 5),
                        "train_acc": round(train_acc, 5), "test_loss": round(test_loss, 5),
                        "test_acc": round(test_acc, 5), "seconds": round(time.time() - t0, 1)})
            self.save(epoch + 1, log)  # the checkpoint holds the log too, so the two never disagree
            self.write_log(log)
            accel.barrier()  # nobody runs ahead of the checkpoint
            self.say(f"epoch {epoch + 1}/{a.epochs}  lr {lr:.4g}  train loss {train_loss:.4f} acc {train_acc:.4f}"
                     f"  test loss {test_loss:.4f} acc {test_acc:.4f}  ({time.time() - t0:.1f} s)")
        self.say(f"checkpoint: {self.path}  log: {self.log_path}")
        return log

    def say(self, text):
        if self.rank == 0:
            print(text, flush=True)


def loader_options(workers, device):
    """DataLoader settings that keep the model, not decoding and resizing, the bottleneck."""
    opts = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        opts["prefetch_factor"] = 4
    return opts
