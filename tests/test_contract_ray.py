"""The backend contract on Ray: the embedded local start, and a real two-node cluster on loopback.

One Ray session serves every test of a parametrization (a local Ray start costs ~8 s on the 2-core
machines this runs on), so this module replaces conftest's per-test ``_isolated`` fixture: the
session's finalize() and the check that no process is left behind run when ``init_kwargs`` is torn
down, after the last test of that parametrization.
"""

from __future__ import annotations

import os

import _clusters
import pytest
from conftest import _children

import paramsurvey

pytest.importorskip("ray")

from contract_suite import *  # noqa: E402,F401,F403


@pytest.fixture(scope="session")
def ray_cluster():
    with _clusters.shared("ray") as cluster:
        yield cluster


@pytest.fixture(scope="module", params=["local", "cluster"])
def init_kwargs(request):
    os.environ.update(_clusters.RAY_ENV)
    if request.param == "local":
        kwargs = {"backend": "ray"}
    else:
        kwargs = {"backend": "ray", "ray": request.getfixturevalue("ray_cluster").init_kwargs}
    before = {p.pid for p in _children()}
    yield kwargs
    paramsurvey.finalize()
    _clusters.wait_for_no_new_children(before)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Replaces conftest's: the same isolation, with the backend kept across tests (see above)."""
    with _clusters.isolated(tmp_path, monkeypatch, finalize=False):
        yield
