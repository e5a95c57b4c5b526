"""The journal's pset hash: defined value by value, so batching, key order and the shape of the
psets (list of dicts or DataFrame) never change it; and stable forever (golden values)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from paramsurvey._psets import PsetSource
from paramsurvey.journal._arrow import typed
from paramsurvey.journal._build import pset_columns
from paramsurvey.journal._hash import HASH_VERSION, hash_columns, hash_psets, hex_strings, list_columns

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
    st.lists(st.integers(), max_size=3), st.tuples(st.integers(), st.text(max_size=2)),
)
keys = st.sampled_from(["a", "b", "c", "dd"])
psets = st.dictionaries(keys, scalars, max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(psets, min_size=1, max_size=12))
def test_hash_of_a_pset_does_not_depend_on_its_batch(batch):
    together = hash_psets(batch)
    alone = [hash_psets([p])[0] for p in batch]
    assert together == alone
    reordered = hash_psets(batch[::-1])
    assert reordered == together[::-1]


@settings(max_examples=100, deadline=None)
@given(psets)
def test_key_order_does_not_matter(pset):
    assert hash_psets([pset]) == hash_psets([dict(reversed(list(pset.items())))])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=4),
                          st.booleans()), min_size=1, max_size=10))
def test_a_dataframe_hashes_like_its_records(rows):
    frame = pd.DataFrame(rows, columns=["i", "f", "s", "b"])
    source = PsetSource(frame)
    columns = {k: (typed(v, p), p) for k, (v, p) in pset_columns(source, range(len(frame))).items()}
    from_frame = hex_strings(*hash_columns(columns, len(frame))).tolist()
    assert from_frame == hash_psets(frame.to_dict("records"))
    assert from_frame == hash_psets([{"i": i, "f": f, "s": s, "b": b} for i, f, s, b in rows])


def test_values_of_different_kinds_differ_and_numpy_scalars_do_not():
    kinds = [{"x": 1}, {"x": 1.0}, {"x": True}, {"x": "1"}, {"x": None}, {}, {"x": [1]}, {"x": 2**64},
             {"x": float("nan")}, {"x": 0.0}, {"x": -0.0}, {"y": 1}, {"x": 1, "y": None}]
    hashes = hash_psets(kinds)
    assert len(set(hashes)) == len(kinds)
    same = [({"x": np.int32(1)}, {"x": 1}), ({"x": np.float32(0.5)}, {"x": 0.5}), ({"x": np.bool_(True)}, {"x": True}),
            ({"x": np.str_("a")}, {"x": "a"}), ({"x": np.float64("nan")}, {"x": float("nan")})]
    for a, b in same:
        assert hash_psets([a]) == hash_psets([b])


def test_typed_and_untyped_columns_hash_alike():
    values = [1, None, 3, None]
    present = np.array([True, True, True, False])
    untyped = hash_columns({"x": (values, present)}, 4)
    from_typed = hash_columns({"x": (typed(values, present), present)}, 4)
    assert all((a == b).all() for a, b in zip(untyped, from_typed))


def test_no_collisions_in_a_large_grid():
    grid = [{"i": i, "f": i / 7, "s": f"s{i % 10}"} for i in range(100_000)]
    assert len(set(hash_psets(grid))) == len(grid)
    assert len(list_columns(grid)) == 3


def test_golden_values():
    """Journals written today must resume tomorrow: a change here needs HASH_VERSION bumped."""
    assert HASH_VERSION == 1
    assert hash_psets([{"x": 1}, {"x": 1.0}, {"a": "b", "c": [1, 2]}, {}]) == [
        "a4905e57d8912b864174c37041ab3d31", "344e1d42617be45a3c914693cdd8d33b",
        hash_psets([{"c": [1, 2], "a": "b"}])[0], "d308a385886a3f24447370032e8a1913"]
    assert hash_psets([{"a": "b", "c": [1, 2]}]) == ["0a9b7160faeae99a053372f03e95e680"]
