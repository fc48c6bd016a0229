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
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

import models
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


def evaluate(model, loader, device):
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return loss / n, correct / n


class Trainer:
    def __init__(self, args):
        self.args = a = args
        self.id_set = D.get_id_set(a.dataset)
        self.spec = models.get_spec(a.model)
        self.size = a.resize_val or self.spec.input_size
        self.device = resolve_device(a.device)
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
        self.model = models.build_model(a.model, self.id_set.num_classes, self.id_set.channels,
                                        pretrained=a.pretrained, **model_options(a)).to(self.device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=a.lr, momentum=a.momentum,
                                   weight_decay=a.weight_decay)
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
        set_rng_state(ckpt["rng"])
        return ckpt["epoch"], ckpt["log"]

    def save(self, epoch, log):
        save_torch({"log": log, "model": clean_state_dict(self.model.state_dict()), "optimizer": self.opt.state_dict(),
                    "scheduler": self.sched.state_dict(), "rng": rng_state(), "epoch": epoch,
                    "epochs": self.args.epochs, "finished": epoch == self.args.epochs, "meta": self.meta,
                    "args": {k: v for k, v in vars(self.args).items() if isinstance(v, (int, float, str, bool))}},
                   self.path)

    def write_log(self, rows):
        buf = io.StringIO()
        w = csv.DictWriter(buf, LOG_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text(buf.getvalue(), self.log_path)

    def train_epoch(self, epoch):
        a = self.args
        g = torch.Generator().manual_seed(a.seed * 100_003 + epoch)
        loader = DataLoader(self.train_ds, batch_size=a.batch_size, shuffle=True, generator=g,
                            num_workers=a.workers, pin_memory=self.device.type == "cuda", drop_last=False)
        self.model.train()
        total, correct, n = 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{a.epochs}", leave=False,
                   disable=a.quiet or not sys.stderr.isatty())
        for x, y in bar:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            out = self.model(x)
            loss = F.cross_entropy(out, y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
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
            print(f"{self.path} is already trained for {a.epochs} epochs; nothing to do.")
            return log
        test_loader = DataLoader(self.test_ds, batch_size=a.batch_size, shuffle=False, num_workers=a.workers,
                                 pin_memory=self.device.type == "cuda")
        print(f"training {a.model} on {self.id_set.name} at {self.size}x{self.size}: {len(self.train_ds)} "
              f"images, epochs {start + 1}..{a.epochs}, device {self.device}", flush=True)
        for epoch in range(start, a.epochs):
            t0 = time.time()
            lr = self.opt.param_groups[0]["lr"]
            train_loss, train_acc = self.train_epoch(epoch)
            test_loss, test_acc = evaluate(self.model, test_loader, self.device)
            self.sched.step()
            log.append({"epoch": epoch + 1, "lr": lr, "train_loss": round(train_loss, 5),
                        "train_acc": round(train_acc, 5), "test_loss": round(test_loss, 5),
                        "test_acc": round(test_acc, 5), "seconds": round(time.time() - t0, 1)})
            self.save(epoch + 1, log)  # the checkpoint holds the log too, so the two never disagree
            self.write_log(log)
            print(f"epoch {epoch + 1}/{a.epochs}  lr {lr:.4g}  train loss {train_loss:.4f} acc {train_acc:.4f}"
                  f"  test loss {test_loss:.4f} acc {test_acc:.4f}  ({time.time() - t0:.1f} s)", flush=True)
        print(f"checkpoint: {self.path}  log: {self.log_path}")
        return log
