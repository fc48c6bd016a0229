"""timm's models as backbones: ``--model timm:<name>`` for any model timm knows (``timm.list_models()``).

timm (Wightman, "PyTorch Image Models") is the backbone library researchers reach for first. Its models
split the same way this repository's do: ``forward_features`` (the feature map), then ``forward_head``,
whose ``pre_logits=True`` output is the input of the classifier. That pre-logits vector (pooled, and
normalised where the architecture normalises it: ViT's ``fc_norm``, ConvNeXt's head norm) is phi here,
and the classifier (``get_classifier()``) is ``fc``, so every registered score works on a timm model.
A model whose classifier is not one ``nn.Linear`` has no linear head for the scores and is refused.

``--pretrained`` loads timm's weights (from the Hugging Face Hub, where the user has network; one clear
line offline), and ``--preprocessing backbone`` (the default with ``--pretrained``) evaluates them with
timm's own resolved data config (``timm.data.resolve_data_config`` / ``create_transform``: its input size,
crop, interpolation and statistics).

A model timm's config marks ``fixed_input_size`` (ViT, DeiT, Swin: position embeddings or windows sized
for one input) is built at the run's input size with ``img_size`` (``ModelSpec.sized``), and
``--model_arg KEY=VALUE`` passes any other argument of its constructor (``drop_path_rate=0.1``) to
``timm.create_model``, which checks it.
"""
import torch.nn as nn

from ood.errors import UserError

from .registry import ModelSpec, Weights, register_family


def _timm():
    try:
        import timm
        import timm.data
    except ImportError:
        raise UserError("--model timm:<name> needs timm (pip install -r requirements.txt, or pip install "
                        "timm).") from None
    return timm


class TimmBackbone(nn.Module):
    """A timm model seen as phi (its pre-logits) and a linear head ``fc`` (its classifier, not a copy)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        head = model.get_classifier()
        if not isinstance(head, nn.Linear):
            raise UserError(f"timm's {model.default_cfg.get('architecture', type(model).__name__)} has a "
                            f"{type(head).__name__} classifier, not one nn.Linear: the scores need a linear head "
                            f"on the penultimate feature. Choose another model.")
        self.feature_dim = head.in_features

    @property
    def fc(self):
        return self.model.get_classifier()

    def forward_features(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def timm_model(name, num_classes=1000, in_channels=3, pretrained=False, **kwargs):
    """timm's ``name`` with a head of ``num_classes`` (timm keeps a pretrained head only when its size is
    the weights'; ``--pretrained`` on another class count is refused before this, in ood/runtime/setup.py);
    ``kwargs`` (``img_size``, --model_arg) go to its constructor."""
    timm = _timm()
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels,
                                  **kwargs)
    except Exception as e:  # an argument the constructor refuses; hub unreachable, offline mode, ...
        if kwargs:
            said = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise UserError(f"timm could not build {name} with {said} ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:200]}); check --model_arg and --resize_val.") from None
        if not pretrained:
            raise
        raise UserError(f"could not load timm's pretrained weights of {name} ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}). timm fetches them from the Hugging Face Hub into "
                        f"its cache (HF_HOME); on a machine without internet, fill that cache elsewhere and copy "
                        f"it, or pass --checkpoint with a trained state dict instead of --pretrained.") from None
    return TimmBackbone(model)


def timm_weights(name):
    """The Weights of timm's ``name``: its pretrained config names them (hub id, tag), its class count and
    input size, and its resolved data config gives the transform."""
    timm = _timm()
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise UserError(f"timm's {name} declares no pretrained weights.")
    data = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict())
    where = cfg.hf_hub_id or cfg.url or name
    return Weights(f"timm:{where}:{timm.__version__}", cfg.num_classes or 1000, data["input_size"][-1],
                   lambda: timm.data.create_transform(**data))


def _timm_spec(name):
    """``timm:<name>``: any timm model, at the input size of its pretrained config."""
    timm = _timm()
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        raise UserError(f"unknown model 'timm:{name}': timm has no model named {name!r}"
                        f"{'; close: ' + ', '.join(close) if close else ''} (timm.list_models() lists them).")
    cfg = timm.models.get_pretrained_cfg(name)
    size = cfg.input_size[-1] if cfg is not None and cfg.input_size else 224
    return ModelSpec(f"timm:{name}", lambda num_classes=1000, in_channels=3, pretrained=False, **kwargs:
                     timm_model(name, num_classes, in_channels, pretrained, **kwargs), size, 0.01,
                     pretrained=(lambda: timm_weights(name)) if cfg is not None else None,
                     model_args="timm.create_model",
                     sized=(lambda s: {"img_size": s}) if cfg is not None and cfg.fixed_input_size else None)


register_family("timm", _timm_spec, "timm:<timm model name>")
