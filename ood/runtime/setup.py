"""The setup of a run: built once from the command line, immutable, shared by training and extraction.

``Setup.from_args`` checks everything it can before any long work starts (data set and class split,
backbone and its options, input size against the checkpoint's, device, checkpoint path) and resolves
the defaults that depend on the hardware (precision, memory layout). Library code reads a Setup; it
never writes into the argparse namespace. Joining torchrun's process group is the entry point's
(``ood.runtime.run.open_run``), which passes the device torchrun gave the process.
"""
import dataclasses
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

import models

from ood.system import accel
from ood import data as D
from ood.training.checkpoints import checkpoint_meta, default_checkpoint
from ood.system.device import environment, resolve_device
from ood.errors import UserError
from ood.io import safe_name, sha256_file
from ood.training.recipes import RECIPES


@dataclass(frozen=True)
class Setup:
    id_set: D.IDSet
    model: models.ModelSpec
    model_options: tuple          # ((name, value), ...) of the backbone's declared options
    input_size: int
    checkpoint: Path | None       # None: torchvision's pretrained weights
    pretrained: bool
    data_root: Path
    download: bool
    subset: int
    batch_size: int
    workers: int
    device: torch.device
    amp: str                      # autocast mode of this phase: off, bf16, fp16
    amp_reason: str
    channels_last: bool
    compile: str                  # --compile: auto, on, off (ood.system.accel.compile_mode decides per phase)
    seed: int
    quiet: bool
    recipe: str = "fixed"         # the training recipe of the checkpoint (ood/training/recipes.py)
    train_precision: str | None = None  # what the backbone was trained in (the checkpoint's --amp), if known
    train_environment: tuple = ()  # ((key, value), ...): device and versions the checkpoint was trained with
    asked_size: int | None = None  # --resize_val as given
    trained_on: str = ""           # the data set train_model.py trained the checkpoint on (its meta); "" otherwise
    preprocessing: str = "dataset"  # whose evaluation transform: the data set's, or the backbone's weights'

    @property
    def options(self):
        return dict(self.model_options)

    @property
    def store_name(self):
        """The folder name of this backbone's caches and results (a reference-recipe checkpoint's apart)."""
        return safe_name(self.model.name) + RECIPES[self.recipe].suffix

    @property
    def feature_precision(self):
        return precision_name(self.amp)

    @cached_property
    def environment(self):
        """The device and library versions of this run (ood.system.device.environment)."""
        return environment(self.device)

    @cached_property
    def checkpoint_id(self):
        """What identifies the weights: the checkpoint file's sha256, or the pretrained weights' name."""
        if self.checkpoint is None:
            return models.pretrained_id(self.model.name)
        return sha256_file(self.checkpoint)

    def test_transform(self):
        """The evaluation transform (built once per Setup: rows and cache fingerprints ask for it often)."""
        return self._test_transform

    @cached_property
    def _test_transform(self):
        """The evaluation transform. ``preprocessing == "backbone"``: the transform the backbone's pretrained
        weights were trained with (torchvision's ``weights.transforms()``: Swin-T's is a bicubic resize to
        232; timm's resolved data config), as OpenOOD's scripts/eval_ood_imagenet.py and timm evaluate them.
        Otherwise the ID set's (ood.data.test_transform) at this input size; on a benchmark other than the
        paper's, a backbone train_model.py trained on the paper's set keeps the normalisation it was trained
        with (the paper's CIFAR statistics are not OpenOOD's)."""
        if self.preprocessing == "backbone":
            return self.model.weights().transform()
        id_set = self.id_set
        if id_set.benchmark and self.trained_on in D.ID_SETS:  # trained here: normalised as it was trained
            paper = D.ID_SETS[self.trained_on]
            id_set = dataclasses.replace(id_set, mean=paper.mean, std=paper.std)
        return D.test_transform(id_set, self.input_size)

    def build_model(self, run_size=None):
        """The backbone, built for this run's input size and checked to run at ``run_size`` (default: that
        size; training under the reference recipe runs at another), so that a size it cannot take is one
        line before any work starts."""
        m = models.build_model(self.model.name, self.id_set.num_classes, self.id_set.channels,
                               pretrained=self.pretrained, input_size=self.input_size, **self.options)
        models.check_runs(m, self.model, self.id_set.channels, run_size or self.input_size)
        return m

    @classmethod
    def from_args(cls, args, training, device=None):
        """The setup of ``train_model.py`` (``training=True``) or of extraction and scoring. ``device``
        is the one torchrun gave this process when the entry point joined its process group
        (``ood.runtime.run.open_run``); None: ``--device``. Building a Setup joins nothing and changes no
        global state, so that it can be built (and tested) anywhere."""
        id_set = D.get_id_set(args.dataset, args.id_classes, getattr(args, "benchmark", None))
        if training and id_set.benchmark:
            raise UserError(f"train_model.py trains on the paper's sets; --benchmark {id_set.benchmark} evaluates "
                            f"backbones (OpenOOD's released checkpoints, torchvision's weights, or one trained "
                            f"here on {id_set.name}: pass it with --checkpoint).")
        spec = models.get_spec(args.model)
        options = models.resolve_options(spec, {p.name: getattr(args, p.name, None) for p in models.all_options()},
                                         getattr(args, "model_arg", None) or ())
        if args.pretrained and not models.can_load_pretrained(spec):
            raise UserError(f"--pretrained: backbone {spec.name!r} declares no pretrained weights (those that do: "
                            f"{', '.join(s.name for s in models.registered() if s.pretrained)}, tv:<name>, "
                            f"timm:<name>).")
        weights = spec.weights() if args.pretrained else None
        if weights is not None and not training and not args.checkpoint and weights.num_classes != id_set.num_classes:
            raise UserError(f"--pretrained {spec.name} has {weights.num_classes} outputs ({weights.id}) but "
                            f"{id_set.label} has {id_set.num_classes} classes: fine-tune it with train_model.py "
                            f"first, or pass a --checkpoint trained on {id_set.name}.")
        preprocessing = _preprocessing(args, spec, id_set, training)
        if preprocessing == "backbone" and args.resize_val and args.resize_val != spec.weights().input_size:
            raise UserError(f"--resize_val {args.resize_val}: --preprocessing backbone evaluates {spec.name} with its "
                            f"weights' own transform, at {spec.weights().input_size} px; leave --resize_val out, "
                            f"or pass --preprocessing dataset.")
        device = device or resolve_device(args.device)
        recipe = RECIPES[args.recipe or "fixed"]
        checkpoint = None if (args.pretrained and not args.checkpoint and not training) else \
            Path(args.checkpoint or default_checkpoint(id_set.key, spec.name + recipe.suffix))
        size = args.resize_val
        train_precision = "pretrained" if checkpoint is None and not training else None
        train_environment, trained_on = (), ""
        if checkpoint is not None and not training:
            meta = checkpoint_meta(checkpoint)
            _check_split(checkpoint, meta, id_set)
            size = _size_from_checkpoint(checkpoint, meta, size, args.force_input_size)
            train_precision = precision_name(meta["amp"]) if meta.get("amp") else None
            train_environment = tuple(sorted((meta.get("environment") or {}).items()))
            trained_on = meta.get("dataset") or ""
            trained_with = meta.get("recipe", "fixed")
            if args.recipe and args.recipe != trained_with:
                raise UserError(f"--recipe {args.recipe}, but checkpoint {checkpoint} was trained with the "
                                f"{trained_with} recipe.")
            recipe = RECIPES[trained_with]
        amp_flag, layout = args.amp, args.channels_last
        if training and recipe.name == "reference":  # fp32 and contiguous tensors, unless asked otherwise
            layout = False if layout is None else layout
        if training and recipe.name == "reference" and amp_flag in (None, "auto"):
            amp, reason = "off", "the reference recipe trains in fp32"
        else:
            amp, reason = accel.amp_mode(amp_flag, device, training)
        return cls(id_set=id_set, model=spec, model_options=tuple(sorted(options.items())),
                   input_size=(spec.weights().input_size if preprocessing == "backbone" else None) or size
                   or id_set.input_size or spec.input_size, preprocessing=preprocessing,
                   checkpoint=checkpoint, pretrained=bool(args.pretrained),
                   data_root=Path(args.dataset_path), download=bool(args.download), subset=args.subset,
                   batch_size=args.batch_size, workers=args.workers, device=device, amp=amp,
                   amp_reason=reason, channels_last=accel.use_channels_last(layout, device),
                   compile=args.compile, seed=1 if args.seed is None else args.seed, quiet=bool(args.quiet), recipe=recipe.name,
                   train_precision=train_precision, train_environment=train_environment,
                   asked_size=args.resize_val, trained_on=trained_on)


PREPROCESSING = ("auto", "backbone", "dataset")


def _preprocessing(args, spec, id_set, training):
    """--preprocessing resolved: "backbone" (the transform the backbone's pretrained weights were trained
    with: torchvision's ``weights.transforms()``, timm's resolved data config) or "dataset" (the data
    set's, ood.data.test_transform). ``auto``: the backbone's for ``--pretrained`` weights evaluated as they
    are (no --checkpoint), the data set's otherwise (a backbone trained here saw the data set's)."""
    asked = getattr(args, "preprocessing", None) or "auto"
    if asked == "auto":
        own = args.pretrained and not args.checkpoint and not training and spec.pretrained is not None
        return "backbone" if own and id_set.channels == 3 else "dataset"
    if asked == "backbone":
        if spec.pretrained is None:
            raise UserError(f"--preprocessing backbone: {spec.name} declares no preprocessing of its own (only "
                            f"backbones with pretrained weights do: tv:<name>, timm:<name>, resnet50); use "
                            f"--preprocessing dataset.")
        if id_set.channels != 3:
            raise UserError(f"--preprocessing backbone: {spec.name}'s own transform is for RGB images and "
                            f"{id_set.label} is grayscale; use --preprocessing dataset.")
    return asked


def precision_name(amp):
    """An autocast mode as a precision: "off" is fp32."""
    return "fp32" if amp == "off" else amp


def _check_split(path, meta, id_set):
    """A checkpoint is scored on the data set and class split it was trained on: the class count alone
    would let a backbone trained on classes 0-4 be scored on 5-9 (or on 1 0 2 3 4) without a word. The
    checkpoint records the data set's name, which names the split (``<dataset>_classes<c1>-<c2>-...``)."""
    trained = meta.get("dataset")
    if not trained or trained == id_set.name:
        return

    def said(name):
        base, _, classes = name.partition("_classes")
        return f"{base} with --id_classes {' '.join(classes.split('-'))}" if classes else f"{base} (all classes)"
    raise UserError(f"checkpoint {path} was trained on {said(trained)}, but this run asks for "
                    f"{said(id_set.name)}. Pass the checkpoint's --dataset and --id_classes (in its order), or "
                    f"another --checkpoint.")


def _size_from_checkpoint(path, meta, asked, force):
    """The input size to extract at: the one the checkpoint records, unless the user asks for another
    (refused without --force_input_size). Warns about a checkpoint whose training stopped early."""
    trained = meta.get("input_size")
    if meta.get("finished") is False:
        warnings.warn(f"checkpoint {path} is from an unfinished training run (epoch {meta.get('epoch')} of "
                      f"{meta.get('epochs')}); train_model.py --resume finishes it.")
    if trained and asked and asked != trained and not force:
        raise UserError(f"--resize_val {asked} contradicts checkpoint {path}, which was trained at {trained}x"
                        f"{trained}. Leave --resize_val out to use {trained}, or pass --force_input_size to "
                        f"evaluate at {asked} anyway.")
    return asked or trained
