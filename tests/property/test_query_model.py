"""``store.versions(metadata=..., sort="metadata.KEY")`` against a Python model of the filters,
on random catalogues (API.md "Richer queries"; the rules are in castore/index/metaquery.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import castore

KEYS = ["f1", "arch", "tags"]
SCALARS = st.one_of(
    st.integers(-2, 3), st.sampled_from([0.5, 1.5, 2.0]), st.sampled_from(["a", "b", "ab", ""]),
    st.booleans(), st.none(),
)
VALUES = st.one_of(SCALARS, st.lists(st.sampled_from(["a", "b", 1, 2]), max_size=3))
METADATA = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3)
OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$contains"]


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(KEYS))
    op = draw(st.sampled_from([*OPS, "plain"]))
    if op == "plain":
        return {key: draw(SCALARS)}
    if op in ("$in", "$nin"):
        operand: Any = draw(st.lists(SCALARS, max_size=3))
    elif op == "$exists":
        operand = draw(st.booleans())
    elif op in ("$gt", "$gte", "$lt", "$lte"):
        operand = draw(st.one_of(st.integers(-2, 3), st.sampled_from([0.5, 1.5, "a", "b"])))
    elif op == "$contains":
        operand = draw(st.sampled_from(["a", "b", 1]))
    else:
        operand = draw(st.one_of(SCALARS, st.lists(st.sampled_from(["a", "b"]), max_size=2)))
    return {key: {op: operand}}


def _norm(x: Any) -> Any:
    return int(x) if isinstance(x, bool) else x


def _scalar(x: Any) -> bool:
    return x is not None and not isinstance(x, list | dict)


def _same_kind(a: Any, b: Any) -> bool:
    return isinstance(a, str) == isinstance(b, str)


def _eq(meta: dict[str, Any], key: str, x: Any) -> bool:
    if x is None:
        return meta.get(key) is None
    if key not in meta:
        return False
    value = _norm(meta[key])
    if isinstance(x, list | dict):
        return isinstance(value, list | dict) and value == x
    return _scalar(value) and _same_kind(value, x) and value == _norm(x)


def matches(meta: dict[str, Any], key: str, op: str, x: Any) -> bool:
    value = _norm(meta.get(key))
    if op == "$eq":
        return _eq(meta, key, x)
    if op == "$ne":
        return not _eq(meta, key, x)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if not (_scalar(value) and _same_kind(value, x)):
            return False
        x = _norm(x)
        return {"$gt": value > x, "$gte": value >= x, "$lt": value < x, "$lte": value <= x}[op]
    if op == "$in":
        return any(_eq(meta, key, item) for item in x)
    if op == "$nin":
        return not any(_eq(meta, key, item) for item in x)
    if op == "$exists":
        return (key in meta) == x
    assert op == "$contains"
    if isinstance(value, list) and any(
        not isinstance(i, list | dict) and _norm(i) == _norm(x) and _same_kind(i, x)
        for i in value
    ):
        return True
    return isinstance(x, str) and isinstance(value, str) and x in value


def model_sort(rows: list[tuple[str, dict[str, Any]]], key: str, desc: bool) -> list[str]:
    held = [(i, _norm(m[key])) for i, m in rows if _scalar(m.get(key))]
    lacking = [i for i, m in rows if not _scalar(m.get(key))]
    held.sort(key=lambda r: (isinstance(r[1], str), r[1], r[0]), reverse=desc)
    lacking.sort(reverse=desc)
    return [i for i, _ in held] + lacking


@settings(max_examples=40)
@given(
    catalogue=st.lists(METADATA, min_size=1, max_size=8),
    filters=st.lists(conditions(), max_size=2),
    sort_key=st.sampled_from(KEYS),
    desc=st.booleans(),
    page=st.tuples(st.integers(1, 4), st.integers(0, 6)),
)
def test_metadata_filters_and_sort_match_the_model(
    catalogue: list[dict[str, Any]],
    filters: list[dict[str, Any]],
    sort_key: str,
    desc: bool,
    page: tuple[int, int],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = castore.init(Path(tmp) / "s", durable=False)
        try:
            rows = []
            for n, meta in enumerate(catalogue):
                coll = f"c{n % 2}"
                v = store.draft(coll, metadata=meta).add_bytes(str(n).encode(), "f").finalize()
                rows.append((v.id, meta))
            metadata: dict[str, Any] = {}
            for cond in filters:
                metadata.update(cond)
            want = [
                (i, m) for i, m in rows
                if all(
                    matches(m, k, *(next(iter(c.items())) if isinstance(c, dict) and c
                                    and str(next(iter(c))).startswith("$") else ("$eq", c)))
                    for k, c in metadata.items()
                )
            ]
            sort = ("-" if desc else "") + f"metadata.{sort_key}"
            got = store.versions(metadata=metadata, sort=sort, limit=None)
            assert [v.id for v in got] == model_sort(want, sort_key, desc)
            assert store.count(metadata=metadata) == len(want)
            limit, offset = page
            paged = store.versions(metadata=metadata, sort=sort, limit=limit, offset=offset)
            assert [v.id for v in paged] == model_sort(want, sort_key, desc)[offset:offset + limit]
            assert paged.total == len(want)
            any_of = store.versions(metadata=metadata, match="any", limit=None)
            if metadata:
                assert {v.id for v in any_of} == {
                    i for i, m in rows
                    if any(
                        matches(m, k, *(next(iter(c.items())) if isinstance(c, dict) and c
                                        and str(next(iter(c))).startswith("$") else ("$eq", c)))
                        for k, c in metadata.items()
                    )
                }
        finally:
            store.close()
