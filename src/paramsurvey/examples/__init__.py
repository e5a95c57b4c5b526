"""Runnable examples, installed with the package: ``python -m paramsurvey.examples.<name>``.

- ``readme``: the README's first example, verbatim.
- ``stats``: timing phases of a worker with ``paramsurvey.stats``.
- ``cli``: one command line per pset with ``utils.subprocess_run_worker``.
- ``multistage``: one map's results fed into ``params.product`` for the next.
- ``rerun_missing``: running ``results.missing.to_psets()`` again until nothing fails.
- ``building_psets``: ``params.product``, ``add_column`` and the sweep builders.
- ``survey.ipynb``: a notebook that runs and plots a survey.
"""

import time

from .. import stats


def sleep_worker(pset, system_kwargs, user_kwargs):  # type: ignore[no-untyped-def]
    """The README's worker (kept here as in 0.4.x's ``paramsurvey.examples``)."""
    time.sleep(pset["duration"])
    return {"slept": pset["duration"]}


def burn_worker(pset, system_kwargs, user_kwargs):  # type: ignore[no-untyped-def]
    """Spins on the CPU for ``pset['duration']`` seconds, timed as ``foo``."""
    start = time.time()
    with stats.record_wallclock("foo", system_kwargs["raw_stats"]):
        while time.time() < start + pset["duration"]:
            pass
    return {"burned": pset["duration"]}
