"""Torchvision classification models as backbones: ResNet-50 for the ImageNet-1k protocol, and any
other torchvision classifier by name (``--model tv:<name>``).

The model's last ``nn.Linear`` becomes the head ``fc``; everything before it (with the head replaced by
an identity) computes the penultimate feature phi(x).

``--model_arg KEY=VALUE`` passes an argument to torchvision's builder (``torchvision.models.get_model``,
which checks it), and the classifiers built for one input size (``SIZED``) are built at the run's.
"""
import contextlib
import os
import pickle

import torch
import torch.nn as nn
import torchvision

from ood.errors import UserError

from .registry import ModelSpec, Weights, register, register_family


def _parent_and_attr(model, dotted):
    parent = model
    *path, attr = dotted.split(".")
    for p in path:
        parent = getattr(parent, p)
    return parent, attr


def _replace_first_conv(model, in_channels):
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            if m.in_channels == in_channels:
                return
            new = nn.Conv2d(in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                            m.dilation, m.groups, m.bias is not None, m.padding_mode)
            with torch.no_grad():  # keep pretrained filters usable: average them over the input channels
                new.weight.copy_(m.weight.mean(1, keepdim=True).expand_as(new.weight))
                if m.bias is not None:
                    new.bias.copy_(m.bias)
            parent, attr = _parent_and_attr(model, name)
            setattr(parent, attr, new)
            return
    raise UserError(f"cannot set in_channels={in_channels}: the model has no nn.Conv2d layer")


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier split into ``body`` (input -> phi) and ``fc`` (phi -> logits)."""

    def __init__(self, model, head_name):
        super().__init__()
        parent, attr = _parent_and_attr(model, head_name)
        self.fc = getattr(parent, attr)
        setattr(parent, attr, nn.Identity())
        self.body = model
        self.head_name = head_name
        self.feature_dim = self.fc.in_features

    def from_torchvision_names(self, state):
        """A state dict under torchvision's own names (``conv1.weight``, ``heads.head.bias``: torchvision's
        files, and OpenOOD's ResNet50 / ViT_B_16 / Swin_T checkpoints) renamed to this backbone's
        (``body.conv1.weight``, ``fc.bias``); a state dict in this backbone's names is returned as it is."""
        if any(k.startswith("body.") for k in state):
            return state
        head = self.head_name + "."
        return {("fc." + k[len(head):] if k.startswith(head) else "body." + k): v for k, v in state.items()}

    def forward_features(self, x):
        return torch.flatten(self.body(x), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


@contextlib.contextmanager
def _weights_only_loads():
    """While the block runs, every torch.load reads with its restricted unpickler (tensors and plain
    containers; nothing in the file is called). torchvision's builders would otherwise read their weights
    with its unrestricted unpickler, and a file already in torch's hub cache (where the message below
    asks an offline user to put one) is read without its hash being checked: only a download is. The
    environment variable is torch's own switch for this; the user's setting is restored afterwards."""
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")  # both set: torch refuses
    saved = {n: os.environ.pop(n, None) for n in names}
    os.environ[names[0]] = "1"
    try:
        yield
    finally:
        for n, v in saved.items():
            os.environ.pop(n, None)
            if v is not None:
                os.environ[n] = v


# torchvision's classifiers built for one input size (their forward asserts it), by name prefix, and the
# builder keywords that build one for another size: ViT's position embeddings, MaxViT's partitions
SIZED = {"vit_": lambda size: {"image_size": size}, "maxvit_": lambda size: {"input_size": (size, size)}}


def _sized(name):
    return next((kwargs for prefix, kwargs in SIZED.items() if name.startswith(prefix)), None)


def _get_model(name, **kwargs):
    """torchvision's ``get_model``; an argument it refuses (a --model_arg, or a size that pretrained weights
    fix: torchvision refuses an ``image_size`` other than the weights') is one line naming it."""
    given = {k: v for k, v in kwargs.items() if k not in ("weights", "num_classes", "aux_logits", "init_weights")}
    try:
        return torchvision.models.get_model(name, **kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        if not given:
            raise
        said = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise UserError(f"torchvision could not build {name} with {said} ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}); check --model_arg and --resize_val"
                        f"{' (its pretrained weights fix the input size)' if kwargs.get('weights') else ''}.") from None


def _load_weights(name, weights, **kwargs):
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    try:
        with _weights_only_loads():
            return _get_model(name, weights=weights, **kwargs)
    except UserError:  # an argument torchvision refuses, named as such, not as a failed download
        raise
    except pickle.UnpicklingError:
        raise UserError(f"the pretrained weights of torchvision's {name} at {cached} are not a plain weights "
                        f"file (reading it could run code it holds, so it was refused); delete it and run again "
                        f"to download {weights.url} (torchvision checks its hash), or pass --checkpoint with a "
                        f"trained state dict instead of --pretrained.") from None
    except Exception as e:  # network, proxy or checksum failure while fetching the weights
        raise UserError(
            f"could not load the pretrained weights {weights} of torchvision's {name} ({type(e).__name__}: "
            f"{e}). torchvision downloads them to {torch.hub.get_dir()}/checkpoints/; on a machine without "
            f"internet, download {weights.url} elsewhere and copy it there, or pass "
            f"--checkpoint with a trained state dict instead of --pretrained.") from None


# Weights pinned by name: ResNet-50's are the paper's; ViT-B/16's and Swin-T's those OpenOOD v1.5 evaluates
# (scripts/eval_ood_imagenet.py, --tvs-version 1), whatever a later torchvision makes DEFAULT.
PINNED_WEIGHTS = {"resnet50": "IMAGENET1K_V1", "vit_b_16": "IMAGENET1K_V1", "swin_t": "IMAGENET1K_V1"}


def pretrained_weights(name):
    """The weights ``--pretrained`` loads for torchvision's ``name``: those of ``PINNED_WEIGHTS``, else
    torchvision's DEFAULT (which a torchvision release may change)."""
    enum = torchvision.models.get_model_weights(name)
    return getattr(enum, PINNED_WEIGHTS[name]) if name in PINNED_WEIGHTS else enum.DEFAULT


def torchvision_model(name, num_classes=1000, in_channels=3, pretrained=False, **kwargs):
    """Build torchvision's ``name``. With ``pretrained``, load its ImageNet weights (``PINNED_WEIGHTS``, IMAGENET1K_V1 for
    resnet50, torchvision's DEFAULT otherwise) and, when ``num_classes`` differs from 1000, put a fresh
    head on top for fine-tuning. ``kwargs`` (a size of ``SIZED``, --model_arg) go to torchvision's builder."""
    if name not in torchvision.models.list_models(torchvision.models):
        known = ", ".join(sorted(torchvision.models.list_models(torchvision.models)))
        raise UserError(f"torchvision has no classification model named {name!r}. Known: {known}.")
    if pretrained:
        model = _load_weights(name, pretrained_weights(name), **kwargs)
    else:
        own = {"aux_logits": False, "init_weights": True} if name in ("inception_v3", "googlenet") else {}
        model = _get_model(name, weights=None, num_classes=num_classes, **{**own, **kwargs})
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError(f"torchvision's {name} has no final nn.Linear layer, so it has no penultimate "
                        f"feature in the sense of this project; choose another model.")
    backbone = TorchvisionBackbone(model, linears[-1])
    if backbone.fc.out_features != num_classes:
        backbone.fc = nn.Linear(backbone.feature_dim, num_classes)
    if in_channels != 3:
        _replace_first_conv(backbone.body, in_channels)
    return backbone


def torchvision_weights(name):
    """The Weights that ``--pretrained`` loads for torchvision's ``name`` (``pretrained_weights``), as the
    registry describes them: named by torchvision's enum and file, with their own transform."""
    w = pretrained_weights(name)
    return Weights(f"torchvision:{w}:{w.url}", len(w.meta.get("categories") or ()) or 1000,
                   w.transforms().crop_size[0], w.transforms)


def _torchvision_spec(name):
    """``tv:<name>``: any torchvision classifier, 224 px by default, its pretrained weights declared."""
    if name not in torchvision.models.list_models(torchvision.models):
        known = ", ".join(sorted(torchvision.models.list_models(torchvision.models)))
        raise UserError(f"unknown model 'tv:{name}': torchvision has no classification model named {name!r}. "
                        f"Known: {known}.")
    return ModelSpec(f"tv:{name}", lambda num_classes=1000, in_channels=3, pretrained=False, **kwargs:
                     torchvision_model(name, num_classes, in_channels, pretrained, **kwargs), 224, 0.01,
                     pretrained=lambda: torchvision_weights(name), model_args="torchvision.models.get_model",
                     sized=_sized(name))


register_family("tv", _torchvision_spec, "tv:<torchvision model name>")
register("resnet50", lambda num_classes=1000, in_channels=3, pretrained=False, **_:
         torchvision_model("resnet50", num_classes, in_channels, pretrained), 224,
         pretrained=lambda: torchvision_weights("resnet50"))  # the paper's ImageNet backbone
