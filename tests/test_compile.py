"""--compile {auto,on,off} (ood/system/accel.py, compile_mode): auto compiles training on CUDA only for runs long
enough to win back the compilation, never on a CPU or for extraction; a compiled training run gives
the eager run's weights. The CPUs here run torch.compile through its "eager" backend (Dynamo's graph
capture without Inductor's code generation, which takes a minute on a CPU and is slower there)."""
from pathlib import Path

import pytest
import torch

import train_model
from ood.system import accel
from ood.training.checkpoints import read_checkpoint
from ood.runtime.options import add_common, parser

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
N = accel.COMPILE_BREAK_EVEN_IMAGES


def test_auto_compiles_long_training_runs_on_cuda_only(monkeypatch):
    monkeypatch.setattr(accel, "compile_available", lambda: True)
    mode = accel.compile_mode
    assert mode("auto", CUDA, True, images=N)[0] and mode("auto", CUDA, True, images=50_000 * 100)[0]
    assert not mode("auto", CUDA, True, images=N - 1)[0]      # a short run: the compilation would not pay
    assert not mode("auto", CUDA, True, images=60_000 * 2)[0]  # the demo's 2 epochs
    assert not mode("auto", CUDA, False)[0]                    # extraction: one pass
    assert not mode("auto", CPU, True, images=10 * N)[0]       # measured slower on a CPU
    assert mode("on", CPU, False) == (True, "--compile") and mode("off", CUDA, True, images=10 * N) == (False, "--compile")
    monkeypatch.setattr(accel, "compile_available", lambda: False)
    on, why = mode("auto", CUDA, True, images=10 * N)
    assert not on and "Triton" in why


def test_the_flag(capsys):
    p = parser("x")
    add_common(p)
    assert p.parse_args([]).compile == "auto"
    assert p.parse_args(["--compile"]).compile == "on"  # the spelling of earlier versions
    assert p.parse_args(["--compile", "off"]).compile == "off"
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--compile", "yes"])
    assert e.value.code == 2 and "--compile: invalid choice: 'yes'" in capsys.readouterr().err
    with pytest.raises(ValueError):
        accel.compile_mode(True, CUDA, True, images=N)  # never read as auto


def test_a_compiled_run_trains_the_eager_runs_weights(small_fmnist, monkeypatch, capsys):
    compiled, graph_calls = [], []
    real = torch.compile

    def counting_backend(gm, example_inputs):  # Dynamo's captured graph, run as it is, counted
        def run(*args):
            graph_calls.append(len(args))
            return gm.forward(*args)
        return run

    def compile_counted(model, **kw):
        compiled.append(model)
        return real(model, backend=counting_backend, **kw)

    monkeypatch.setattr(torch, "compile", compile_counted)
    base = ["--dataset", "fashionmnist", "--model", "cnn", "--dataset_path", str(small_fmnist), "--epochs", "2",
            "--batch_size", "16", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]
    train_model.main(base + ["--checkpoint", "eager.pt"])
    assert not compiled and "compile off (auto: not on cpu" in capsys.readouterr().out
    train_model.main(base + ["--checkpoint", "compiled.pt", "--compile"])
    assert len(compiled) == 1 and "compile on (--compile)" in capsys.readouterr().out
    # one graph, run for each training batch of both epochs (validation runs eager)
    assert len(graph_calls) == 2 * -(-60 // 16), len(graph_calls)
    a, b = read_checkpoint(Path("eager.pt")), read_checkpoint(Path("compiled.pt"))
    assert a["model"].keys() == b["model"].keys() and not any("_orig_mod" in k for k in b["model"])
    for k, v in a["model"].items():
        assert torch.allclose(v.float(), b["model"][k].float(), atol=1e-5, rtol=1e-4), k
    assert [r["test_acc"] for r in a["log"]] == pytest.approx([r["test_acc"] for r in b["log"]])
