"""One loader, one set of worker processes, for every evaluation set of a run (ood/cache/features.py,
FeatureStore.extract_stale): the caches hold what a pass per set gives, within float round-off."""

import torch

import generate_stored_pattern
import ood.cache.features as F
from ood.cache.features import TEST

TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "7", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]


def test_one_pass_for_the_evaluation_sets(fmnist_run, monkeypatch):
    loaders = []
    real = F.DataLoader

    def counting(dataset, *a, **k):
        loaders.append(len(dataset))
        return real(dataset, *a, **k)

    monkeypatch.setattr(F, "DataLoader", counting)
    argv = TINY + ["--dataset_path", str(fmnist_run / "data"), "--ood", "iSUN", f"mine={fmnist_run / 'data' / 'mine'}",
                   "--score", "MSP"]
    generate_stored_pattern.main(argv)
    assert loaders == [100, 40 + 10 + 8]  # the training set alone, then the test set and both OOD sets at once
    store = fmnist_run / "stored_pattern/fashionmnist/wrn/features"
    from ood.runtime.run import open_run
    from generate_stored_pattern import build_parser
    with open_run(build_parser(argv).parse_args(argv), sets=(TEST,)) as run:
        for spec, name in ((TEST, "test"), (run.oods[0], "iSUN")):
            ds = run.store.dataset(spec)
            one = F.extract(run.store.model, ds, 5, torch.device("cpu"), stages=run.store.stages)
            cached = torch.load(store / f"{name}.pt", weights_only=True)
            assert torch.allclose(cached["features"], one["features"], atol=1e-5, rtol=1e-5)
            assert torch.allclose(cached["logits"], one["logits"], atol=1e-5, rtol=1e-5)
            assert torch.equal(cached["labels"], one["labels"])
    loaders.clear()
    generate_stored_pattern.main(argv)  # every cache is current: nothing is extracted
    assert loaders == []


def test_channels_last_extraction_gives_the_contiguous_features_within_round_off():
    """On a CPU, extraction runs channels-last by default (faster there, scripts/benchmark.py part 6):
    its fp32 features and logits are the contiguous layout's up to float round-off."""
    from models import build_model
    from torch.utils.data import TensorDataset
    g = torch.Generator().manual_seed(0)
    for name, channels, size, opts in (("cnn", 1, 28, {}), ("wrn", 3, 32, {"layers": 10, "widen_factor": 1}),
                                       ("resnet18", 3, 32, {})):
        model = build_model(name, 10, in_channels=channels, **opts).eval()
        for m in model.modules():  # trained-looking batch-norm statistics, not the identity of a fresh model
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
        ds = TensorDataset(torch.rand(24, channels, size, size, generator=g), torch.arange(24) % 10)
        plain = F.extract(model, ds, 8, torch.device("cpu"), channels_last=False)
        last = F.extract(F.accel.prepare(model, torch.device("cpu"), True), ds, 8, torch.device("cpu"),
                         channels_last=True)
        for k in ("features", "logits"):
            assert last[k].dtype == torch.float32
            scale = plain[k].abs().max().item()
            assert scale > 0 and (last[k] - plain[k]).abs().max().item() <= 1e-5 * scale, (name, k)
        assert torch.equal(last["labels"], plain["labels"])


def test_extraction_is_channels_last_on_a_cpu_unless_asked_otherwise(fmnist_run):
    from generate_stored_pattern import build_parser
    from ood.runtime.setup import Setup
    base = TINY + ["--dataset_path", str(fmnist_run / "data")]
    for extra, expected in (([], True), (["--no_channels_last"], False), (["--channels_last"], True)):
        args = build_parser(base + extra).parse_args(base + extra)
        assert Setup.from_args(args, training=False).channels_last is expected, extra
