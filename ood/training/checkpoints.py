"""Loading backbones from checkpoints written by train_model.py, or from plain state dicts."""
from pathlib import Path

import torch

from ood.system import inputs
from ood.errors import UserError
from ood.io import safe_name

_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel / torch.compile


def clean_state_dict(state):
    """Strip the prefixes that DataParallel, DDP and torch.compile add to parameter names."""
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


# torch.save's legacy format (before torch 1.6, or _use_new_zipfile_serialization=False) opens with its magic
# number 0x1950a86a20f9469cfc6c pickled as a long, after the pickle protocol's header; the current one is a zip
LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
ZIP_MAGIC = b"PK\x03\x04"


def _require(path):
    """``path`` as a file this module can read, else one line saying what is wrong with it: torch.load's
    own error for an empty file or the legacy format is about memory-mapping, which the user never asked
    for. Only the first bytes are read (nothing is unpickled here)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory; --checkpoint takes the .pt file written by "
                        f"train_model.py (or a state dict).")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist. Train one with train_model.py (it writes "
                        f"checkpoints/<dataset>/<model>.pt) or pass --checkpoint PATH.")
    with open(path, "rb") as f:
        head = f.read(32)
    if not head:
        raise UserError(f"checkpoint {path} is empty (0 bytes): a copy or a save that did not finish. Copy "
                        f"it again, or train again with train_model.py --overwrite.")
    if not head.startswith(ZIP_MAGIC) and LEGACY_MAGIC in head:
        raise UserError(f"checkpoint {path} is in torch.save's legacy format (torch < 1.6, or "
                        f"_use_new_zipfile_serialization=False), which this project does not read: re-save "
                        f"it with a current torch (torch.save(torch.load(path, weights_only=True), path)).")
    if not head.startswith(ZIP_MAGIC):
        raise UserError(f"checkpoint {path} is not a file torch.save wrote (that is a zip archive; this one "
                        f"begins {head[:8]!r}). Pass the .pt file written by train_model.py, or a state dict.")
    inputs.note(f"checkpoint {path}", [path], contents=True)  # a launcher's step is keyed on its contents
    return path


def read_checkpoint(path):
    path = _require(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"checkpoint {path} could not be read as a PyTorch file ({type(e).__name__}: {e}).") from None


def _shape(t):
    return tuple(getattr(t, "shape", ()))


def state_dict_mismatch(own, state):
    """One line naming the first key where ``state`` (a checkpoint's) differs from ``own`` (the model's), in
    the model's order (missing from the checkpoint, or another shape; if every model key fits, the first
    unexpected checkpoint key), and how many keys are missing, unexpected or of another shape; "" if it
    fits. A checkpoint of another architecture differs in many keys; the first one says where."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and _shape(state[k]) != _shape(own[k])]
    if not (missing or unexpected or wrong):
        return ""
    first = next((k for k in own if k not in state or _shape(state[k]) != _shape(own[k])), None)
    if first is None:
        first = unexpected[0]
        why = "is in the checkpoint but not in the model"
    elif first not in state:
        why = "is missing from the checkpoint"
    else:
        why = f"has shape {_shape(state[first])} in the checkpoint but {_shape(own[first])} in the model"
    counts = [f"{len(missing)} missing keys (e.g. {missing[0]})" if missing else "",
              f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})" if unexpected else "",
              f"{len(wrong)} keys of another shape (e.g. {wrong[0]})" if wrong else ""]
    return f"first difference: {first!r} {why}; " + "; ".join(c for c in counts if c)


def state_of(ckpt, path):
    """The state dict a checkpoint (as read_checkpoint returns it) holds: train_model.py's {"model": ...},
    the common {"state_dict": ...} wrapper, or the plain state dict OpenOOD's best.ckpt files are; the
    prefixes of DataParallel, DDP and torch.compile stripped."""
    state = ckpt
    if isinstance(ckpt, dict):
        state = next((ckpt[k] for k in ("model", "state_dict") if isinstance(ckpt.get(k), dict)), ckpt)
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} holds no state dict.")
    return clean_state_dict(state)


def load_backbone(model, path, expect=None):
    """Load the weights in ``path`` into ``model``. ``expect`` (dict: model, num_classes, ...) is checked
    against the metadata train_model.py stores, so a checkpoint of another model or class count fails
    with a clear message instead of a shape error."""
    ckpt = read_checkpoint(path)
    meta = ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}
    state = state_of(ckpt, path)
    if expect and meta:
        for key in ("model", "num_classes", "in_channels"):
            if key in meta and key in expect and meta[key] != expect[key]:
                raise UserError(
                    f"checkpoint {path} was trained with {key}={meta[key]!r} ({meta.get('model')}, "
                    f"{meta.get('num_classes')} classes, data set {meta.get('dataset')}), but this run asks "
                    f"for {key}={expect[key]!r}. Pass the matching --model/--dataset, or the right --checkpoint.")
    if hasattr(model, "from_torchvision_names"):  # a torchvision classifier saved under its own names
        state = model.from_torchvision_names(state)
    mismatch = state_dict_mismatch(model.state_dict(), state)
    if mismatch:
        raise UserError(f"checkpoint {path} does not fit the requested model ({mismatch}). It was probably "
                        f"trained for another --model, --dataset (class count) or model option.")
    model.load_state_dict(state)
    return ckpt if isinstance(ckpt, dict) else {}


def checkpoint_meta(path):
    """What train_model.py recorded about the run (model, data set and class split, input size, epoch,
    epochs, finished, recipe, training precision ``amp``),
    read without loading the weights into memory; {} for a plain state dict."""
    path = _require(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise UserError(f"checkpoint {path} could not be read as a PyTorch file ({type(e).__name__}: {e}).") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("meta"), dict):
        return {}
    return {**ckpt["meta"], **{k: ckpt[k] for k in ("epoch", "epochs", "finished", "recipe", "amp",
                                                        "environment") if k in ckpt}}


def default_checkpoint(dataset, model):
    return Path("checkpoints") / dataset / f"{safe_name(model)}.pt"
