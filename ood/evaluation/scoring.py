"""Scores and result rows from cached features: what test_score_ood_detection.py and the sweep share.

A "score run" is one table row's worth of score objects: one, or one per value of a replicate setting
(RecLag's learner seed). Rows carry the whole configuration they were computed with (data set, backbone,
input size, precision, protocol, the score's settings) and the provenance of their inputs (checkpoint
and ID test features), as nanoGPT keeps its config beside every checkpoint.
"""
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ood import data as D
from ood.errors import UserError
from ood.system import accel
from ood.evaluation.protocols import bootstrap_distribution, evaluate_replicates, interval_fields, resampled_ids, too_few_images
from ood.params import Context
from ood.plugins import describe_score, running
from ood.evaluation.rows import dist_key


def resolve_oods(names, id_set=None):
    """OODSet objects for user-given names (``NAME=PATH`` for a folder of one's own), each set once; among
    the sets of ``id_set``'s benchmark when it is not the paper's. One name for two different sets
    (``--ood a=X A=Y``) is refused: the rows could not be told apart."""
    out, seen = [], {}
    for n in names:
        spec = D.resolve_ood(n, id_set)
        other = seen.get(spec.name.lower())
        if other is not None and other != spec:
            raise UserError(f"--ood names two different sets {other.name!r} ({other.folder}) and {spec.name!r} "
                            f"({spec.folder}); give each its own name.")
        if other is not None:
            warnings.warn(f"OOD set {spec.name} is named twice; it is evaluated once.")
            continue
        seen[spec.name.lower()] = spec
        out.append(spec)
    return out


def pick_oods(names, among, flag):
    """The sets of ``among`` (resolved OODSets of this run) that ``names`` select, by a set's own name
    first (a user's folder is found by the name it was given), then as a registered name or alias."""
    picked = []
    for n in names:
        spec = next((o for o in among if o.name.lower() == n.lower()), None)
        if spec is None:
            known = D.builtin_ood(n)
            spec = next((o for o in among if known is not None and o == known), None)
        if spec is None:
            hint = " (val, the validation pair, exists under --benchmark openood)" if n.lower() == "val" else ""
            raise UserError(f"{flag} {n}: not among the OOD sets of this run ({', '.join(o.name for o in among)})"
                            f"{hint}.")
        picked.append(spec)
    return list(dict.fromkeys(picked))


def context(setup, head, protocol="full"):
    """What score defaults may depend on, for this setup and head."""
    # a benchmark's set is not the paper's: "openood-imagenet" takes the scores' general defaults, not
    # those the paper's ImageNet protocol fixes (KNN's 1 % bank)
    return Context(dataset=setup.id_set.base or setup.id_set.key, model=setup.model,
                   feature_dim=int(head["weight"].shape[1]), num_classes=int(head["weight"].shape[0]),
                   seed=setup.seed, protocol=protocol, benchmark=setup.id_set.benchmark)


def score_set(score, feats, state, head, set_name):
    """Scores of one image set as a numpy array; warnings (e.g. inputs routed to a class without
    stored patterns) are printed once, naming the set. Every script takes scores through here, so this is
    where a score's output is checked (``checked_values``) before it reaches the metrics."""
    where = "ID test set" if set_name == "id" else f"OOD set {set_name}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with running(score, f"score on the {where}"):
            values = score.score(feats, state, head)
    for w in caught:
        print(f"warning: {'ID test' if set_name == 'id' else set_name}: {w.message}", file=sys.stderr)
    return checked_values(values, len(feats["features"]), f"{describe_score(score)} on the {where}")


def checked_values(values, n, what):
    """``values`` as a 1-D real numpy array of ``n`` finite numbers, or a UserError saying what came back.
    A score returning n - 1 or n x 2 values would otherwise be taken by the metrics as another set size or
    twice as many inputs, and a NaN would silently sort as the lowest or highest score."""
    expected = f"expected one finite real number per input ({n} values in a 1-D tensor or array)"
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype.is_floating_point and values.dtype not in (torch.float32, torch.float64):
            values = values.float()  # bfloat16 has no numpy dtype
        described = f"a tensor with shape {tuple(values.shape)} and dtype {str(values.dtype).replace('torch.', '')}"
        values = values.numpy() if not values.dtype.is_complex and values.dtype != torch.bool else None
    else:
        kind = type(values).__name__
        try:
            values = np.asarray(values)
        except Exception as e:  # ragged lists and other shapes numpy refuses
            raise UserError(f"score {what}: {expected}; got a {kind} that numpy cannot make one array of "
                            f"({' '.join(str(e).split())}).") from None
        kind = "numpy array" if kind == "ndarray" else kind
        described = f"a {kind} with shape {values.shape} and dtype {values.dtype}"
    if values is None or values.dtype.kind not in "iuf" or values.shape != (n,):
        raise UserError(f"score {what}: {expected}; got {described}.")
    if values.dtype.kind != "f" or values.dtype.itemsize < 4:
        values = values.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        nan, inf = int(np.isnan(values).sum()), int(bad.sum() - np.isnan(values).sum())
        raise UserError(f"score {what}: {expected}; got {nan} NaN and {inf} infinite of {n} values "
                        f"(the first at input {int(bad.nonzero()[0][0])}).")
    return values


def replicate_name(score):
    return ",".join(f"{k}={v}" for k, v in score.replicate_settings().items())


def compute(objs, states, sets, head):
    """{set name: [scores of each replicate]} of one score run over ``sets`` ({name: features})."""
    return {name: [score_set(s, feats, st, head, name) for s, st in zip(objs, states)] for name, feats in sets.items()}


@dataclass(frozen=True)
class RowSource:
    """Where a row's features came from, as its fields say it: the ID set, the backbone and its checkpoint,
    the input size, precision, preprocessing and subset, the environments. ``of_setup`` gives them for a
    run of the scripts; features a user brings (ood.api.score_features) give what the user knows.
    ``id_set``: the IDSet (its benchmark's rows also say the OOD set's group), or None; ``id_protocol``:
    its preprocessing family, which the paper protocol's draw size depends on."""
    id_dataset: str
    model: str
    num_classes: int
    input_size: int | None = None
    feature_precision: str | None = None
    train_precision: str | None = None
    preprocessing: dict | None = None
    subset: int | None = None
    recipe: str | None = None
    checkpoint: str | None = None
    environment: dict | None = None
    train_environment: dict | None = None
    id_set: object = None
    id_protocol: str = "cifar"

    @classmethod
    def of_setup(cls, setup):
        return cls(id_dataset=setup.id_set.name, model=setup.model.name, num_classes=setup.id_set.num_classes,
                   input_size=setup.input_size, feature_precision=setup.feature_precision,
                   train_precision=setup.train_precision,
                   preprocessing={"source": setup.preprocessing,
                                  "transform": describe_transform(setup.test_transform())},
                   subset=setup.subset, recipe=setup.recipe, checkpoint=setup.checkpoint_id,
                   environment=setup.environment, train_environment=dict(setup.train_environment) or None,
                   id_set=setup.id_set, id_protocol=setup.id_set.preprocessing)


def make_row(source, objs, ood_name, metrics, id_features):
    """One results row: the score's settings and where its features came from (a RowSource) beside its
    metrics."""
    first = objs[0]
    row = {"id_dataset": source.id_dataset, "model": source.model, "score": first.name,
           "ood_dataset": ood_name, **metrics, "input_size": source.input_size,
           "feature_precision": source.feature_precision, "train_precision": source.train_precision,
           "preprocessing": source.preprocessing, "subset": source.subset, "recipe": source.recipe,
           "settings": first.shared_settings()}
    replicate = {k: [o.replicate_settings()[k] for o in objs] for k in first.replicate_settings()}
    if replicate:
        row["replicates"] = replicate
    row.update(checkpoint=source.checkpoint, id_features=id_features["digest"], environment=source.environment,
               train_environment=source.train_environment)
    # the backbone's ID test accuracy, in every row: a table of a backbone near chance says nothing about
    # its scores, and its caption says so (ood.reporting.reports.chance_note)
    row.update(id_accuracy=accuracy(id_features), num_classes=source.num_classes)
    if source.id_set is not None and source.id_set.benchmark:  # a benchmark's rows say which and the group
        row.update(benchmark=source.id_set.benchmark, ood_group=group_of(source.id_set, ood_name))
    return row


def describe_transform(transform):
    """A transform as one line (its repr, whitespace collapsed): what a row says its images went through."""
    return " ".join(repr(transform).split())


def group_of(id_set, ood_name):
    """The benchmark group ("near", "far", "val") of an OOD set; "" for a folder of the user's own."""
    spec = D.benchmark_ood(ood_name, id_set)
    return spec.group if spec is not None else ""


def accuracy(features):
    """Top-1 accuracy of the backbone's head on a labelled image set (its cached logits and labels); None
    when the set has no logits or no labels (features a user brings without them: labels -1)."""
    labels, logits = features.get("labels"), features.get("logits")
    if labels is None or logits is None or (len(labels) and bool((labels < 0).all())):  # -1: no label
        return None
    return float((logits.argmax(1) == labels).double().mean()) if len(labels) else float("nan")


def rows_for(source, objs, values, ood_names, evaluation, id_features, dists=None, extra=None):
    """The rows of one score run against every OOD set (``values`` as returned by ``compute``, with
    the ID test set under "id"), evaluated as ``evaluation`` (an ood.evaluation.protocols.Evaluation) says for
    this score, with their intervals when it asks for them. ``dists``, a dict, receives each row's
    bootstrap distribution under ``ood.evaluation.rows.dist_key(row)``. A row of too few images for an interval
    (``too_few_images``) has none, and no distribution (so no test uses it), only ``intervals_note``.
    ``extra``: fields every row carries, part of its key (those of ``full_spectrum``)."""
    plan = evaluation.plan(type(objs[0]), len(values["id"][0]), source.id_protocol)
    boot = evaluation.intervals
    sides = resampled_ids(values["id"], boot) if boot else None

    def row_of(o):
        try:
            m = evaluate_replicates(values["id"], values[o], o, plan)
        except ValueError as e:
            raise UserError(f"score {objs[0].name} against {o}: {e}") from None
        row = make_row(source, objs, o, m, id_features)
        row.update(extra or {})
        few = too_few_images(m["n_id"], m["n_ood"]) if boot else None
        if few:
            row.update(bootstrap=boot.describe(), intervals_note=few)
            return row, None
        if not boot:
            return row, None
        dist = bootstrap_distribution(sides, values[o], o, plan, boot)
        full = plan.size is None  # DeLong's interval is of the metric on every OOD image
        row.update(interval_fields(dist, boot, m, values["id"] if full else None, values[o] if full else None))
        return row, dist

    # the first set alone (it sums the ID side's resamples, which the others share), then the others
    # on the CPU's threads (numpy releases the GIL in its loops); each row is what one thread computes
    ood_names = list(ood_names)
    done = [row_of(o) for o in ood_names[:1]]
    # each thread holds one OOD set's cumulative counts (float64, every resample)
    largest = 16 * (max((len(values[o][0]) for o in ood_names[1:]), default=0) + 1) * (boot.resamples if boot else 0)
    with ThreadPoolExecutor(accel.threads_for(len(ood_names) - 1, largest)) as pool:
        done += pool.map(row_of, ood_names[1:])
    for row, dist in done:
        if dist is not None and dists is not None:
            dists[dist_key(row)] = dist
    return [row for row, _ in done]


def score_all(score_runs, fit, sets, head, source, ood_names, evaluation, dists=None, csid=()):
    """The fit -> score -> rows step of every script and of ood.api: for each score run (its replicates'
    score objects), its fitted states (``fit(score)``: the stored pattern, or {} for a score without
    one), its values on every image set of ``sets`` ({"id": the ID features, <OOD name>: features}) and
    its rows against ``ood_names``; yields (score objects, values, rows) one score run at a time. ``csid``:
    names of covariate-shifted ID sets in ``sets`` (--fsood), whose values join the ID side of every row
    (``id_side``) while ``values`` keep each set apart."""
    extra = full_spectrum(sets, csid) if csid else None
    for objs in score_runs:
        states = [fit(s) if s.needs_fit() else {} for s in objs]
        values = compute(objs, states, sets, head)
        yield objs, values, rows_for(source, objs, id_side(values, csid), ood_names, evaluation, sets["id"], dists,
                                     extra)


def id_side(values, csid=()):
    """``values`` ({set: [scores of each replicate]}) with the ID side of OpenOOD's full-spectrum setting
    under "id": the ID test set's scores followed by those of each covariate-shifted ID set of ``csid``, in
    that order, per replicate (``eval_ood(fsood=True)`` concatenates them so); ``values`` itself without."""
    if not csid:
        return values
    joined = [np.concatenate([v, *(values[c][k] for c in csid)]) for k, v in enumerate(values["id"])]
    return {**values, "id": joined}


def full_spectrum(sets, csid):
    """The fields of a row of the full-spectrum setting: ``fsood`` (part of its key), the covariate-shifted ID
    sets and their sizes, and ``fsood_accuracy``, the accuracy OpenOOD reports as ACC there: the backbone's
    plain logits against the labels of the ID test set and every csid set pooled (``eval_acc('csid')``)."""
    pooled = {k: torch.cat([torch.as_tensor(sets[n][k]) for n in ("id", *csid)]) for k in ("logits", "labels")}
    return {"fsood": True, "csid_sets": list(csid), "n_csid": {c: int(len(sets[c]["labels"])) for c in csid},
            "fsood_accuracy": accuracy(pooled)}

