"""The journal package's public face: exactly its public names, and status() as a frozen, typed,
documented JournalStatus that still reads like the dict it used to be."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import types

import pytest

import paramsurvey
from paramsurvey import journal

# what status() returned as a dict, in that order: every key must still be there, in that order
OLD_STATUS_KEYS = ["journal", "name", "state", "total", "counts", "failures", "remaining", "run", "runs",
                   "this_run", "rate", "eta", "start_time", "end_time", "last_finished", "host", "pid",
                   "command_line", "git_commit", "git_dirty", "elapsed", "damaged_parts", "metadata_problem",
                   "rebuilt"]


def double(pset, system_kwargs, user_kwargs):
    if pset["x"] == 3:
        raise ValueError("three")
    return {"y": 2 * pset["x"]}


@pytest.fixture
def finished_journal(tmp_path):
    path = str(tmp_path / "survey.journal")
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(double, [{"x": i} for i in range(5)], journal=path, verbose=0)
    return path


def test_all_lists_exactly_the_public_names_sorted():
    public = {name for name, value in vars(journal).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert set(journal.__all__) == public
    assert journal.__all__ == sorted(journal.__all__)
    assert len(journal.__all__) == len(set(journal.__all__))


def test_the_reading_api_and_the_engines_entry_import_from_the_package():
    from paramsurvey.journal import JournalError, read, read_meta, repair, status  # noqa: F401

    assert JournalError is paramsurvey.JournalError
    assert callable(journal.open_for_map) and callable(journal.pset_keys)


def test_status_is_a_frozen_journal_status_read_by_attribute_or_by_name(finished_journal):
    info = journal.status(finished_journal)
    assert isinstance(info, journal.JournalStatus)
    assert (info.total, info.counts["ok"], info.failures, info.remaining, info.state) == (5, 4, 1, 0, "finished")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.total = 6  # type: ignore[misc]
    # every dict-style use of the old return value still works
    assert list(info) == list(info.keys()) == OLD_STATUS_KEYS
    assert info["total"] == info.total and info["counts"]["exception"] == 1
    assert info.get("rate") == info.rate and info.get("nope", 7) == 7 and "eta" in info
    assert dict(info) == info.to_dict() and list(info.to_dict()) == OLD_STATUS_KEYS
    with pytest.raises(KeyError):
        info["nope"]
    json.loads(json.dumps(info.to_dict(), default=str))


def test_every_status_field_is_typed_and_documented():
    tree = ast.parse(textwrap.dedent(inspect.getsource(journal.JournalStatus)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    documented = {statement.target.id for statement, after in zip(body, body[1:])
                  if isinstance(statement, ast.AnnAssign) and isinstance(after, ast.Expr)
                  and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)}
    fields = [f.name for f in dataclasses.fields(journal.JournalStatus)]
    assert fields == OLD_STATUS_KEYS
    assert documented == set(fields)
