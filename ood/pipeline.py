"""One backbone pass per image set, cached: the features every score is computed from.

``Run`` ties the options of a run together: the ID set, the model and its checkpoint, the input size.
It extracts phi, logits and labels of an image set once, caches them in
``<stored_pattern_dir>/<dataset>/<model>/features/<set>.pt`` with a fingerprint, and recomputes them only
when the fingerprint changes (checkpoint contents, model and its options, input size, transform, data
set, number of images). It fits the scores' stored patterns the same way (``patterns/<score>.pt``).
"""
import re
import sys
from functools import cached_property
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

import models
from . import accel
from . import data as D
from .checkpoints import checkpoint_id, default_checkpoint, load_backbone
from .cli import model_options, resolve_device, safe_model_name
from .errors import UserError
from .io import save_torch
from .training import loader_options

CACHE_VERSION = 1


def safe_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@torch.inference_mode()
def extract(model, dataset, batch_size, device, workers=0, desc="", quiet=False, amp="off",
            channels_last=False, features_fn=None):
    """phi, logits and labels of every image of ``dataset``, in dataset order (eval mode).
    ``features_fn`` replaces ``model.forward_features`` (e.g. its torch.compile'd version)."""
    model.eval()
    features_fn = features_fn or model.forward_features
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, **loader_options(workers, device))
    feats, logits, labels = [], [], []
    bar = tqdm(loader, desc=desc, leave=False, disable=quiet or not sys.stderr.isatty())
    for x, y in bar:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with accel.autocast(device, amp):
            f = features_fn(x)
            out = model.fc(f)
        feats.append(f.float().cpu())
        logits.append(out.float().cpu())
        labels.append(torch.as_tensor(y))
    if not feats:
        return {"features": torch.empty(0, model.feature_dim), "logits": torch.empty(0, model.fc.out_features),
                "labels": torch.empty(0, dtype=torch.long)}
    return {"features": torch.cat(feats), "logits": torch.cat(logits), "labels": torch.cat(labels).long()}


class Run:
    """The options of one run and the cached artefacts derived from them."""

    def __init__(self, args, stored_pattern_dir="stored_pattern"):
        self.args = args
        self.id_set = D.get_id_set(args.dataset, args.id_classes)
        self.spec = models.get_spec(args.model)
        self.size = args.resize_val or self.spec.input_size
        self.device = accel.setup(args.device) or resolve_device(args.device)
        self.amp = accel.amp_mode(args, self.device, training=False)
        if args.checkpoint is None and not args.pretrained:
            args.checkpoint = str(default_checkpoint(self.id_set.name, args.model))
        self.root = Path(stored_pattern_dir) / self.id_set.name / safe_model_name(args.model)
        self.quiet = args.quiet
        self._sets = {}

    @property
    def rank(self):
        return accel.world()[0]

    @property
    def world(self):
        return accel.world()[1]

    # -- the model -------------------------------------------------------------------------------------
    @cached_property
    def checkpoint_id(self):
        return checkpoint_id(self.args)

    @cached_property
    def model(self):
        a = self.args
        m = models.build_model(a.model, self.id_set.num_classes, self.id_set.channels,
                               pretrained=a.pretrained, **model_options(a))
        if a.checkpoint:
            load_backbone(m, a.checkpoint, {"model": a.model, "num_classes": self.id_set.num_classes,
                                            "in_channels": self.id_set.channels})
        elif m.fc.out_features != self.id_set.num_classes:
            raise UserError(f"--pretrained {a.model} has {m.fc.out_features} outputs but {a.dataset} has "
                            f"{self.id_set.num_classes} classes: fine-tune it with train_model.py first.")
        return accel.prepare(m, self.device, a).eval()

    @cached_property
    def features_fn(self):
        return torch.compile(self.model.forward_features) if self.args.compile else self.model.forward_features

    def head(self):
        """The final linear layer {"weight", "bias"}, cached beside the features."""
        fp = {"version": CACHE_VERSION, "checkpoint": self.checkpoint_id, "model": self.args.model,
              "options": model_options(self.args)}
        path = self.root / "head.pt"
        cached = self._load(path, fp)
        if cached is not None:
            return cached
        head = {"weight": self.model.fc.weight.detach().float().cpu(),
                "bias": self.model.fc.bias.detach().float().cpu(), "fingerprint": fp}
        save_torch(head, path)
        return head

    # -- image sets ------------------------------------------------------------------------------------
    def dataset(self, name):
        """Dataset of image set ``name``: "train", "test" (ID) or an OOD set name / NAME=PATH."""
        tf = D.test_transform(self.id_set, self.size)
        root, a = self.args.dataset_path, self.args
        if name in ("train", "test"):
            ds = D.build_id_dataset(self.id_set, root, name == "train", tf, download=a.download)
        else:
            spec = D.resolve_ood(name)
            if spec.name == "SVHN" and a.download and not (Path(root) / "SVHN" / "test_32x32.mat").exists():
                D.torchvision.datasets.SVHN(str(Path(root) / "SVHN"), split="test", download=True)
            ds = D.held_out(self.id_set, root, tf, a.download) if spec.name == "HeldOut" else spec.build(root, tf)
        if len(ds) == 0:
            raise UserError(f"image set {name} under {root} holds no images.")
        return D.subset(ds, a.subset), tf

    def set_key(self, name):
        return name if name in ("train", "test") else safe_name(D.resolve_ood(name).name)

    def fingerprint(self, name, dataset, transform):
        a = self.args
        origin = name if name in ("train", "test") else D.resolve_ood(name).folder
        return {"version": CACHE_VERSION, "checkpoint": self.checkpoint_id, "model": a.model,
                "options": model_options(a), "input_size": self.size, "dataset": self.id_set.name,
                "set": origin, "n_files": len(dataset), "transform": repr(transform), "amp": self.amp}

    def _set(self, name):
        """(dataset, fingerprint, cache path) of image set ``name``, built once per run."""
        if name not in self._sets:
            ds, tf = self.dataset(name)
            self._sets[name] = (ds, self.fingerprint(name, ds, tf),
                                self.root / "features" / f"{self.set_key(name)}.pt")
        return self._sets[name]

    def features(self, name):
        """Cached (or freshly extracted) phi/logits/labels of image set ``name``."""
        ds, fp, path = self._set(name)
        cached = self._load(path, fp)
        if cached is not None:
            return cached
        # under torchrun, process r extracts images r, r + W, ...; the parts are gathered in order
        shard = ds if self.world == 1 else Subset(ds, range(self.rank, len(ds), self.world))
        out = extract(self.model, shard, self.args.batch_size, self.device, self.args.workers,
                      desc=f"features {self.set_key(name)}", quiet=self.quiet or self.rank != 0, amp=self.amp,
                      channels_last=accel.channels_last(self.args, self.device), features_fn=self.features_fn)
        out = accel.gather_in_order(out, len(ds))
        out["fingerprint"] = fp
        if self.rank == 0:
            save_torch(out, path)
        accel.barrier()
        return out

    # -- stored patterns -------------------------------------------------------------------------------
    def pattern(self, score):
        """The fitted state of ``score`` (patterns/<name>.pt), refitted when the training features or
        the score's fit settings change. The training features are read only when a refit is needed."""
        fp = {"version": CACHE_VERSION, "train": self._set("train")[1], "settings": score.fit_settings()}
        path = self.root / "patterns" / f"{score.name}.pt"
        cached = self._load(path, fp)
        if cached is not None:
            return cached["state"]
        state = score.fit(self.features("train"), self.head())
        save_torch({"state": state, "score": score.name, "settings": score.fit_settings(),
                    "fingerprint": fp}, path)
        return state

    @staticmethod
    def _load(path, fingerprint):
        if not path.exists():
            return None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return None  # unreadable (e.g. from another version): recompute
        return obj if obj.get("fingerprint") == fingerprint else None
