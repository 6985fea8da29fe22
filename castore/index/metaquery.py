"""Metadata filters and sorts of ``Store.versions``: the operators and what each costs.

``version_meta`` (``migrations._v3``) holds every top-level scalar of a version's metadata
(numbers, strings, booleans as 0/1) with an index on ``(key, value)``, kept by triggers. So:

- ``$eq``, ``$gt``, ``$gte``, ``$lt``, ``$lte`` and ``$in`` on a scalar are index seeks or
  range scans over that key (a number compares only with numbers, a string only with strings,
  as in MongoDB: ``{"$gt": 5}`` never matches ``"7"``);
- ``$ne``, ``$nin``, ``$exists``, ``$contains`` and equality with an object or a list check each
  candidate row (one index seek or a ``json_extract`` per row): the rows left by the other
  filters, or every live version when they are alone;
- a sort by ``metadata.KEY`` reads the same index in order when no collection or alias narrows
  the search first (versions without the key come last, in both directions).

As in MongoDB, ``None`` (``{"k": None}``, ``{"$in": [None]}``) matches a null value or a
missing key; ``$ne`` and ``$nin`` match versions that lack the key; the other operators never
do.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["OPERATORS", "meta_filter", "meta_sort_key", "split_operators"]

OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$contains")
_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def split_operators(key: str, value: Any) -> list[tuple[str, Any]]:
    """``[(operator, operand)]`` of one ``metadata=`` item; a plain value means ``$eq``.

    Raises:
        ValueError: an unknown operator, or a dict mixing operators and plain keys.
        TypeError: an operand of the wrong kind (``$in`` without a list, ``$exists`` without a
            bool, a range operator with something that is neither a number nor a string).
    """
    if not isinstance(value, dict) or not any(str(k).startswith("$") for k in value):
        return [("$eq", value)]
    if not all(str(k).startswith("$") for k in value):
        raise ValueError(
            f"metadata filter {key!r} mixes operators and plain keys: {value!r}; use "
            "{'$eq': {...}} to match an object"
        )
    found = []
    for op, operand in value.items():
        if op not in OPERATORS:
            raise ValueError(
                f"unknown metadata operator {op!r} for {key!r}; use one of {', '.join(OPERATORS)}"
            )
        if op in ("$in", "$nin") and not isinstance(operand, list | tuple | set | frozenset):
            raise TypeError(f"{op} of {key!r} takes a list, not {type(operand).__name__}")
        if op == "$exists" and not isinstance(operand, bool):
            raise TypeError(f"$exists of {key!r} takes True or False, not {operand!r}")
        if op in _RANGE and (
            isinstance(operand, bool) or not isinstance(operand, int | float | str)
        ):
            raise TypeError(
                f"{op} of {key!r} compares numbers or strings, not {type(operand).__name__}"
            )
        found.append((op, operand))
    return found


def _scalar(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _negate(cond: str) -> str:
    """NOT of a condition that is NULL where the key is missing (missing then matches)."""
    return f"NOT IFNULL({cond}, 0)"


def _kind(value: Any) -> str:
    """The SQL condition keeping ``m.value`` of the same kind as ``value`` (index-friendly)."""
    if isinstance(value, str):
        return "m.value >= ''"  # every text sorts after every number in SQLite
    return "m.value < ''"


def meta_filter(
    i: int, key: str, op: str, operand: Any, params: dict[str, Any], *, per_row: bool
) -> str:
    """The SQL condition on version ``v`` of one metadata operator; fills ``params``.

    ``per_row``: another filter drives the search, so check this one per row (an ``EXISTS``
    seek) instead of computing the matching ids once (an ``IN`` list over the index).
    """
    params[f"mn{i}"] = key
    path = '$."' + key.replace('"', '\\"') + '"'

    def over_index(cond: str) -> str:
        if per_row:
            return (
                "EXISTS (SELECT 1 FROM version_meta m WHERE m.version_id = v.id "
                f"AND m.key = :mn{i} AND {cond})"
            )
        return f"v.id IN (SELECT m.version_id FROM version_meta m WHERE m.key = :mn{i} AND {cond})"

    if op in ("$eq", "$ne") and (operand is None or isinstance(operand, dict | list)):
        params[f"mk{i}"] = path
        expr = f"json_extract(v.metadata, :mk{i})"
        if operand is None:
            cond = f"json_extract(v.metadata, :mk{i}) IS NULL"  # null or missing
        else:
            params[f"mv{i}"] = json.dumps(operand, separators=(",", ":"), sort_keys=True)
            cond = (
                f"(json_type(v.metadata, :mk{i}) IN ('object', 'array') AND {expr} = json(:mv{i}))"
            )
        return cond if op == "$eq" else _negate(cond)
    if op in ("$eq", "$ne"):
        params[f"mv{i}"] = _scalar(operand)
        cond = over_index(f"m.value = :mv{i} AND {_kind(operand)}")
        return cond if op == "$eq" else _negate(cond)
    if op in _RANGE:
        params[f"mv{i}"] = _scalar(operand)
        return over_index(f"m.value {_RANGE[op]} :mv{i} AND {_kind(operand)}")
    if op in ("$in", "$nin"):
        values = [_scalar(x) for x in operand if x is None or not isinstance(x, dict | list)]
        keys = []
        for j, x in enumerate(values):
            if x is None:
                continue
            params[f"mv{i}_{j}"] = x
            keys.append(f"(m.value = :mv{i}_{j} AND {_kind(x)})")
        cond = over_index("(" + " OR ".join(keys) + ")") if keys else "0"
        if None in values:
            params[f"mk{i}"] = path
            cond = f"({cond} OR json_extract(v.metadata, :mk{i}) IS NULL)"
        return cond if op == "$in" else _negate(cond)
    if op == "$exists":
        params[f"mk{i}"] = path
        cond = f"json_type(v.metadata, :mk{i}) IS NOT NULL"
        return cond if operand else f"NOT ({cond})"
    assert op == "$contains"
    params[f"mk{i}"] = path
    params[f"mv{i}"] = _scalar(operand)
    in_list = (
        f"(json_type(v.metadata, :mk{i}) = 'array' AND EXISTS (SELECT 1 FROM "
        f"json_each(v.metadata, :mk{i}) j WHERE j.value = :mv{i} "
        f"AND j.type NOT IN ('object', 'array')))"
    )
    if isinstance(operand, str):
        in_text = (
            "EXISTS (SELECT 1 FROM version_meta m WHERE m.version_id = v.id "
            f"AND m.key = :mn{i} AND m.value >= '' AND instr(m.value, :mv{i}) > 0)"
        )
        return f"({in_text} OR {in_list})"
    return in_list


def meta_sort_key(name: str) -> str | None:
    """The metadata key of a sort key ``metadata.KEY`` (None for other keys)."""
    if name.startswith("metadata."):
        key = name[len("metadata.") :]
        if not key:
            raise ValueError("sort by metadata needs a key: 'metadata.f1'")
        return key
    return None
