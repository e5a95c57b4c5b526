"""The backend contract on Dask: paramsurvey's own local cluster, a real scheduler and workers
started from the ``dask`` command line, and a user's ``LocalCluster`` object.

One Dask session serves every test of a parametrization, so this module replaces conftest's per-test
``_isolated`` fixture: the session's finalize() and the check that no process is left behind run
when ``init_kwargs`` is torn down, after the last test of that parametrization.
"""

from __future__ import annotations

import logging

import _clusters
import pytest
from conftest import _children

import paramsurvey

pytest.importorskip("distributed")

from contract_suite import *  # noqa: E402,F401,F403


@pytest.fixture(scope="session")
def dask_cluster():
    with _clusters.shared("dask") as cluster:
        yield cluster


@pytest.fixture(scope="module", params=["local", "cli_cluster", "cluster_object"])
def init_kwargs(request):
    user_cluster = None
    if request.param == "cli_cluster":
        kwargs = {"backend": "dask", "dask": request.getfixturevalue("dask_cluster").init_kwargs}
    before = {p.pid for p in _children()}
    if request.param == "local":
        kwargs = {"backend": "dask"}
    elif request.param == "cluster_object":
        from distributed import LocalCluster

        user_cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=":0", silence_logs=logging.ERROR)
        kwargs = {"backend": "dask", "dask": {"cluster": user_cluster}}
    yield kwargs
    paramsurvey.finalize()
    if user_cluster is not None:
        assert user_cluster.status.name == "running"  # the user's cluster is the user's to close
        from distributed import Client

        with Client(user_cluster, set_as_default=False) as client:  # no worker still restarting
            client.wait_for_workers(2, timeout=60)
        user_cluster.close()
    _clusters.wait_for_no_new_children(before)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Replaces conftest's: the same isolation, with the backend kept across tests (see above)."""
    with _clusters.isolated(tmp_path, monkeypatch, finalize=False):
        yield
