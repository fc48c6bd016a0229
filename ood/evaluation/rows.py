"""The schema of a result row, as a leaf every layer may import: the fields that identify a row (two rows
with the same key are the same measurement, the newer replaces the older), those that a table's rows
share, the key of a row's bootstrap distribution, and the table label of each score's variants. It imports
only the score registry (for the value a setting left out of a row stands for)."""
import json

import scores
from ood.errors import UserError

# "fsood": True in a row of OpenOOD's full-spectrum setting (--fsood: the ID side is the ID test set and the
# covariate-shifted ID sets), absent otherwise, so that such a row never replaces, nor shares a table with, a
# row of the ID test set alone (and rows written before the field existed keep their keys)
ROW_KEY = ("score", "settings", "replicates", "ood_dataset", "protocol", "repeats", "seed", "fpr_variant",
           "input_size", "feature_precision", "subset", "fsood")
TABLE_KEY = ("protocol", "repeats", "seed", "fpr_variant", "input_size", "feature_precision", "subset", "bootstrap",
             "fsood")
PROVENANCE = ("id_dataset", "model", "checkpoint", "id_features")


def _json(v):
    return json.dumps(v, sort_keys=True)


def row_key(row):
    return _json([row.get(k) for k in ROW_KEY])


def dist_key(row):
    """The key of a row's bootstrap distribution (bootstrap.npz): the row's key, its bootstrap and its point
    estimates, so that a distribution is only ever used with the computation it came from."""
    return _json([row_key(row), row.get("bootstrap"), row.get("auroc"), row.get("fpr95")])


def shown_accuracy(row):
    """The accuracy a row's table shows (OpenOOD's ACC column): under --fsood the accuracy pooled over the ID
    test set and the covariate-shifted ID sets (``fsood_accuracy``), else the ID test accuracy; None when the
    row has none."""
    return row.get("fsood_accuracy") if row.get("fsood") else row.get("id_accuracy")


def variant_of(row):
    """What distinguishes two rows of the same score: its settings and replicate seeds."""
    return _json([row.get("settings"), row.get("replicates")])


def implicit_value(score, key):
    """The value a row's missing setting ``key`` of ``score`` stands for: a setting at one of its
    ``implicit`` values (what the score did before the setting existed) is left out of the row
    (``Score.shared_settings``); None for a score or setting not registered here."""
    try:
        cls = scores.get(score)
    except UserError:
        return None
    param = next((p for p in cls.params if p.name == key), None)
    return param.implicit[0] if param is not None and param.implicit else None


def setting(row, key):
    """The row's value of its score's setting ``key``, an implicit one included."""
    given = row.get("settings") or {}
    return given[key] if key in given else implicit_value(row["score"], key)


def assign_labels(rows):
    """``rows`` as new dicts, each with its table label: the score's name, followed by the settings that
    differ between the variants of that score present in ``rows`` (e.g. "ReAct (percentile=98)"). The
    caller's rows are not changed: a label depends on which other rows are labelled with it, so a row
    written into one folder must not carry that folder's label into another."""
    variants = {}
    for r in rows:
        variants.setdefault(r["score"], {})[variant_of(r)] = {**(r.get("settings") or {}),
                                                              **(r.get("replicates") or {})}
    labels = {}
    for score, by in variants.items():
        if len(by) == 1:
            labels.update({(score, v): score for v in by})
            continue
        keys = sorted({k for s in by.values() for k in s})
        filled = {v: {k: s[k] if k in s else implicit_value(score, k) for k in keys} for v, s in by.items()}
        differ = [k for k in keys if len({_json(s[k]) for s in filled.values()}) > 1]
        for v, s in filled.items():
            parts = [f"{k}={','.join(map(str, s[k])) if isinstance(s[k], list) else s[k]}" for k in differ]
            labels[(score, v)] = f"{score} ({', '.join(parts)})"
    return [{**r, "label": labels[(r["score"], variant_of(r))]} for r in rows]


def table_groups(rows):
    """Rows grouped by what a table shares (protocol and its draws, FPR95 variant, ...), in first-seen
    order. The paper protocol evaluates each score its own way, so its rows share one table."""
    groups = {}
    for r in rows:
        key = [r.get(k) for k in TABLE_KEY if r["protocol"] != "paper" or k not in ("repeats", "seed", "fpr_variant")]
        groups.setdefault(_json(key), []).append(r)
    return list(groups.values())
