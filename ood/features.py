"""One backbone pass per image set, cached: the features every score is computed from.

``FeatureStore`` extracts phi, logits and labels of an image set once and caches them in
``<stored_pattern_dir>/<dataset>/<model>/features/<set>.pt`` with a fingerprint: the checkpoint's
contents, the backbone and its options, the input size, transform and precision, the data set, and the
names, sizes and modification times of the image files (``ood.fingerprint``). A file whose fingerprint
differs is recomputed, never silently reused. Each file also carries a digest of its tensors.

Stored patterns (``patterns/<score>-<settings>.pt``) are keyed on that digest of the training features,
the head and the score's fit settings. Checking them reads only the small fields of
``features/train.pt`` (memory-mapped) and never lists the training images, so an ImageNet run with
everything cached starts at once; ``generate_stored_pattern.py`` re-checks the training images.
"""
import math
import sys
import time
import warnings
from functools import cached_property
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from . import accel
from . import data as D
from .checkpoints import load_backbone
from .errors import UserError
from .fingerprint import digest, fingerprint, source_digest, tensor_digest
from .io import load_torch, save_torch

TRAIN, TEST = "train", "test"
TENSORS = ("features", "logits", "labels")


def loader_options(workers, device):
    """DataLoader settings that keep the model, not decoding and resizing, the bottleneck."""
    opts = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        opts["prefetch_factor"] = 4
    return opts


@torch.inference_mode()
def extract(model, dataset, batch_size, device, workers=0, desc="", quiet=False, amp="off",
            channels_last=False, features_fn=None):
    """phi, logits and labels of every image of ``dataset``, in dataset order (eval mode).
    ``features_fn`` replaces ``model.forward_features`` (e.g. its torch.compile'd version). The loader
    has its own generator, so extraction never draws from the global random stream."""
    model.eval()
    features_fn = features_fn or model.forward_features
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator().manual_seed(0),
                        **loader_options(workers, device))
    feats, logits, labels = [], [], []
    bar = tqdm(loader, desc=desc, leave=False, disable=quiet or not sys.stderr.isatty())
    try:
        for x, y in bar:
            x = accel.to_input(x, device, channels_last)
            with accel.autocast(device, amp):
                f = features_fn(x)
                out = model.fc(f)
            feats.append(f.float().cpu())
            logits.append(out.float().cpu())
            labels.append(torch.as_tensor(y))
    except D.BadImage as e:
        raise UserError(f"{desc or 'extraction'}: {D.bad_image_message(e)}") from None
    if not feats:
        return {"features": torch.empty(0, model.feature_dim), "logits": torch.empty(0, model.fc.out_features),
                "labels": torch.empty(0, dtype=torch.long)}
    return {"features": torch.cat(feats), "logits": torch.cat(logits), "labels": torch.cat(labels).long()}


def check_finite(out, what):
    """Non-finite features or logits are an error (a broken checkpoint or a diverged training)."""
    for k in ("features", "logits"):
        bad = ~torch.isfinite(out[k]).all(1)
        if bad.any():
            first = int(bad.nonzero()[0])
            raise UserError(f"{what}: the {k} of {int(bad.sum())} of {len(bad)} images are not finite (NaN or "
                            f"inf; the first is image {first}). Is the checkpoint broken or its training "
                            f"diverged (see its .log.csv)?")


class FeatureStore:
    """The cached artefacts of one backbone (a ``Setup``): features per image set, the head, and the
    stored patterns of the scores."""

    def __init__(self, setup, stored_pattern_dir="stored_pattern"):
        self.setup = setup
        self.root = Path(stored_pattern_dir) / setup.id_set.name / setup.store_name
        self._sets = {}      # key -> (dataset, fingerprint): each set listed once per run
        self._loaded = {}    # key -> checked features: each file read and verified once per run
        self._head = None
        self._train_digest = None
        self._warned_empty = False

    @property
    def rank(self):
        return accel.world()[0]

    @property
    def world(self):
        return accel.world()[1]

    # -- the model -------------------------------------------------------------------------------------
    @cached_property
    def model(self):
        s = self.setup
        m = s.build_model()
        if s.checkpoint is not None:
            load_backbone(m, s.checkpoint, {"model": s.model.name, "num_classes": s.id_set.num_classes,
                                            "in_channels": s.id_set.channels})
        elif m.fc.out_features != s.id_set.num_classes:
            raise UserError(f"--pretrained {s.model.name} has {m.fc.out_features} outputs but {s.id_set.name} has "
                            f"{s.id_set.num_classes} classes: fine-tune it with train_model.py first.")
        return accel.prepare(m, s.device, s.channels_last).eval()

    @cached_property
    def features_fn(self):
        return torch.compile(self.model.forward_features) if self.setup.compile else self.model.forward_features

    def head(self):
        """The final linear layer {"weight", "bias", "digest"}, cached beside the features."""
        if self._head is None:
            self._head = self._load_head()
        return self._head

    def _load_head(self):
        s = self.setup
        fp = fingerprint("head", checkpoint=s.checkpoint_id, model=s.model.name, options=s.options)
        path = self.root / "head.pt"
        cached = load_torch(path)
        if cached is not None and cached.get("fingerprint") == fp:
            return cached
        head = {"weight": self.model.fc.weight.detach().float().cpu(),
                "bias": self.model.fc.bias.detach().float().cpu()}
        head.update(digest=tensor_digest(head), fingerprint=fp)
        if self.rank == 0:
            save_torch(head, path)
        return head

    # -- image sets ------------------------------------------------------------------------------------
    @staticmethod
    def key(spec):
        return spec if spec in (TRAIN, TEST) else spec.key

    def _static(self, spec):
        """The part of a set's fingerprint known without listing its images."""
        s = self.setup
        origin = spec if spec in (TRAIN, TEST) else spec.folder
        return fingerprint("features", checkpoint=s.checkpoint_id, model=s.model.name, options=s.options,
                           input_size=s.input_size, dataset=s.id_set.name, set=origin, subset=s.subset,
                           transform=repr(D.test_transform(s.id_set, s.input_size)), amp=s.amp)

    def path(self, spec):
        return self.root / "features" / f"{self.key(spec)}.pt"

    def dataset(self, spec):
        """The torch Dataset of ``spec``: "train", "test" (ID) or an ``OODSet``."""
        s = self.setup
        tf = D.test_transform(s.id_set, s.input_size)
        if spec in (TRAIN, TEST):
            ds = D.build_id_dataset(s.id_set, s.data_root, spec == TRAIN, tf, download=s.download)
        elif spec.name == "HeldOut":
            ds = D.held_out(s.id_set, s.data_root, tf, s.download)
        else:
            ds = spec.build(s.data_root, tf, s.download)
        if len(ds) == 0:
            raise UserError(f"image set {self.key(spec)} under {s.data_root} holds no images.")
        return D.subset(ds, s.subset)

    def _set(self, spec):
        """(dataset, full fingerprint) of ``spec``, built once per run (this lists its image files)."""
        key = self.key(spec)
        if key not in self._sets:
            ds = self.dataset(spec)
            fp = {**self._static(spec), "n_images": len(ds), "source": source_digest(ds, key)}
            self._sets[key] = (ds, fp)
        return self._sets[key]

    def check(self, specs):
        """Build every image set's dataset and fingerprint now, so that a missing set or an empty
        image file stops the run before any extraction."""
        for spec in specs:
            self._set(spec)

    def features(self, spec):
        """Cached (or freshly extracted) phi/logits/labels of image set ``spec``; read once per run."""
        key = self.key(spec)
        if key not in self._loaded:
            self._loaded[key] = self._features(spec)
        return self._loaded[key]

    def _features(self, spec):
        ds, fp = self._set(spec)
        path = self.path(spec)
        cached = load_torch(path, mmap=True)
        if cached is not None and cached.get("fingerprint") == fp and self._intact(cached, path):
            return cached
        # under torchrun, process r extracts images r, r + W, ...; the parts are gathered in order
        shard = ds if self.world == 1 else Subset(ds, range(self.rank, len(ds), self.world))
        s = self.setup
        t0 = time.perf_counter()
        out = extract(self.model, shard, s.batch_size, s.device, s.workers, desc=f"features {self.key(spec)}",
                      quiet=s.quiet or self.rank != 0, amp=s.amp, channels_last=s.channels_last,
                      features_fn=self.features_fn)
        out = accel.gather_in_order(out, len(ds))
        out["seconds"] = time.perf_counter() - t0  # what this backbone pass cost (the sweep reports it)
        check_finite(out, f"image set {self.key(spec)}")
        out["digest"] = tensor_digest({k: out[k] for k in TENSORS})
        out["fingerprint"] = fp
        if self.rank == 0:
            save_torch(out, path)
        accel.barrier()
        return out

    @staticmethod
    def _intact(cached, path):
        """A cache file whose tensors still match their digest (not edited by hand, not corrupted)."""
        if not all(k in cached for k in TENSORS) or "digest" not in cached:
            return False
        if tensor_digest({k: cached[k] for k in TENSORS}) != cached["digest"]:
            warnings.warn(f"{path} was modified after it was written (its contents no longer match its "
                          f"digest); recomputing it.")
            return False
        return True

    def train_digest(self):
        """The digest of the training features, read from features/train.pt without listing the
        training images when the file matches this setup; extracted otherwise."""
        if TRAIN in self._loaded:
            return self._loaded[TRAIN]["digest"]
        if self._train_digest is None:
            cached = load_torch(self.path(TRAIN), mmap=True)
            static = self._static(TRAIN)
            if cached is not None and "digest" in cached and \
                    {k: cached.get("fingerprint", {}).get(k) for k in static} == static:
                self._train_digest = cached["digest"]
            else:
                return self.features(TRAIN)["digest"]
        return self._train_digest

    # -- stored patterns -------------------------------------------------------------------------------
    def pattern(self, score):
        """The fitted state of ``score`` (patterns/<score>-<fit settings>.pt), refitted when the training
        features, the head or the score's fit settings change."""
        head = self.head()
        fp = pattern_fingerprint(score, self.train_digest(), head["digest"])
        path = self.root / "patterns" / f"{score.key()}-{digest(score.fit_settings(), 10)}.pt"
        cached = load_torch(path, mmap=True)  # a bank of training features can be as large as they are
        if cached is not None and cached.get("fingerprint") == fp:
            return cached["state"]
        train = self.features(TRAIN)
        fp = pattern_fingerprint(score, train["digest"], head["digest"])  # the features may have been redone
        self._warn_empty_classes(train, head)
        state = score.fit(train, head)
        _check_state(state, score)
        save_torch({"state": state, "score": score.name, "settings": score.fit_settings(), "fingerprint": fp}, path)
        return state

    def _warn_empty_classes(self, train, head):
        correct = train["labels"][train["logits"].argmax(1) == train["labels"]]
        counts = torch.bincount(correct.long(), minlength=head["weight"].shape[0])
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty and not self._warned_empty:
            self._warned_empty = True
            warnings.warn(f"classes {empty} have no correctly classified training image, so no stored pattern: "
                          f"the scores built on stored patterns score inputs predicted as them against the "
                          f"patterns of all classes.")


def pattern_fingerprint(score, train_digest, head_digest):
    """What a stored pattern is keyed on: the score's class and state format, its fit settings, and the
    contents of the training features and of the head it was fitted from."""
    return fingerprint("pattern", score=f"{type(score).__module__}.{type(score).__qualname__}",
                       version=score.version, fit=score.fit_settings(), train=train_digest, head=head_digest)


def _check_state(state, score):
    """A fitted state is a dict of tensors and plain values, all finite."""
    def walk(v, where):
        if isinstance(v, torch.Tensor):
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise UserError(f"{score.name}: fitting gave non-finite values in {where}; are the training "
                                f"features finite and the settings ({score.fit_settings()}) sensible?")
        elif isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{score.name}: fitting gave {v} for {where}.")
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{where}.{k}")
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, f"{where}[{i}]")
    walk(state, "state")
