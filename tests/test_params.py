"""Example-based tests of paramsurvey.params: the 0.4.x API and the new builders."""

import contextlib
import doctest
import io
import itertools
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paramsurvey import params
from paramsurvey.params import (
    add_column,
    choice,
    concat,
    describe,
    integers,
    loguniform,
    product,
    repeat,
    sample,
    star,
    uniform,
)
from paramsurvey.params import zip as pzip


class FakeResults:
    """Stands in for MapResults: anything with to_df() is accepted like a DataFrame."""

    def __init__(self, df):
        self._df = df

    def to_df(self):
        return self._df


def rows(df):
    return [tuple(r) for r in df.itertuples(index=False)]


# ---------------------------------------------------------------- product


def test_readme_usage():
    psets = product({"a": [1, 2, 3], "b": [4, 5, 6]})
    assert rows(psets) == list(itertools.product([1, 2, 3], [4, 5, 6]))
    psets["i"] = np.array(range(len(psets)))
    psets = add_column(psets, "j", lambda row: row["i"])
    assert psets["j"].tolist() == list(range(9))
    psets = add_column(psets, "outname", lambda row: "outfile-{}-{}".format(row["a"], row["b"]))
    assert psets["outname"].iloc[5] == "outfile-2-6"


def test_product_of_multicolumn_results_keeps_rows_together():
    results = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "result": [0.5, 0.25]})
    psets = product(results, {"c": [7, 8, 9]})
    assert list(psets.columns) == ["a", "b", "result", "c"]
    assert rows(psets) == [(a, b, r, c) for (a, b, r) in rows(results) for c in (7, 8, 9)]
    # the same through an object with to_df(), as MapResults is
    assert rows(product(FakeResults(results), {"c": [7, 8, 9]})) == rows(psets)


def test_product_argument_forms_agree_and_last_varies_fastest():
    expected = list(itertools.product([1, 2], [3, 4], [5, 6]))
    forms = [
        product({"col1": [1, 2], "col2": [3, 4], "col3": [5, 6]}),
        product({"col1": [1, 2]}, {"col2": [3, 4]}, {"col3": [5, 6]}),
        product(*(pd.DataFrame({f"col{i}": [2 * i - 1, 2 * i]}) for i in (1, 2, 3))),
        product(*(pd.Series([2 * i - 1, 2 * i], name=f"col{i}") for i in (1, 2, 3))),
        product(product({"col1": [1, 2]}, {"col2": [3, 4]}), {"col3": [5, 6]}),
        product({"col1": range(1, 3), "col2": (3, 4), "col3": np.array([5, 6])}),
        product({"col1": pd.Index([1, 2]), "col2": pd.Series([3, 4], index=[9, 7]), "col3": iter([5, 6])}),
    ]
    for df in forms:
        assert rows(df) == expected
        assert list(df.columns) == ["col1", "col2", "col3"]
        assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0


def test_product_scalar_and_string_are_one_value():
    df = product({"a": [1, 2], "name": "run", "k": 3})
    assert rows(df) == [(1, "run", 3), (2, "run", 3)]


def test_product_empty_factor_gives_empty_frame_with_columns():
    df = product({"a": [1, 2]}, {"b": []}, {"c": [3]})
    assert len(df) == 0
    assert list(df.columns) == ["a", "b", "c"]
    assert df["a"].dtype == np.int64


def test_product_of_nothing_is_empty():
    assert product().shape == (0, 0)
    assert product({}).shape == (0, 0)


def test_product_duplicate_key_names_it():
    with pytest.raises(ValueError, match="'a'"):
        product({"a": [1]}, {"a": [2]})
    with pytest.raises(ValueError, match="'b'"):
        product(pd.DataFrame({"b": [1]}), pd.Series([1], name="b"))
    with pytest.raises(ValueError, match="'x'"):
        product(pd.DataFrame([[1, 2]], columns=["x", "x"]))


@pytest.mark.parametrize("bad", [3, "abc", [1, 2], None])
def test_product_invalid_argument_names_the_type(bad):
    # TypeError is right; 0.4.x raised ValueError, so the error is both
    with pytest.raises(TypeError, match=type(bad).__name__):
        product({"a": [1]}, bad)
    with pytest.raises(ValueError):
        product({"a": [1]}, bad)


def test_product_rejects_unnamed_series_unordered_and_2d_values():
    with pytest.raises(ValueError, match="name"):
        product(pd.Series([1, 2]))
    with pytest.raises(TypeError, match="set"):
        product({"a": {1, 2}})
    with pytest.raises(ValueError, match="2-dimensional"):
        product({"a": np.zeros((2, 2))})
    with pytest.raises(TypeError, match="to_df"):
        product(FakeResults([1, 2]))


def test_product_index_is_fresh():
    df = pd.DataFrame({"a": [1, 2]}, index=[10, 20])
    out = product(df, {"b": [0]})
    assert out.index.equals(pd.RangeIndex(2))


def test_product_infer_category():
    df = product({"a": [1, 2]}, {"b": ["x", "y", "z"]})
    assert isinstance(df["a"].dtype, pd.CategoricalDtype)
    assert isinstance(df["b"].dtype, pd.CategoricalDtype)
    plain = product({"a": [1, 2]}, {"b": ["x", "y", "z"]}, infer_category=False)
    assert plain["a"].dtype == np.int64
    assert not isinstance(plain["b"].dtype, pd.CategoricalDtype)
    assert df.to_dict("list") == plain.to_dict("list")
    # a factor that is not repeated saves nothing as a category
    assert product({"a": [1.5, 2.5]})["a"].dtype == np.float64


def test_product_categorical_input_stays_categorical():
    cat = pd.Series([5, 6], name="c", dtype="category")
    df = product({"a": [1, 2]}, cat, infer_category=False)
    assert isinstance(df["c"].dtype, pd.CategoricalDtype)
    assert df["c"].tolist() == [5, 6, 5, 6]


def test_product_unhashable_and_mixed_values_are_kept_faithfully():
    df = product({"a": [[1], [2], [3]]}, {"b": [0, 1]})
    assert df["a"].dtype == object
    assert df["a"].tolist() == [[1], [1], [2], [2], [3], [3]]
    # 1 == True == 1.0 in a hash table: a category would merge them
    df = product({"v": [1, True, 1.0]}, {"b": [0, 1]})
    assert [type(v) for v in df["v"].tolist()[::2]] == [int, bool, float]


def test_product_ints_with_none_stay_ints():
    df = product({"a": [1, None, 3]}, infer_category=False)
    assert df["a"].dtype == "Int64"
    assert df["a"].tolist()[::2] == [1, 3]


BIG = 2**53 + 1  # the smallest int a float64 rounds


@pytest.mark.parametrize("values", [[1, BIG, 0.5], [BIG, 0.5], [0.5, None, BIG], [2**63 + 1, None],
                                    [np.int64(BIG), np.float32(0.5)], [2**70, 0.5, None]])
def test_a_pset_value_is_never_rounded(values):
    # ints that a float64 cannot hold exactly, with floats or gaps: an object column of the very
    # values, as result assembly makes it -- not a float64 column that rounds them
    built = {
        "product": product({"a": values}, infer_category=False)["a"],
        "product, categories": product({"a": values})["a"],
        "zip": pzip({"a": values})["a"],
        "concat": concat([{"a": v} for v in values])["a"],
        "add_column": add_column(pzip({"i": range(len(values))}), "a", lambda row: values[row["i"]])["a"],
        "choice": pd.Series(sample(200, seed=0, a=choice(values))["a"].unique()),
    }
    for how, column in built.items():
        if isinstance(column.dtype, pd.CategoricalDtype):  # infer_category: categories of the values
            column = column.astype(object).where(column.notna(), None)
        assert column.dtype == object, how
        got = [None if v is None or v is pd.NA else v for v in column.tolist()]
        if how == "choice":
            assert {(type(v), v) for v in got} <= {(type(v), v) for v in values}, how
        else:
            assert [(type(v), v) for v in got] == [(type(v), v) for v in values], how


def test_exact_ints_and_floats_stay_float64():
    assert product({"a": [1, 2**53, 0.5]}, infer_category=False)["a"].dtype == "float64"
    assert pzip({"a": [1, None, 0.5]})["a"].dtype == "float64"


def test_product_extension_dtype_without_category():
    df = product(pd.DataFrame({"a": pd.array([1, None], dtype="Int64")}), {"b": [0, 1]}, infer_category=False)
    assert df["a"].dtype == "Int64"
    assert df["a"].isna().tolist() == [False, False, True, True]


def test_product_ten_million_rows_is_compact():
    sizes = {"a": 1000, "b": 100, "c": 100}
    df = product({k: range(n) for k, n in sizes.items()})
    n = 1000 * 100 * 100
    assert len(df) == n
    # categorical codes (int16 + int8 + int8): less than one int64 column would take
    assert df.memory_usage(deep=True).sum() < 8 * n
    for i in (0, 12345, 6789012, n - 1):
        assert rows(df.iloc[[i]]) == [(i // 10000, (i // 100) % 100, i % 100)]


# ---------------------------------------------------------------- add_column


def test_add_column_passes_native_values_and_copies():
    df = product({"a": [1, 2]}, {"s": ["x", "y"]}, {"f": [0.5]})
    seen = []

    def func(row):
        seen.append(tuple(type(v) for v in row.values()))
        return row["a"] * 10

    out = add_column(df, "b", func)
    assert set(seen) == {(int, str, float)}
    assert out["b"].tolist() == [10, 10, 20, 20]
    assert "b" not in df.columns


def test_add_column_name_collision():
    with pytest.raises(ValueError, match="'a'"):
        add_column(product({"a": [1]}), "a", lambda row: 0)


def test_add_column_infer_category():
    df = pd.DataFrame({"a": [0] * 1000})
    assert isinstance(add_column(df, "c", lambda row: 0)["c"].dtype, pd.CategoricalDtype)
    assert add_column(df, "c", lambda row: 0, infer_category=False)["c"].dtype == np.int64
    few = pd.DataFrame({"a": [1, 2]})
    assert add_column(few, "c", lambda row: row["a"])["c"].dtype == np.int64


def test_add_column_keeps_index_gaps_as_nullable_and_spans_blocks():
    df = pd.DataFrame({"a": range(70000)}, index=range(1, 70001))
    out = add_column(df, "b", lambda row: None if row["a"] % 2 else row["a"], infer_category=False)
    assert out.index.equals(df.index)
    assert out["b"].dtype == "Int64"
    assert out["b"].iloc[-2] == 69998 and out["b"].isna().sum() == 35000


# ---------------------------------------------------------------- zip


def test_zip_pairs_values():
    df = pzip({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert rows(df) == [(1, "x"), (2, "y"), (3, "z")]


def test_zip_mixes_series_frames_and_scalars():
    frame = pd.DataFrame({"c": [0.1, 0.2], "d": [True, False]}, index=[5, 6])
    df = pzip(pd.Series([1, 2], name="a"), {"tag": "t"}, frame)
    assert list(df.columns) == ["a", "tag", "c", "d"]
    assert rows(df) == [(1, "t", 0.1, True), (2, "t", 0.2, False)]
    assert rows(pzip(FakeResults(frame))) == rows(frame)


def test_zip_unequal_lengths_names_them():
    with pytest.raises(ValueError, match="a=3, b=2"):
        pzip({"a": [1, 2, 3], "b": [1, 2]})


def test_zip_duplicate_key():
    with pytest.raises(ValueError, match="'a'"):
        pzip({"a": [1]}, pd.Series([2], name="a"))


def test_zip_as_product_argument():
    df = product(pzip({"m": [1, 2], "n": [10, 20]}), {"seed": [0, 1]})
    assert rows(df) == [(1, 10, 0), (1, 10, 1), (2, 20, 0), (2, 20, 1)]


# ---------------------------------------------------------------- concat


def test_concat_gaps_keep_dtypes_faithful():
    a = pd.DataFrame({"i": [1, 2], "b": [True, False], "f": [0.5, 1.5], "s": ["x", "y"]})
    b = pd.DataFrame({"other": [7]})
    df = concat(a, b)
    assert list(df.columns) == ["i", "b", "f", "s", "other"]
    assert df["i"].dtype == "Int64" and df["i"].tolist()[:2] == [1, 2] and df["i"].isna().iloc[2]
    assert df["b"].dtype == "boolean" and df["b"].isna().iloc[2]
    assert df["f"].dtype == np.float64 and np.isnan(df["f"].iloc[2])
    assert df["s"].isna().iloc[2]
    assert df["other"].dtype == "Int64" and df["other"].isna().tolist() == [True, True, False]


def test_concat_object_gaps_are_none():
    df = concat(pd.DataFrame({"o": [[1], [2]]}), pd.DataFrame({"x": [1]}))
    assert df["o"].iloc[2] is None


def test_concat_without_gaps_keeps_plain_dtypes():
    df = concat(product({"a": [1, 2]}), product({"a": [3]}))
    assert df["a"].dtype == np.int64
    assert df["a"].tolist() == [1, 2, 3]


def test_concat_categoricals_with_different_categories():
    x = product({"a": [1, 2]}, {"r": [0, 1]})
    y = product({"a": [3, 4]}, {"r": [0, 1]})
    df = concat(x, y)
    assert df["a"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    assert pd.Series(df["a"].tolist()).dtype == np.int64
    assert concat(x, y, infer_category=False)["a"].dtype == np.int64


def test_concat_accepts_list_of_frames_and_list_of_dicts():
    df = concat([pd.DataFrame({"a": [1]}), [{"a": 2, "b": True}]])
    assert df["a"].tolist() == [1, 2]
    assert df["b"].dtype == "boolean"
    assert df.index.equals(pd.RangeIndex(2))
    assert concat().shape == (0, 0)


# ---------------------------------------------------------------- star


def test_star_order_and_skips_base_value():
    df = star({"a": 1, "b": 10, "c": "x"}, {"a": [0, 1, 2], "c": ["y", "x"]})
    assert rows(df) == [(1, 10, "x"), (0, 10, "x"), (2, 10, "x"), (1, 10, "y")]


def test_star_unknown_factor():
    with pytest.raises(ValueError, match="'z'"):
        star({"a": 1}, {"z": [1]})


def test_star_no_variations_is_the_base_row():
    assert rows(star({"a": 1, "b": 2.5}, {})) == [(1, 2.5)]


# ---------------------------------------------------------------- repeat


def test_repeat_groups_rows_by_pset():
    df = repeat(product({"a": [1, 2]}, {"b": ["x"]}), 3)
    assert rows(df) == [(1, "x", 0), (1, "x", 1), (1, "x", 2), (2, "x", 0), (2, "x", 1), (2, "x", 2)]


def test_repeat_accepts_list_of_dicts_and_custom_column():
    df = repeat([{"a": 1}, {"a": 2}], 2, column="rep")
    assert rows(df) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert len(repeat([{"a": 1}], 0)) == 0


def test_repeat_errors():
    with pytest.raises(ValueError, match="'repeat'"):
        repeat({"repeat": [1]}, 2)
    with pytest.raises(ValueError, match="n"):
        repeat({"a": [1]}, -1)
    with pytest.raises(TypeError):
        repeat("abc", 2)


# ---------------------------------------------------------------- sample


@pytest.mark.parametrize("method", ["random", "lhs", "sobol"])
def test_sample_values_in_bounds_and_typed(method):
    factors = dict(x=uniform(-1, 1), y=loguniform(1e-3, 10.0), k=integers(2, 5), c=choice(["a", "b", "c"]))
    df = sample(64, seed=3, method=method, **factors)
    assert list(df.columns) == ["x", "y", "k", "c"]
    assert df["x"].between(-1, 1, inclusive="left").all()
    assert df["y"].between(1e-3, 10.0, inclusive="left").all()
    assert df["k"].dtype == np.int64 and set(df["k"]) <= {2, 3, 4}
    assert set(df["c"]) <= {"a", "b", "c"}
    pd.testing.assert_frame_equal(df, sample(64, seed=3, method=method, **factors))


def test_sample_seed_changes_values():
    a = sample(16, seed=0, x=uniform(0, 1))
    b = sample(16, seed=1, x=uniform(0, 1))
    assert not a.equals(b)


def test_sample_lhs_puts_one_point_per_stratum():
    n = 50
    df = sample(n, seed=7, method="lhs", x=uniform(0, 1), y=uniform(0, 1))
    for col in ("x", "y"):
        assert sorted(np.floor(df[col] * n).astype(int)) == list(range(n))


def test_sample_sobol_warns_only_off_powers_of_two():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample(16, method="sobol", x=uniform(0, 1))
    with pytest.warns(UserWarning):
        sample(10, method="sobol", x=uniform(0, 1))


@pytest.mark.parametrize("spec", [uniform(1, 1), uniform(2, 1), loguniform(0, 1), loguniform(-1, 1),
                                  integers(3, 3), integers(0, 2.5), uniform(0, float("inf")), choice([])])
def test_sample_bad_bounds_name_the_factor(spec):
    with pytest.raises(ValueError, match="'speed'"):
        sample(4, speed=spec)


def test_sample_argument_errors():
    with pytest.raises(ValueError, match="method"):
        sample(4, method="grid", x=uniform(0, 1))
    with pytest.raises(ValueError, match="factor"):
        sample(4)
    with pytest.raises(TypeError, match="'x'"):
        sample(4, x=[1, 2])
    with pytest.raises(ValueError):
        sample(-1, x=uniform(0, 1))


def test_sample_empty_and_factor_named_n():
    assert sample(0, x=uniform(0, 1)).shape == (0, 1)
    assert list(sample(3, n=integers(0, 10)).columns) == ["n"]


def test_sample_as_product_argument():
    df = product(sample(4, x=uniform(0, 1)), {"rep": [0, 1]})
    assert len(df) == 8 and df["x"].nunique() == 4


# ---------------------------------------------------------------- describe


def test_describe_summarizes():
    text = describe(product({"a": [1, 2, 3], "b": ["x", "y"]}, {"f": [0.5, 2.5]}))
    lines = text.splitlines()
    assert lines[0] == "12 psets, 3 factors"
    a = lines[2].split()
    assert a[0] == "a" and a[2:] == ["3", "1", "3"]
    assert lines[3].split()[2:] == ["2"]  # strings: distinct count, no min/max
    assert lines[4].split()[2:] == ["2", "0.5", "2.5"]


def test_describe_list_of_dicts_and_unhashable():
    text = describe([{"a": 1, "l": [1]}, {"a": 2, "l": [1]}, {"a": 2, "l": [2]}])
    assert text.splitlines()[0] == "3 psets, 2 factors"
    assert text.splitlines()[2].split() == ["a", "int64", "2", "1", "2"]
    assert text.splitlines()[3].split() == ["l", "object", "2"]


# ---------------------------------------------------------------- the module


def test_all_names_exist():
    for name in params.__all__:
        assert getattr(params, name) is not None
    assert sorted(params.__all__) == params.__all__


def test_docstring_examples():
    result = doctest.testmod(params)
    assert result.attempted >= 8 and result.failed == 0


def test_docs_page_runs_and_shows_true_output():
    # docs/params.md: its code blocks run in order, and each block's standalone "# " comment lines
    # are exactly what the block prints
    text = (Path(__file__).resolve().parents[1] / "docs" / "params.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 8
    namespace: dict = {}
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(block, namespace)
        shown = [line[2:] for line in block.splitlines() if line.startswith("# ")]
        assert [line.rstrip() for line in out.getvalue().splitlines()] == shown
