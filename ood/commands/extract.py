"""generate_stored_pattern.py: one backbone pass over the ID training set, the ID test set and the OOD sets
(cached features), and the stored patterns of the scores that need them."""
import time
from dataclasses import dataclass
from pathlib import Path

import scores
from ood.cache.features import TEST, TRAIN
from ood.data import ood_help
from ood.runtime.run import open_run, script_parser


@dataclass(frozen=True)
class Extracted:
    """What a pass left in the store: its folder, the number of training features, the scores whose
    patterns were fitted, and the seconds it took (``rank``: this process's under torchrun; only rank 0
    fits patterns)."""
    store: Path
    id_dataset: str
    model: str
    train_features: int
    fitted: tuple
    seconds: float
    rank: int = 0


def _own(g):
    g.add_argument("--ood", nargs="*", default=None,
                   help=f"to extract; with no name, none. {ood_help()}")


def build_parser(argv=None, doc=__doc__):
    return script_parser(doc, argv, "stored patterns", own=_own, score=(
        "extended", "scores whose stored patterns to fit (extended: every registered score that has one)"))


def run(args):
    wanted = [(c, {}) for c in scores.resolve_names(args.score) if c.needs_fit()]
    with open_run(args, wanted, sets=(TRAIN, TEST)) as run:
        t0 = time.time()
        train = run.store.features(TRAIN)
        run.feature_sets()
        run.close()  # under torchrun, rank 0 alone goes on to fit the stored patterns
        if run.rank == 0:
            for score in run.scores:
                run.store.pattern(score)
        return Extracted(run.store.root, run.setup.id_set.name, run.setup.model.name, len(train["features"]),
                         tuple(s.name for s in run.scores) if run.rank == 0 else (), time.time() - t0, run.rank)
