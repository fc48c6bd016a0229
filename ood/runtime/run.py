"""Opening a run: the one place where a script's command line becomes what its work reads.

Every entry point (train_model.py, generate_stored_pattern.py, test_score_ood_detection.py,
sweep_scores.py) opens its run with ``open_run``, which does, in this order and once:

1. join torchrun's process group (when started by torchrun; the device is the one torchrun gives this
   process) -- here, at the entry point, and not from inside ``Setup``, so that building a Setup has no
   effect beyond the object it returns;
2. the ``Setup`` (data set, backbone, checkpoint, device, precision); a training run stops here;
3. the OOD sets (names given with ``--ood`` are resolved before step 1, so that a misspelt one is
   reported first; by default the Setup's ``id_set`` names them), and the sweep's validation sets
   among them;
4. the ``Evaluation`` (--protocol, --repeats, --fpr_variant) of a run that writes results;
5. the device line every run prints;
6. the checks of everything a run will write or read: the results folder, every image set and the
   feature cache (``FeatureStore.check``), the head, the score objects (their settings are checked when
   they are built) and their stored patterns.

Everything a user can get wrong is therefore found before the first image is extracted: the scripts
extract only after ``open_run`` returns, through ``Run.feature_sets``. The ``Run`` it returns is the
run's configuration and its handles, built once and never written back into ``args``; used as a context
manager it leaves torchrun's process group at the end (and on an error), as nanoGPT's train.py ends its
process group at the end of its one script.
"""
from dataclasses import dataclass
from pathlib import Path

import scores

from ood.system import accel
from ood.runtime import options as cli
from ood import data as D
from ood.reporting import results as R
from ood.system.device import check_usable, describe
from ood.errors import UserError
from ood.evaluation.protocols import Evaluation
from ood.cache.features import TEST, TRAIN, VAL, FeatureStore
from ood.params import Context
from ood.evaluation.scoring import context, pick_oods, resolve_oods
from ood.runtime.setup import Setup


def script_parser(doc, argv, group, *, score=None, results=None, own=None):
    """The command line of a script that opens a run with ``open_run``.

    In order: the ``--score package.module:Class`` plug-ins named in ``argv`` are registered first (so
    that their settings get flags); the data, model and execution options (``cli.add_common``); one
    group ``group`` of the script's own: ``--score`` when ``score`` = (default, help) is given
    (``{names}`` in the help becomes the registered scores, plug-ins included, which is why the help is
    formatted here, after the plug-ins are loaded), the evaluation options and ``--results_dir`` for a
    script that writes results (``results`` describes the default folder) or only the cache's
    ``--stored_pattern_dir`` for one that does not, then what ``own(group)`` adds; last, the settings of
    every registered score, which must come after every other flag because a plug-in's setting that
    would repeat one of them is refused by name."""
    cli.load_data_plugins(argv)
    scores.load_plugins(argv)
    p = cli.parser(doc)
    cli.add_common(p)
    g = p.add_argument_group(group)
    if score:
        default, text = score
        g.add_argument("--score", nargs="+", default=[default], help=text.format(names=", ".join(scores.names())))
    if results:
        cli.add_evaluation(g)
        g.add_argument("--results_dir", default=None, help=f"default {results}")
    else:
        cli.add_store(g)
    if own:
        own(g)
    scores.add_score_args(p)
    return p


@dataclass(frozen=True)
class Run:
    """What a script's work reads, once its run is open (see ``open_run``).

    ``setup``: the Setup; ``rank``: this process's rank under torchrun (0 otherwise), taken when the run
    opened, so that it still says which process this is after the process group is left. For a run
    that extracts (the fields stay empty for a training run): ``oods``, the OOD sets (OODSet, in the
    order given); ``validation``, the names of those chosen for selection (the sweep's --select_on);
    ``evaluation``, the Evaluation of a run that writes results (None otherwise); ``store``, the
    FeatureStore (which caches what it reads); ``head``, the final linear layer; ``ctx``, the Context
    score defaults depend on; ``score_runs``, the score objects of each requested (class, settings) pair,
    in order (one per replicate seed); ``results``, the results folder (None when the run writes none);
    ``val_oods``, the benchmark's validation OOD set under ``--select_on val`` (scored against the ID
    validation split, ``validation_sets``; not a test set); ``wanted``, the (score class, settings) pairs
    of ``score_runs``; ``csid``, under ``--fsood``, the ID set's covariate-shifted ID sets (OODSets of group
    "csid", labelled), which join the ID side of every row (OpenOOD's full-spectrum setting).
    """
    setup: Setup
    rank: int = 0
    oods: tuple = ()
    validation: tuple = ()
    evaluation: Evaluation | None = None
    store: FeatureStore | None = None
    head: dict | None = None
    ctx: Context | None = None
    score_runs: tuple = ()
    results: Path | None = None
    val_oods: tuple = ()
    wanted: tuple = ()
    csid: tuple = ()

    @property
    def val_names(self):
        return [o.name for o in self.val_oods]

    @property
    def ood_names(self):
        return [o.name for o in self.oods]

    @property
    def csid_names(self):
        return [c.name for c in self.csid]

    @property
    def scores(self):
        """Every score object of the run, the score runs one after another."""
        return [s for objs in self.score_runs for s in objs]

    def feature_sets(self):
        """{"id": the ID test set's features, <OOD name>: its features, and under --fsood <csid name>: the
        features of each covariate-shifted ID set}: extracted when a cache is missing or stale (all of them
        on the first call), read from the store's memory after that."""
        self.store.extract_stale([TEST, *self.oods, *self.csid])
        return {"id": self.store.features(TEST),
                **{o.name: self.store.features(o) for o in (*self.oods, *self.csid)}}

    def validation_sets(self):
        """{"id": the ID validation split's features, <validation OOD set>: its features}: the benchmark's
        validation pair that ``--select_on val`` chooses settings on (OpenOOD's automatic search)."""
        self.store.extract_stale([VAL, *self.val_oods])
        return {"id": self.store.features(VAL), **{o.name: self.store.features(o) for o in self.val_oods}}

    def close(self):
        """Leave torchrun's process group (nothing outside torchrun); ``rank`` keeps this process's."""
        accel.teardown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_run(args, wanted=(), *, training=False, sets=(TEST,), results=None, validation=None):
    """Open the run of parsed command-line arguments ``args`` (see the module docstring for the order).

    ``training``: the run of train_model.py, which needs the Setup alone. ``wanted``: the score runs to
    build, as (score class, settings) pairs, or a function of the run's Context returning them (a sweep's
    declared grids depend on the backbone); the settings given there override the score's flags (a
    sweep's grid point; ``{}`` for the flags alone). ``sets``: the ID image sets checked with the OOD
    sets before any extraction (generate_stored_pattern.py adds the training set). ``results``:
    (subfolder of ``results/<dataset>/<model>/``, the file patterns the run writes there) for a run that
    evaluates scores into a results folder (``--results_dir`` replaces the folder); None for a run that
    writes none. ``validation``: names of OOD sets (``--select_on``) to choose settings on, some of the
    run's OOD sets but not all of them; or ["val"]: the benchmark's validation pair (``Run.val_oods``,
    scored against the ID validation split, not among the test sets)."""
    given = None if training or args.ood is None else \
        resolve_oods(args.ood, D.get_id_set(args.dataset, args.id_classes, getattr(args, "benchmark", None)))  # a misspelt name first
    check_usable(args.device)  # before torchrun's process group picks nccl or gloo
    device = accel.setup(args.device)
    try:
        return _open(args, Setup.from_args(args, training, device), wanted, training, sets, results, validation,
                     given)
    except BaseException:
        accel.teardown()
        raise


def _open(args, setup, wanted, training, sets, results, validation, given):
    """The steps of ``open_run`` after the process group is joined (an error in any of them leaves it).
    ``given``: the OOD sets of --ood, already resolved; None for the ID set's default ones."""
    rank = accel.world()[0]
    if training:
        return Run(setup, rank)
    bench = D.get_benchmark(setup.id_set.benchmark)
    oods = resolve_oods(setup.id_set.default_ood, setup.id_set) if given is None else given
    val_oods = ()
    if bench is not None and validation and [v.lower() for v in validation] == ["val"]:
        if any(o.name.lower() == "val" for o in oods):
            raise UserError("--select_on val: 'val' is both the benchmark's validation pair and an OOD set of "
                            "this run; give your folder another name.")
        val_oods, validation = (bench.val_ood(setup.id_set),), None
    picked = pick_oods(validation, oods, "--select_on") if validation else []
    if picked and len(picked) == len(oods):
        raise UserError("--select_on takes some of the OOD sets, not all: the others are the test sets.")
    if bench is not None and results and args.protocol == "paper":
        raise UserError(f"--protocol paper evaluates each score as the paper's code did on the paper's sets; on "
                        f"--benchmark {bench.name} use --protocol full (as {bench.label} does) or sampled.")
    csid = bench.csid_sets(setup.id_set) if bench is not None and getattr(args, "fsood", False) else ()
    same = [o.name for o in oods if o.name.lower() in {c.name.lower() for c in csid}]
    if same:
        raise UserError(f"--ood {same[0]}: {same[0]!r} names a covariate-shifted ID set of {setup.id_set.label}, "
                        f"which --fsood counts as ID; give your folder another name.")
    evaluation = Evaluation.from_args(args, fpr_default=bench.fpr_variant if bench else "standard") \
        if results else None
    print(f"device: {describe(setup.environment)}")
    folder = None
    if results:
        under, files = results
        folder = Path(args.results_dir) if args.results_dir else R.default_folder(setup) / under
        R.check_targets(folder, files, "--results_dir")  # as ResultsFolder.check_writable does
    store = FeatureStore(setup, args.stored_pattern_dir)
    # a missing set, a bad image file or an unwritable cache stops the run here
    store.check([*sets, *oods, *csid, *((VAL, *val_oods) if val_oods else ())])
    head = store.head()
    ctx = context(setup, head, evaluation.protocol) if evaluation else context(setup, head)
    wanted = tuple(wanted(ctx) if callable(wanted) else wanted)  # a sweep's declared grids depend on the run
    score_runs = tuple(tuple(scores.instances(cls, {**scores.given_settings(cls, args), **settings}, ctx,
                                              setup.device)) for cls, settings in wanted)
    fitted_on = {s.fit_split() for objs in score_runs for s in objs if s.needs_fit()} - {TRAIN}
    if fitted_on:  # a score fitted on the ID validation split (OpenOOD's ReAct): that split must be there
        store.check(sorted(fitted_on))
    store.check_patterns([s for objs in score_runs for s in objs])  # before any extraction
    return Run(setup=setup, rank=rank, oods=tuple(oods), validation=tuple(o.name for o in picked),
               evaluation=evaluation, store=store, head=head, ctx=ctx, score_runs=score_runs, results=folder,
               val_oods=tuple(val_oods), wanted=wanted, csid=tuple(csid))
