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

import test_score_ood_detection
import train_model

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--dataset", "fashionmnist", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet",
       "--batch_size", "20", "--dataset_path", "data"]
TRAIN = ["--epochs", "1", "--lr", "0.05", "--augment", "none"]
ME = "test_reliability4_d"


def one_line(code, err, *phrases):
    err = err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for p in phrases:
        assert p in err, err
    return err


def exits_2(fn, argv, capsys, *phrases):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    return one_line(e.value.code, capsys.readouterr().err, *phrases)


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
])
def test_an_option_of_another_backbone_is_refused(argv, flag, owner, small_fmnist, capsys):
    """It would change nothing while the user believes it did: one line naming it and its backbones,
    in training and in scoring, before anything is written."""
    model = argv[1]
    exits_2(train_model.main, RUN + TRAIN + argv, capsys, f"{flag} is an option of {owner}, not of {model}")
    exits_2(test_score_ood_detection.main, RUN + argv + ["--ood", "iSUN", "--score", "MSP"], capsys,
            f"{flag} is an option of {owner}")
    assert not Path("checkpoints").exists() and not Path("results").exists()
