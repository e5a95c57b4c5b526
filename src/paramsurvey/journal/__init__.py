"""The journal: every finished pset on disk as it arrives, so that a survey survives ``kill -9``.

``paramsurvey.map(func, psets, journal='survey.journal')`` writes a directory of Parquet files (see
``docs/journal.md`` for the format and why). Running the same survey again with the same journal runs
only the psets without an outcome -- failed ones again unless ``rerun_failed=False`` -- and returns
the complete results, as if the survey had never stopped. Psets are recognised by a hash of their
content, so the psets may be rebuilt in another order.

Reading a journal, from Python or with the ``paramsurvey`` command line::

    >>> from paramsurvey import journal                           # doctest: +SKIP
    >>> df = journal.read('survey.journal')     # one row per pset: its latest outcome
    >>> meta = journal.read_meta('survey.journal')    # the survey, and provenance of each run

or directly, with any Parquet reader: ``pandas.read_parquet('survey.journal')``, duckdb's
``read_parquet('survey.journal/*.parquet', union_by_name=true)``, polars'
``scan_parquet('survey.journal/*.parquet')``. Reading never unpickles anything unless asked to.

This package's own names are its public API (``__all__``); its private modules are the parts:

- ``_reading``: ``read``, ``read_meta``, ``pset_keys``; ``_status``: ``status`` and its
  ``JournalStatus``; ``_repair``: ``repair``;
- ``_open``: ``open_for_map``, the engine's side (check the path, lock, read what is there, match the
  psets, decide what to run, record the run, start the writer); ``_prepare``: the checks before a
  survey writes, the lock, the tidying of a killed survey's leftovers;
- ``_writer``: the writer thread of one map; ``_build``: a batch of outcomes -> one Arrow table;
  ``_arrow``: a column of values <-> an Arrow array; ``_hash``: the psets' content hash;
  ``_store``: the files on disk (parts, metadata, lock); ``_read``: a journal's rows, the latest
  outcome of each pset, and the match of a journal with a survey.
"""

from ..exceptions import JournalError
from ._open import open_for_map
from ._reading import pset_keys, read, read_meta
from ._repair import repair
from ._status import JournalStatus, status

__all__ = ["JournalError", "JournalStatus", "open_for_map", "pset_keys", "read", "read_meta", "repair", "status"]
