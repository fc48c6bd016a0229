"""One backbone pass per image set, cached: the features every score is computed from.

``FeatureStore`` extracts phi, logits and labels of an image set once and caches them in
``<stored_pattern_dir>/<dataset>/<model>/features/<set>.pt`` with a fingerprint: the checkpoint's
contents, the backbone and its options, the input size, transform and precision, the data set, and the
names, sizes and modification times of the image files (``ood.data.sources``). A file whose fingerprint
differs is recomputed, never silently reused. Each file also carries a digest of its tensors.

Stored patterns (``patterns/<score>-<settings>.pt``) are keyed on that digest of the training features,
the head and the score's fit settings. Checking them reads ``features/train.pt`` memory-mapped and
lists the training images (names, sizes, modification times; no image is decoded), so rewritten
training images are noticed by the scoring script too, and the features and patterns are redone.
"""
import math
import time
import warnings
from collections import OrderedDict
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, ConcatDataset, DataLoader, SequentialSampler, Subset

from ood.system import accel
from ood.system.accel import loader_options
from ood import data as D
from ood.training.checkpoints import load_backbone
from ood.errors import UserError
from ood.cache.fingerprint import digest, fingerprint, tensor_digest
from ood.data.batches import BatchReader, Stages, split
from ood.data.sources import source_digest
from ood.io import check_writable_dir, load_torch, save_torch
from ood.plugins import describe_score, plugin_code, running
from ood.system.progress import track

TRAIN, TEST, VAL = "train", "test", "val"  # the ID splits, by role (VAL: OpenOOD's ID validation list)
ID_SPLITS = (TRAIN, TEST, VAL)
TENSORS = ("features", "logits", "labels")


@torch.inference_mode()
def extract(model, dataset, batch_size, device, workers=0, desc="", quiet=False, amp="off",
            channels_last=False, features_fn=None, stages=None):
    """phi, logits and labels of every image of ``dataset``, in dataset order (eval mode).
    ``stages``: the split transform the set was built with (``ood.data.batches.split``: the set's items
    are uint8 pixels, normalised here a batch at a time); None when its items are the model's input.
    The set is read a batch at a time (``BatchReader``: one indexing of an in-memory array where that is
    exact). ``features_fn`` replaces ``model.forward_features`` (e.g. its torch.compile'd version). The
    loader has its own generator, so extraction never draws from the global random stream."""
    model.eval()
    features_fn = features_fn or model.forward_features
    finish = (stages or Stages(None)).finish
    reader = BatchReader(dataset)
    loader = DataLoader(reader, sampler=BatchSampler(SequentialSampler(reader), batch_size, drop_last=False),
                        batch_size=None, generator=torch.Generator().manual_seed(0), **loader_options(workers, device))
    feats, logits, labels = [], [], []
    try:
        for x, y in track(loader, desc or "features", len(dataset), quiet, size=lambda batch: len(batch[1])):
            x = finish(x, device, channels_last)
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


def several_errors(errors):
    """One line for the errors of several image sets ({set: message}): how many and which first, then each
    message; a last sentence they all end with (where to pass another data root) comes once, at the end."""
    if len(errors) == 1:
        return next(iter(errors.values()))
    messages = list(errors.values())
    last = {m.rsplit(". ", 1)[-1] for m in messages}
    common = last.pop() if len(last) == 1 and all(". " in m for m in messages) else ""
    if common:
        messages = [m[:-len(common)].rstrip() for m in messages]
    return (f"{len(errors)} image sets this run needs are missing or unreadable ({', '.join(errors)}): "
            f"{' '.join(messages)}{' ' + common if common else ''}")


class FeatureStore:
    """The cached artefacts of one backbone (a ``Setup``): features per image set, the head, and the
    stored patterns of the scores."""

    def __init__(self, setup, stored_pattern_dir="stored_pattern"):
        self.setup = setup
        self.root = Path(stored_pattern_dir) / setup.id_set.key / setup.store_name
        self._sets = {}      # key -> (dataset, fingerprint): each set listed once per run
        self._loaded = {}    # key -> checked features: each file read and verified once per run
        self._files = {}     # path -> what load_torch gave (or what this run wrote): each cache file read once
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
        s = self.setup
        compiled = accel.compile_mode(s.compile, s.device, training=False)[0]
        return torch.compile(self.model.forward_features) if compiled else self.model.forward_features

    def head(self):
        """The final linear layer {"weight", "bias", "digest"}, cached beside the features."""
        if self._head is None:
            self._head = self._load_head()
        return self._head

    def _head_fingerprint(self):
        s = self.setup
        return fingerprint("head", checkpoint=s.checkpoint_id, model=s.model.name, options=s.options)

    def _cached_head(self):
        """head.pt if it belongs to this backbone, else None."""
        cached = self._read(self.root / "head.pt")
        return cached if cached is not None and cached.get("fingerprint") == self._head_fingerprint() else None

    def _load_head(self):
        fp = self._head_fingerprint()
        path = self.root / "head.pt"
        cached = self._cached_head()
        if cached is not None:
            return cached
        head = {"weight": self.model.fc.weight.detach().float().cpu(),
                "bias": self.model.fc.bias.detach().float().cpu()}
        head.update(digest=tensor_digest(head), fingerprint=fp)
        if self.rank == 0:
            save_torch(head, path)
        self._files[path] = head
        return head

    # -- image sets ------------------------------------------------------------------------------------
    @cached_property
    def stages(self):
        """The evaluation transform split into its per-image and per-batch stages (ood.data.batches);
        the cache key names the transform whole, since both give the same inputs bit for bit."""
        return split(self.setup.test_transform())

    @staticmethod
    def key(spec):
        return spec if spec in ID_SPLITS else spec.key

    def _static(self, spec):
        """The part of a set's fingerprint known without listing its images."""
        s = self.setup
        origin = spec if spec in ID_SPLITS else spec.folder
        return fingerprint("features", checkpoint=s.checkpoint_id, model=s.model.name, options=s.options,
                           input_size=s.input_size, dataset=s.id_set.key, set=origin, subset=s.subset,
                           transform=repr(s.test_transform()), amp=s.amp)

    def path(self, spec):
        return self.root / "features" / f"{self.key(spec)}.pt"

    def dataset(self, spec):
        """The torch Dataset of ``spec``: "train", "test", "val" (ID) or an ``OODSet``, built with the image
        stage of the evaluation transform (``self.stages``: its items are uint8 pixels, which
        ``extract(..., stages=self.stages)`` normalises a batch at a time, where the transform ends with
        ToTensor and Normalize; the whole transform otherwise, e.g. a torchvision weights preset)."""
        s = self.setup
        tf = self.stages.image
        if spec in ID_SPLITS:
            ds = D.build_id_dataset(s.id_set, s.data_root, spec, tf, download=s.download)
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
        image file stops the run before any extraction, and check that the cache files the run will
        (re)write, and only those, can be written: a complete cache is only read, so it may be read-only."""
        writes, errors = [], {}
        for spec in specs:
            try:
                fp = self._set(spec)[1]
            except UserError as e:  # every set is looked at: one run tells of all that are missing
                errors[f"{self.setup.id_set.name} {spec}" if spec in ID_SPLITS else spec.name] = str(e)
                continue
            cached = self._read(self.path(spec))
            if cached is None or cached.get("fingerprint") != fp:
                writes.append(self.path(spec))
        if errors:
            raise UserError(several_errors(errors))
        if self._cached_head() is None:
            writes.append(self.root / "head.pt")
        self._check_writable(writes)

    def check_patterns(self, scores):
        """Before any extraction: the stored patterns of ``scores`` that this run will fit must be
        writable (a pattern is fitted when it is missing or stale, or when the training features
        are to be extracted anew)."""
        head, train = self._cached_head(), self._cached_train_digest()
        writes = []
        for score in scores:
            if not score.needs_fit():
                continue
            path = self.pattern_path(score)
            if score.fit_split() != TRAIN:  # keyed on another split's features: may be written
                writes.append(path)
                continue
            cached = load_torch(path, mmap=True) if head is not None and train is not None else None
            if cached is None or cached.get("fingerprint") != pattern_fingerprint(score, train, head["digest"]):
                writes.append(path)
        self._check_writable(writes)

    def _check_writable(self, paths):
        if self.rank != 0:
            return
        for folder in dict.fromkeys(Path(p).parent for p in paths):
            check_writable_dir(folder, "--stored_pattern_dir")

    def extract_stale(self, specs):
        """Extract every set of ``specs`` whose cache is missing or stale in one pass of one loader: one
        set of worker processes serves them all, where a loader per set started its workers once per
        set (most of the cost of a small set on a GPU machine). Under torchrun each set is sharded over
        the processes, so the sets are extracted one by one there (``features``). Meant for the evaluation
        sets (the ID test set and the OOD sets): the training set, one large pass, goes alone."""
        if self.world > 1:
            return
        stale = []
        for spec in dict.fromkeys(specs):
            key = self.key(spec)
            if key in self._loaded:
                continue
            cached = self._current(spec)
            if cached is None:
                stale.append(spec)
            else:
                self._loaded[key] = cached
        if len(stale) < 2:
            return
        sets = [self._set(spec)[0] for spec in stale]
        s = self.setup
        t0 = time.perf_counter()
        out = extract(self.model, ConcatDataset(sets), s.batch_size, s.device, s.workers,
                      desc=f"features {', '.join(self.key(x) for x in stale)}", quiet=s.quiet, amp=s.amp,
                      channels_last=s.channels_last, features_fn=self.features_fn, stages=self.stages)
        seconds = time.perf_counter() - t0
        start = 0
        for spec, ds in zip(stale, sets):
            part = {k: out[k][start:start + len(ds)].clone() for k in TENSORS}
            start += len(ds)
            part["seconds"] = seconds * len(ds) / max(1, len(out["labels"]))  # its share of the one pass
            self._loaded[self.key(spec)] = self._store(spec, part)

    def _store(self, spec, out):
        """Check, fingerprint and save the freshly extracted features of ``spec``."""
        path = self.path(spec)
        check_finite(out, f"image set {self.key(spec)}")
        out["digest"] = tensor_digest({k: out[k] for k in TENSORS})
        out["fingerprint"] = self._set(spec)[1]
        if self.rank == 0:
            save_torch(out, path)
        self._files[path] = out
        return out

    def features(self, spec):
        """Cached (or freshly extracted) phi/logits/labels of image set ``spec``; read once per run."""
        key = self.key(spec)
        if key not in self._loaded:
            self._loaded[key] = self._features(spec)
        return self._loaded[key]

    def _current(self, spec):
        """The cache of ``spec`` when it holds what this run would extract (its fingerprint, intact); else None."""
        path = self.path(spec)
        cached = self._read(path)
        if cached is not None and cached.get("fingerprint") == self._set(spec)[1] and self._intact(cached, path):
            return cached
        return None

    def _features(self, spec):
        cached = self._current(spec)
        if cached is not None:
            return cached
        ds = self._set(spec)[0]
        # under torchrun, process r extracts images r, r + W, ...; the parts are gathered in order
        shard = ds if self.world == 1 else Subset(ds, range(self.rank, len(ds), self.world))
        s = self.setup
        t0 = time.perf_counter()
        out = extract(self.model, shard, s.batch_size, s.device, s.workers, desc=f"features {self.key(spec)}",
                      quiet=s.quiet or self.rank != 0, amp=s.amp, channels_last=s.channels_last,
                      features_fn=self.features_fn, stages=self.stages)
        out = accel.gather_in_order(out, len(ds))
        out["seconds"] = time.perf_counter() - t0  # what this backbone pass cost (the sweep reports it)
        out = self._store(spec, out)
        accel.barrier()
        return out

    def _read(self, path):
        """A cache file (memory-mapped), read once per run; None when missing or unreadable."""
        if path not in self._files:
            self._files[path] = load_torch(path, mmap=True)
        return self._files[path]

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
        """The digest of the training features, read from features/train.pt when its fingerprint matches
        this setup and the training images (their names, sizes and modification times: rewritten images
        are noticed, and the features and patterns redone); extracted otherwise. Without the training
        images (deleted after extraction), a cache that matches everything else is used, with a warning."""
        if TRAIN in self._loaded:
            return self._loaded[TRAIN]["digest"]
        return self._cached_train_digest() or self.features(TRAIN)["digest"]

    def _cached_train_digest(self):
        """The digest in features/train.pt when that file matches this setup and the training images;
        None when the training features are to be extracted."""
        if self._train_digest is None:
            cached = self._read(self.path(TRAIN))
            if cached is None or "digest" not in cached:
                return None
            try:
                expected = self._set(TRAIN)[1]
            except UserError as e:
                static = self._static(TRAIN)
                if {k: cached.get("fingerprint", {}).get(k) for k in static} != static:
                    raise
                warnings.warn(f"the training images could not be listed ({e}); using the cached training "
                              f"features {self.path(TRAIN)} without checking them against the images.")
                expected = cached.get("fingerprint")
            if cached.get("fingerprint") != expected:
                return None
            self._train_digest = cached["digest"]
        return self._train_digest

    # -- stored patterns -------------------------------------------------------------------------------
    def pattern_path(self, score):
        return self.root / "patterns" / f"{score.key()}-{digest(score.fit_settings(), 10)}.pt"

    def pattern(self, score):
        """The fitted state of ``score`` (patterns/<score>-<fit settings>.pt), refitted when the features it
        is fitted on (the training split, or the ID validation split for a score whose ``fit_split`` says
        so), the head or the score's fit settings change."""
        head = self.head()
        split = score.fit_split()
        path = self.pattern_path(score)
        cached = load_torch(path, mmap=True)  # a bank of training features can be as large as they are
        if split == TRAIN and cached is not None and \
                cached.get("fingerprint") == pattern_fingerprint(score, self.train_digest(), head["digest"]):
            return loaded_state(cached["state"])
        data = self.features(split)
        fp = pattern_fingerprint(score, data["digest"], head["digest"])  # the features may have been redone
        if cached is not None and cached.get("fingerprint") == fp:
            return loaded_state(cached["state"])
        if split == TRAIN:
            self._warn_empty_classes(data, head)
        with running(score, "fit"):
            state = score.fit(data, head)
        _check_state(state, score)
        stored = storable_state(state, score)
        save_torch({"state": stored, "score": score.name, "settings": score.fit_settings(), "fingerprint": fp}, path)
        return state

    def _warn_empty_classes(self, train, head):
        correct = train["labels"][train["logits"].argmax(1) == train["labels"]]
        counts = torch.bincount(correct.long(), minlength=head["weight"].shape[0])
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty and not self._warned_empty:
            self._warned_empty = True
            listed = f"{empty}" if len(empty) <= 12 else f"[{', '.join(map(str, empty[:6]))}, ... ({len(empty)} classes)]"
            warnings.warn(f"classes {listed} have no correctly classified training image, so no stored pattern: "
                          f"the scores built on stored patterns score inputs predicted as them against the "
                          f"patterns of all classes.")


def pattern_fingerprint(score, train_digest, head_digest):
    """What a stored pattern is keyed on: the score's class and state format, its fit settings, and the
    contents of the features (``train_digest``: of the training split, or of the split the score's
    ``fit_split`` names, which its fit settings then say) and of the head it was fitted from.

    The code of ``fit``: a built-in score is keyed on its ``version`` alone (we bump it with each change
    of ``fit``, and tests/test_score_contract.py pins what each stores). A plug-in is keyed on its
    ``version`` and on its code (``ood.plugins.code_digest``: the files of the modules that define its
    class and the classes it derives from, read when it was loaded), since its author may well edit
    ``fit`` without bumping ``version`` and would otherwise be served the pattern of the old code."""
    parts = dict(score=f"{type(score).__module__}.{type(score).__qualname__}", version=score.version,
                 fit=score.fit_settings(), train=train_digest, head=head_digest)
    code = plugin_code(score)
    if code is not None:
        parts["code"] = code
    return fingerprint("pattern", **parts)


def _check_state(state, score):
    """A fitted state is a dict of tensors and plain values, all finite."""
    def walk(v, where):
        if isinstance(v, torch.Tensor) or (isinstance(v, np.ndarray) and v.dtype.kind in "fc"):
            finite = torch.isfinite(v).all() if isinstance(v, torch.Tensor) else np.isfinite(v).all()
            if (not isinstance(v, torch.Tensor) or v.is_floating_point()) and not finite:
                raise UserError(f"{score.name}: fitting gave non-finite values in {where}; are the training "
                                f"features finite and the settings ({score.fit_settings()}) sensible?")
        elif isinstance(v, (float, np.floating)) and not math.isfinite(v):
            raise UserError(f"{score.name}: fitting gave {v} for {where}.")
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{where}.{k}")
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, f"{where}[{i}]")
    walk(state, "state")


# A numpy array in a fitted state is stored as {_NUMPY: its bytes as a uint8 tensor, "dtype", "shape"}:
# torch.load(weights_only=True) refuses numpy objects, so the pattern would be saved but never reloaded.
_NUMPY = "__numpy_array__"
_PLAIN = (str, bytes, int, float, bool, complex, type(None), torch.dtype, torch.device, torch.Size)


def storable_state(state, score):
    """``state`` as the pattern file holds it: numpy arrays of numeric dtype as marked tensors
    (``loaded_state`` turns them back, with their dtype and shape), numpy scalars as Python numbers. What
    ``torch.load(weights_only=True)`` cannot read back is a UserError naming the score and where in the
    state it is; saved as it is, the pattern would be refitted on every run without a word."""
    def refuse(where, what):
        raise UserError(f"score {describe_score(score)}: its fitted state cannot be stored: {where} is {what}. "
                        f"A state holds tensors, numeric numpy arrays and str/int/float/bool/None values, in "
                        f"dicts, lists, tuples and sets.")

    def walk(v, where):
        if type(v) in (torch.Tensor, torch.nn.Parameter) or type(v) in _PLAIN:
            return v
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biufc":
                refuse(where, f"a numpy array of dtype {v.dtype}")
            flat = np.ascontiguousarray(v).reshape(-1).view(np.uint8)
            data = torch.from_numpy(flat if flat.flags.writeable else flat.copy())
            return {_NUMPY: data, "dtype": v.dtype.str, "shape": list(v.shape)}
        if isinstance(v, np.generic) and v.dtype.kind in "biufc":
            return v.item()
        if type(v) in (dict, OrderedDict):
            for k in v:
                if type(k) not in (str, int, float, bool, type(None)):
                    refuse(f"a key of {where}", f"{k!r} (a {type(k).__name__})")
            if _NUMPY in v:
                refuse(where, f"a dict with the key {_NUMPY!r}, which marks a stored numpy array")
            return type(v)((k, walk(x, f"{where}.{k}")) for k, x in v.items())
        if type(v) in (list, tuple, set):
            return type(v)(walk(x, f"{where}[{i}]") for i, x in enumerate(v))
        refuse(where, f"a {type(v).__module__}.{type(v).__qualname__}")
    return walk(state, "state")


def loaded_state(state):
    """A state read from a pattern file, with its numpy arrays back as ``storable_state`` marked them
    (a view of the loaded bytes: no copy of a memory-mapped bank)."""
    if isinstance(state, dict):
        if _NUMPY in state:
            return state[_NUMPY].numpy().view(np.dtype(state["dtype"])).reshape(state["shape"])
        return type(state)((k, loaded_state(x)) for k, x in state.items())
    if type(state) in (list, tuple):
        return type(state)(loaded_state(x) for x in state)
    return state
