"""Command-line options shared by the scripts. Bad values end with one line and exit status 2."""
import argparse
import copy
import os
import sys

import models

from ood.data import PAPER, benchmark_help, benchmark_names, dataset_help, get_benchmark, ood_help
from ood.errors import UserError
from ood.evaluation.metrics import FPR_VARIANTS
from ood.evaluation.protocols import DEFAULT_LEVEL, DEFAULT_RESAMPLES, PROTOCOLS
from ood.evaluation.uncertainty import min_resamples
from ood.params import Param, add_params, argparse_type
from ood.plugins import load_module
from ood.system import progress
from ood.system.accel import AMP_CHOICES, COMPILE_BREAK_EVEN_IMAGES, COMPILE_CHOICES


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help with every default once: argparse adds "(default: X)" to an option that takes a value and
    has one (a list shown as the values one types); an option whose default depends on the run defaults to
    None and its help says the default in words, and a flag gets none (it is off unless given, and
    "--no_plot (default: True)" would read as the opposite of what it means)."""

    def _get_help_string(self, action):
        if action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)

    def _expand_help(self, action):
        if isinstance(action.default, (list, tuple)):
            action = copy.copy(action)
            action.default = " ".join(map(str, action.default))
        return super()._expand_help(action)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``<script>: error: <what to fix>`` and exit status 2. An option
    whose value is only right together with another's carries the check where it is declared, as its
    action's ``after_parse(namespace)`` (a message, or None), run once every option is parsed."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (--help lists the options)", file=sys.stderr, flush=True)
        raise SystemExit(2)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extra = super().parse_known_args(args, namespace)
        for action in self._actions:
            message = getattr(action, "after_parse", lambda ns: None)(namespace)
            if message:
                self.error(message)
        return namespace, extra


def parser(description):
    return Parser(description=description, formatter_class=Formatter)


def ranged(kind, bounds):
    """An argparse type for the scripts' plain numbers, checked (and worded) as a ``Param``'s."""
    return argparse_type(Param("value", kind, bounds=bounds))


def model_arg(text):
    """An argparse type for ``--model_arg KEY=VALUE`` (parsed by the registry, which checks it per backbone)."""
    try:
        return models.parse_model_arg(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


positive_int = ranged(int, "[1, inf)")
nonnegative_int = ranged(int, "[0, inf)")
positive_float = ranged(float, "(0, inf)")
nonnegative_float = ranged(float, "[0, inf)")


def add_evaluation(g):
    """The options of the scoring script that a sweep shares: OOD sets, protocol, FPR95 variant, caches."""
    g.add_argument("--ood", nargs="+", default=None, help=ood_help())
    g.add_argument("--protocol", choices=PROTOCOLS, default="full",
                   help="full: every OOD image once (RecLag code); sampled: --repeats draws of N_ID/5 "
                        "OOD images, mean and std (SHE / energy code); paper: each score as its published "
                        "row was produced (RecLag: full with the strict FPR95; the others: 10 draws of "
                        "1,920 OOD images, seed 12, the closest FPR95; ReAct at percentile 98)")
    g.add_argument("--repeats", type=positive_int, default=None, help="draws of the sampled protocol (default 10)")
    g.add_argument("--fpr_variant", choices=FPR_VARIANTS, default=None,
                   help="standard: FPR at the largest threshold with TPR >= 95%%; closest: the energy/SHE "
                        "code's ROC point with recall closest to 95%%; strict: the RecLag code's first "
                        "ROC point with TPR > 95%%; openood: OpenOOD v1.5's, OOD positive (the share of ID "
                        "inputs rejected when 95%% of OOD inputs are caught), with its trapezoid AUPRs "
                        "(default: standard; openood under --benchmark openood)")
    g.add_argument("--bootstrap", type=ranged(int, "[0, 20000]"), default=DEFAULT_RESAMPLES,
                   help="resamples of the stratified bootstrap behind every row's confidence intervals (AUROC, "
                        "FPR95, AUPR) and the tables' ties with the best (the ID and each OOD set resampled "
                        "apart, the same resamples for every score); 0: no intervals; else at least 2 / (1 - "
                        "--ci_level), 40 at 0.95").after_parse = enough_resamples
    g.add_argument("--ci_level", type=ranged(float, "(0, 1)"), default=DEFAULT_LEVEL,
                   help="coverage of the intervals; the ties and p-values test at 1 - this level")
    g.add_argument("--fsood", action="store_true",
                   help="OpenOOD v1.5's full-spectrum setting (eval_ood(fsood=True)), under --benchmark openood: "
                        "the ID side of every row is the ID test set followed by the ID set's covariate-shifted "
                        "ID sets (CIFAR-10: cifar10c; ImageNet-200: imagenet_v2, imagenet_c, imagenet_r; "
                        "ImageNet-1k: those and imagenet_es; CIFAR-100 has none), and the accuracy is pooled "
                        "over all of them; its rows form tables of their own").after_parse = full_spectrum
    add_store(g)


def full_spectrum(args):
    """--fsood's check, before any work: a benchmark that declares covariate-shifted ID sets for the ID
    set; one line otherwise (an unknown --dataset is left to the run, which names the known ones)."""
    if not getattr(args, "fsood", False):
        return None
    bench = get_benchmark(getattr(args, "benchmark", PAPER))
    if bench is None:
        return ("--fsood is OpenOOD v1.5's full-spectrum setting (its covariate-shifted ID sets counted as ID); "
                "the paper's benchmark has none: add --benchmark openood")
    try:
        id_set = bench.id_set(args.dataset)
    except UserError:
        return None
    if not bench.csid_sets(id_set):
        return (f"--fsood: {bench.label} declares no covariate-shifted ID sets for {id_set.label} (its csid list "
                f"is empty), so it has no full-spectrum setting; leave --fsood out")
    return None


def enough_resamples(args):
    """--bootstrap's check: a count that gives an interval and a test at --ci_level (ood.evaluation.uncertainty.
    min_resamples), or 0 for none; one line naming the minimum otherwise."""
    b, level = getattr(args, "bootstrap", 0), getattr(args, "ci_level", None)
    if not b or level is None or b >= min_resamples(level):
        return None
    return (f"--bootstrap {b}: an interval and a test at --ci_level {level:g} need at least {min_resamples(level)} "
            f"resamples (2 / (1 - level)); give at least that many, or 0 for no intervals")


def add_store(g):
    g.add_argument("--stored_pattern_dir", default="stored_pattern",
                   help="where features, the head and stored patterns are cached")


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers():
    """DataLoader workers: the CPUs this process may use, at most 8 (PyTorch warns above that count)."""
    return min(8, available_cpus())


DATA_PLUGIN = "--data_plugin"


def load_data_plugins(argv):
    """Import the ``--data_plugin package.module`` modules named in ``argv`` before a parser is built: a
    module of the user's that registers ID sets, OOD sets or benchmarks (``ood.data.register_*``), so
    that ``--dataset``, ``--ood`` and ``--benchmark`` know them, as ``--score package.module:Class`` adds a
    score, without editing this repository (docs/extending.md)."""
    taking = False
    for token in argv or ():
        if token.startswith("--"):
            taking = token == DATA_PLUGIN
            if token.startswith(DATA_PLUGIN + "="):
                load_module(token.split("=", 1)[1], "data-set module")
            continue
        if taking:
            load_module(token, "data-set module")


def add_data_plugin(g):
    g.add_argument(DATA_PLUGIN, nargs="+", default=[], metavar="MODULE",
                   help="modules of your own to import first, as package.module, that declare data sets or "
                        "benchmarks (ood.data.register_id / register_ood / register_benchmark; "
                        "docs/extending.md)")


def add_common(p):
    g = p.add_argument_group("data and model")
    add_data_plugin(g)
    g.add_argument("--dataset", default="cifar10", help=dataset_help())
    g.add_argument("--benchmark", choices=benchmark_names(), default=PAPER, help=benchmark_help())
    g.add_argument("--model", default="resnet18",
                   help=f"backbone: {', '.join(models.model_names())}")
    g.add_argument("--dataset_path", default="./data", help="data root holding every data set (see README)")
    g.add_argument("--id_classes", type=int, nargs="+", default=None,
                   help="near-OOD split: keep only these classes as ID (relabelled 0..k-1); the test images "
                        "of the others are the OOD set HeldOut. Outputs go under <dataset>_classes<...>/")
    g.add_argument("--download", action="store_true",
                   help="let torchvision download the ID set (and SVHN) when missing")
    g.add_argument("--resize_val", type=positive_int, default=None,
                   help="input size (default: the checkpoint's when it records one, else 112 for "
                        "resnet18/34, 64 for wrn, 224 for resnet50)")
    g.add_argument("--force_input_size", action="store_true",
                   help="extract at --resize_val even if the checkpoint was trained at another size")
    g.add_argument("--checkpoint", default=None,
                   help="checkpoint path (default checkpoints/<dataset>/<model>.pt, <model>-reference.pt for "
                        "--recipe reference)")
    g.add_argument("--recipe", choices=["fixed", "reference"], default=None,
                   help="training recipe: fixed (default), or reference: the authors' train_model.py as it ran "
                        "(64 px training, ReduceLROnPlateau, validation in train mode, best test-accuracy "
                        "epoch, fp32, their AutoAugment). Extraction takes the recipe from the checkpoint; "
                        "its caches and results go to <model>-reference/")
    g.add_argument("--pretrained", action="store_true",
                   help="load the backbone's declared pretrained weights (resnet50, tv:<name>: torchvision's; "
                        "timm:<name>: timm's), no checkpoint needed")
    g.add_argument("--preprocessing", choices=("auto", "backbone", "dataset"), default="auto",
                   help="evaluation transform: backbone, the one the backbone's pretrained weights were trained "
                        "with (torchvision's weights.transforms(), timm's data config); dataset, the data "
                        "set's (see --resize_val); auto: backbone for --pretrained weights used as they are, "
                        "dataset otherwise")
    b = p.add_argument_group("backbone options")
    add_params(b, models.all_options())
    b.add_argument("--model_arg", action="append", type=model_arg, metavar="KEY=VALUE",
                   help="an argument of the backbone's constructor, repeated for several: tv:<name> and "
                        "timm:<name> pass it to torchvision.models.get_model / timm.create_model (e.g. "
                        "drop_path_rate=0.1), a builder of one's own takes the keywords it names; part of the "
                        "caches' fingerprints. A backbone built for one input size (a ViT) is built at "
                        "--resize_val without it")
    g.add_argument("--subset", type=nonnegative_int, default=0,
                   help="use at most this many images of each image set (evenly spaced; 0 = all), for quick trials")
    g = p.add_argument_group("execution")
    g.add_argument("--batch_size", type=positive_int, default=128,
                   help="images per batch, in training (the total over all processes under torchrun) and "
                        "extraction")
    g.add_argument("--workers", type=nonnegative_int, default=default_workers(),
                   help="DataLoader worker processes (default: %(default)s, the CPUs available, at most 8)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument("--seed", type=nonnegative_int, default=None,
                   help="seed of training, of the scores' fits and of the sampled protocol's draws (default 1)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress output (tqdm bars on a terminal; elsewhere a line on stderr every "
                        f"{progress.EVERY:g} s and at the end of each epoch or pass)")
    g.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                   help="autocast precision. auto: for training bf16 on CUDA and on CPUs with native bf16 "
                        "(AVX512-BF16/AMX), fp32 elsewhere; feature extraction in fp32")
    g.add_argument("--channels_last", action="store_true", default=None,
                   help="channels-last memory layout (default: on for CUDA and CPUs, in training and extraction)")
    g.add_argument("--no_channels_last", dest="channels_last", action="store_false", default=None,
                   help="contiguous (NCHW) memory layout, wherever --channels_last would be the default")
    g.add_argument("--no-channels_last", dest="channels_last", action="store_false", default=None,
                   help=argparse.SUPPRESS)  # the spelling of earlier versions (argparse.BooleanOptionalAction)
    g.add_argument("--compile", nargs="?", const="on", choices=COMPILE_CHOICES, default="auto",
                   help="torch.compile the model (--compile alone: on). auto: the training step on CUDA for runs "
                        f"of at least {COMPILE_BREAK_EVEN_IMAGES:,} training images (epochs x images, per process), "
                        "where compiling pays for itself; off on CPUs (measured slower), for extraction (one pass) "
                        "and for --recipe reference (trained eager, as the authors ran it)")
    return p
