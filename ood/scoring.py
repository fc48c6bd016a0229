"""Scores and result rows from cached features: what test_score_ood_detection.py and the sweep share.

A "score run" is one table row's worth of score objects: one, or one per value of a replicate setting
(RecLag's learner seed). Rows carry the whole configuration they were computed with (data set, backbone,
input size, precision, protocol, the score's settings) and the provenance of their inputs (checkpoint
and ID test features), as nanoGPT keeps its config beside every checkpoint.
"""
import sys
import warnings

from . import data as D
from .errors import UserError
from .evaluation import evaluate_replicates, plan_for
from .params import Context


def resolve_oods(names):
    """OODSet objects for user-given names (``NAME=PATH`` for a folder of one's own), each set once."""
    out, seen = [], set()
    for n in names:
        spec = D.resolve_ood(n)
        if spec.name.lower() in seen:
            warnings.warn(f"OOD set {spec.name} is named twice; it is evaluated once.")
            continue
        seen.add(spec.name.lower())
        out.append(spec)
    return out


def context(setup, head, protocol="full"):
    """What score defaults may depend on, for this setup and head."""
    return Context(dataset=setup.id_set.base or setup.id_set.name, model=setup.model,
                   feature_dim=int(head["weight"].shape[1]), num_classes=int(head["weight"].shape[0]),
                   seed=setup.seed, protocol=protocol)


def score_set(score, feats, state, head, set_name):
    """Scores of one image set as a numpy array; warnings (e.g. inputs routed to a class without
    stored patterns) are printed once, naming the set."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = score.score(feats, state, head).detach().cpu().numpy()
    for w in caught:
        print(f"warning: {'ID test' if set_name == 'id' else set_name}: {w.message}", file=sys.stderr)
    return values


def replicate_name(score):
    return ",".join(f"{k}={v}" for k, v in score.replicate_settings().items())


def compute(objs, states, sets, head):
    """{set name: [scores of each replicate]} of one score run over ``sets`` ({name: features})."""
    return {name: [score_set(s, feats, st, head, name) for s, st in zip(objs, states)] for name, feats in sets.items()}


def make_row(setup, objs, ood_name, metrics, id_features):
    """One results row: the score's settings and the run's configuration beside its metrics."""
    first = objs[0]
    row = {"id_dataset": setup.id_set.name, "model": setup.model.name, "score": first.name,
           "ood_dataset": ood_name, **metrics, "input_size": setup.input_size,
           "feature_precision": setup.feature_precision, "subset": setup.subset, "recipe": setup.recipe,
           "settings": first.shared_settings()}
    replicate = {k: [o.replicate_settings()[k] for o in objs] for k in first.replicate_settings()}
    if replicate:
        row["replicates"] = replicate
    row.update(checkpoint=setup.checkpoint_id, id_features=id_features["digest"])
    return row


def rows_for(setup, objs, values, ood_names, protocol, repeats, seed, fpr_variant, id_features):
    """The rows of one score run against every OOD set (``values`` as returned by ``compute``, with
    the ID test set under "id"), evaluated as ``protocol`` says for this score (ood/evaluation.py)."""
    plan = plan_for(protocol, type(objs[0]), len(values["id"][0]), repeats, seed, fpr_variant,
                    setup.id_set.protocol)
    rows = []
    for o in ood_names:
        try:
            m = evaluate_replicates(values["id"], values[o], o, plan)
        except ValueError as e:
            raise UserError(f"score {objs[0].name} against {o}: {e}") from None
        rows.append(make_row(setup, objs, o, m, id_features))
    return rows

