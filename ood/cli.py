"""Command-line options shared by the three scripts."""
import argparse

import torch

import models
from .errors import UserError


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def parser(description):
    return argparse.ArgumentParser(description=description, formatter_class=Formatter)


def add_common(p):
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", default="cifar10",
                   help="ID data set: cifar10, cifar100, imagenet or fashionmnist")
    g.add_argument("--model", default="resnet18",
                   help=f"backbone: {', '.join(models.model_names())}")
    g.add_argument("--dataset_path", default="./data", help="data root holding every data set (see README)")
    g.add_argument("--id_classes", type=int, nargs="+", default=None,
                   help="near-OOD split: keep only these classes as ID (relabelled 0..k-1); the test images "
                        "of the others are the OOD set HeldOut. Outputs go under <dataset>_classes<...>/")
    g.add_argument("--download", action="store_true",
                   help="let torchvision download the ID set (and SVHN) when missing")
    g.add_argument("--resize_val", type=int, default=None,
                   help="input size (default: 112 for resnet18/34, 64 for wrn, 224 for resnet50)")
    g.add_argument("--checkpoint", default=None, help="checkpoint path (default checkpoints/<dataset>/<model>.pt)")
    g.add_argument("--pretrained", action="store_true",
                   help="resnet50 / tv:<name>: use torchvision's ImageNet weights (no checkpoint needed)")
    g.add_argument("--layers", type=int, default=40, help="wrn: depth")
    g.add_argument("--widen-factor", "--widen_factor", dest="widen_factor", type=int, default=2, help="wrn: widen factor")
    g.add_argument("--droprate", type=float, default=0.3, help="wrn: dropout rate")
    g.add_argument("--subset", type=int, default=0,
                   help="use at most this many images of each image set (evenly spaced; 0 = all), for quick trials")
    g = p.add_argument_group("execution")
    g.add_argument("--batch_size", type=int, default=128)
    g.add_argument("--workers", type=int, default=4, help="DataLoader worker processes")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--amp", choices=["off", "bf16", "fp16"], default=None,
                   help="autocast precision (default: bf16 for training on CUDA; fp32 otherwise, and always "
                        "for feature extraction unless asked)")
    g.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory layout (default: on for CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    return p


def model_options(args):
    """Builder options of the chosen model that change its architecture (and so the fingerprints)."""
    if args.model == "wrn":
        return {"layers": args.layers, "widen_factor": args.widen_factor, "droprate": args.droprate}
    return {}


def safe_model_name(name):
    """A model name usable as a file or folder name (tv:resnet50 -> tv_resnet50)."""
    return name.replace(":", "_").replace("/", "_")


def resolve_device(name):
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device name (use cpu, cuda or cuda:N).") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for, but this PyTorch sees no CUDA device. Use --device cpu.")
    return dev
