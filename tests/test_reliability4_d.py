"""Reliability round 4 (items 7 and 9), through the scripts: a backbone built for one input size is built
at the size it is run at, or refused with one line before training; --model_arg passes a constructor
argument to the backbones that declare a constructor for it; an option of another backbone is refused,
not ignored; every script's --help shows each default once and no help text stops mid-sentence; an
empty or legacy-format checkpoint is named as such, not as a memory-mapping problem.

The backbones of one's own used here are defined in this module (``--model test_reliability4_d:<builder>``;
tests/ is on sys.path)."""
import argparse
import importlib
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from checks import exits_2
import test_score_ood_detection
import train_model

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--dataset", "fashionmnist", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet",
       "--batch_size", "20", "--dataset_path", "data"]
TRAIN = ["--epochs", "1", "--lr", "0.05", "--augment", "none"]
ME = "test_reliability4_d"


# ----------------------------------------------------------------------------------------------------
# 9. Messages: an unreadable checkpoint
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,phrases", [
    ("empty", ["is empty (0 bytes)"]),
    ("legacy", ["legacy format", "re-save it with a current torch"]),
    ("foreign", ["is not a file torch.save wrote"]),
])
def test_an_unreadable_checkpoint_says_what_is_wrong(kind, phrases, small_fmnist, capsys):
    """Not "mmap can only be used with files saved with ...": the user asked for no memory map."""
    path = Path("model.pt")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "legacy":
        torch.save({"fc.weight": torch.zeros(10, 4)}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_text("not a checkpoint\n")
    err = exits_2(test_score_ood_detection.main, RUN + ["--model", "wrn", "--checkpoint", str(path), "--ood",
                                                         "iSUN", "--score", "MSP"], capsys, str(path), *phrases)
    assert "mmap" not in err
    assert not Path("results").exists()


# ----------------------------------------------------------------------------------------------------
# 9. Messages: --help
# ----------------------------------------------------------------------------------------------------

def _scripts():
    """Every script at the repository's root that builds a parser (build_parser), by its module name."""
    return sorted(p.stem for p in ROOT.glob("*.py") if "\ndef build_parser(" in p.read_text())


# a statement of a default: "(default: X)", "(default X, ...)", "; default: ...", "default X" at the
# start, "(the default)" -- not "the GEN code's default" or "by default", which describe other things
DEFAULT_STATEMENT = re.compile(r"(?:^|[(;,]\s*)(?:the\s+)?default\b", re.IGNORECASE)
# words a phrase cannot end with: a text that does was cut off
DANGLING = {"a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "with", "from", "and", "or", "nor",
            "as", "than", "that", "which", "its", "is", "are", "be", "but", "into", "over", "per"}


def _cut_off(text):
    t = text.rstrip()
    words = re.findall(r"[A-Za-z]+", t[-30:])
    return not t or t[-1] in ",;:(-" or (bool(words) and t[-1].isalpha() and words[-1].lower() in DANGLING)


def test_cut_off_detects_what_it_should():
    assert _cut_off("with t the p-th percentile of all scalar entries of")
    assert _cut_off("the learner's seed;") and not _cut_off("no progress bars")
    assert not _cut_off("in [0, 1))") and not _cut_off("default results/<dataset>/<model>/")


def _flat(text):
    return " ".join(text.split())


def test_every_script_help_shows_each_default_once_and_whole_sentences(monkeypatch, capsys):
    """From each script's parser: every option shown in --help states a default at most once, exactly once
    when it has one (a value, or a declared setting's), never "None"; no option's help and no group's
    description is cut off. Checked on the text --help prints (wide enough that nothing wraps)."""
    monkeypatch.setenv("COLUMNS", "100000")
    scripts = _scripts()
    assert {"train_model", "generate_stored_pattern", "test_score_ood_detection", "sweep_scores",
            "aggregate_results", "verify_data"} <= set(scripts)
    problems = []
    for name in scripts:
        module = importlib.import_module(name)
        with pytest.raises(SystemExit) as e:
            module.main(["--help"])
        assert e.value.code == 0
        printed = _flat(capsys.readouterr().out)
        parser = module.build_parser()
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or action.dest == "help":
                continue
            where = f"{name} {'/'.join(action.option_strings) or action.dest}"
            text = _flat(formatter._expand_help(action)) if action.help else ""
            if text and text not in printed:
                problems.append(f"{where}: its help is not printed as the parser has it")
            stated = len(DEFAULT_STATEMENT.findall(text))
            param = getattr(action, "param", None)
            has_default = action.nargs != 0 and (action.default not in (None, argparse.SUPPRESS) or
                                                 (param is not None and param.default is not None))
            if stated > 1 or (has_default and stated != 1):
                problems.append(f"{where}: states its default {stated} times: {text!r}")
            if "(default: None)" in text:
                problems.append(f"{where}: shows default None: {text!r}")
            if text and _cut_off(text):
                problems.append(f"{where}: help cut off: {text[-60:]!r}")
        for group in parser._action_groups:
            if group.description and (_cut_off(group.description) or not group.description.rstrip().endswith(".")):
                problems.append(f"{name} group {group.title!r}: description cut off: {group.description[-60:]!r}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------------
# 9. Messages: an option of another backbone
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,flag,owner", [
    (["--model", "timm:resnet10t", "--layers", "16"], "--layers", "wrn"),
    (["--model", "resnet18", "--widen_factor", "2"], "--widen_factor", "wrn"),
    (["--model", "resnet18", "--widen-factor", "2"], "--widen_factor", "wrn"),  # the older spelling too
    (["--model", f"{ME}:fixed_net", "--droprate", "0.1"], "--droprate", "wrn"),
])
def test_an_option_of_another_backbone_is_refused(argv, flag, owner, small_fmnist, capsys):
    """It would change nothing while the user believes it did: one line naming it and its backbones,
    in training and in scoring, before anything is written."""
    model = argv[1]
    exits_2(train_model.main, RUN + TRAIN + argv, capsys, f"{flag} is an option of {owner}, not of {model}")
    exits_2(test_score_ood_detection.main, RUN + argv + ["--ood", "iSUN", "--score", "MSP"], capsys,
            f"{flag} is an option of {owner}")
    assert not Path("checkpoints").exists() and not Path("results").exists()

class FixedNet(nn.Module):
    """A backbone built for one input size, as a ViT is: its head reads the flattened feature map."""

    def __init__(self, num_classes, in_channels, size):
        super().__init__()
        self.body = nn.Conv2d(in_channels, 2, 4, stride=4)
        self.feature_dim = 2 * (size // 4) ** 2
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x):
        return torch.flatten(torch.relu(self.body(x)), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def fixed_net(num_classes=10, in_channels=3, size=16, **_):
    """Its ``size`` is a keyword it names, so ``--model_arg size=...`` reaches it."""
    return FixedNet(num_classes, in_channels, size)


fixed_net.input_size = 16


def unnamed_net(num_classes=10, in_channels=3, **_):
    """It names no keyword of its own: ``--model_arg`` has nothing to set."""
    return FixedNet(num_classes, in_channels, 16)


unnamed_net.input_size = 16


# ----------------------------------------------------------------------------------------------------
# 7. Backbones built for one input size; --model_arg
# ----------------------------------------------------------------------------------------------------

def test_a_size_the_backbone_cannot_take_is_one_line_before_training(small_fmnist, capsys):
    """A backbone built for 16 px asked to train at 32: one line before any epoch, no checkpoint; its own
    keyword (--model_arg size=32) builds it at 32, and the checkpoint records the argument."""
    model = ["--model", f"{ME}:fixed_net", "--resize_val", "32"]
    exits_2(train_model.main, RUN + TRAIN + model, capsys, f"--model {ME}:fixed_net does not run on 32x32 inputs",
            "--model_arg")
    assert not Path("checkpoints").exists()
    train_model.main(RUN + TRAIN + model + ["--model_arg", "size=32"])
    ck = torch.load(f"checkpoints/fashionmnist/{ME}_fixed_net.pt", weights_only=True)
    assert ck["meta"]["options"] == {"size": 32} and ck["meta"]["input_size"] == 32
    assert ck["model"]["fc.weight"].shape == (10, 2 * 8 * 8)


@pytest.mark.parametrize("argv,phrases", [
    (["--model", f"{ME}:fixed_net", "--model_arg", "width=3"], ["--model_arg width=3", "has no keyword width"]),
    (["--model", f"{ME}:unnamed_net", "--model_arg", "size=32"], ["takes no constructor arguments"]),
    (["--model", "resnet18", "--model_arg", "size=32"], ["resnet18 takes no constructor arguments"]),
    (["--model", "wrn", "--model_arg", "layers=16"], ["layers is an option of wrn: use --layers"]),
    (["--model", f"{ME}:fixed_net", "--model_arg", "size=32", "--model_arg", "size=64"], ["size is given twice"]),
    (["--model", f"{ME}:fixed_net", "--model_arg", "num_classes=3"], ["the run sets num_classes itself"]),
    (["--model", f"{ME}:fixed_net", "--model_arg", "size"], ["--model_arg", "expected KEY=VALUE"]),
    (["--model", f"{ME}:fixed_net", "--model_arg", "=3"], ["--model_arg", "expected KEY=VALUE"]),
    (["--model", f"{ME}:fixed_net", "--model_arg", "size={1: 2}"], ["--model_arg", "must be a number"]),
])
def test_bad_model_args_are_one_line(argv, phrases, small_fmnist, capsys):
    exits_2(train_model.main, RUN + TRAIN + argv, capsys, *phrases)
    assert not Path("checkpoints").exists()


@pytest.mark.slow
def test_timm_vit_trains_and_scores_at_another_size(small_fmnist, capsys):
    """timm's ViT (test_vit, 160 px by its config) at --resize_val 32: built with img_size=32, trained,
    then extracted at the size its checkpoint records; a size its patches do not divide is one line."""
    model = ["--model", "timm:test_vit", "--resize_val", "32"]
    train_model.main(RUN + TRAIN + model)
    ck = torch.load("checkpoints/fashionmnist/timm_test_vit.pt", weights_only=True)
    assert ck["meta"]["input_size"] == 32 and ck["model"]["model.pos_embed"].shape[1] == 1 + 2 * 2
    rows = test_score_ood_detection.main(RUN + ["--model", "timm:test_vit", "--ood", "iSUN", "--score", "MSP"])
    assert [r["score"] for r in rows] == ["MSP"]
    capsys.readouterr()
    exits_2(train_model.main, RUN + TRAIN + ["--model", "timm:test_vit", "--resize_val", "40", "--overwrite"],
            capsys, "does not run on 40x40 inputs", "divisible by patch size")


@pytest.mark.slow
def test_torchvision_vit_trains_at_another_size(small_fmnist, capsys):
    """torchvision's vit_b_16 at --resize_val 32 is built with image_size=32; at 40 (not a multiple of its
    16 px patches) torchvision's refusal is one line, before training; so is the reference recipe, which
    would train at one size and record another."""
    base = RUN + TRAIN + ["--model", "tv:vit_b_16", "--subset", "4", "--batch_size", "4"]
    exits_2(train_model.main, base + ["--resize_val", "40"], capsys, "torchvision could not build vit_b_16 with "
            "image_size=40", "Input shape indivisible by patch size")
    exits_2(train_model.main, base + ["--resize_val", "32", "--recipe", "reference"], capsys,
            "tv:vit_b_16 is built for one input size")
    assert not Path("checkpoints").exists()
    train_model.main(base + ["--resize_val", "32"])
    ck = torch.load("checkpoints/fashionmnist/tv_vit_b_16.pt", weights_only=True)
    assert ck["meta"]["input_size"] == 32 and ck["model"]["body.encoder.pos_embedding"].shape == (1, 1 + 2 * 2, 768)
