"""One loader, one set of worker processes, for every evaluation set of a run (ood/features.py,
FeatureStore.extract_stale): the caches hold what a pass per set gives, within float round-off."""

import torch

import generate_stored_pattern
import ood.features as F
from ood.features import TEST

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
    from ood.run import open_run
    from generate_stored_pattern import build_parser
    with open_run(build_parser(argv).parse_args(argv), sets=(TEST,)) as run:
        for spec, name in ((TEST, "test"), (run.oods[0], "iSUN")):
            ds = run.store.dataset(spec)
            one = F.extract(run.store.model, ds, 5, torch.device("cpu"))
            cached = torch.load(store / f"{name}.pt", weights_only=True)
            assert torch.allclose(cached["features"], one["features"], atol=1e-5, rtol=1e-5)
            assert torch.allclose(cached["logits"], one["logits"], atol=1e-5, rtol=1e-5)
            assert torch.equal(cached["labels"], one["labels"])
    loaders.clear()
    generate_stored_pattern.main(argv)  # every cache is current: nothing is extracted
    assert loaders == []
