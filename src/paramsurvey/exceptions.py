"""Every exception paramsurvey raises on purpose, in one place.

User failures (a worker that raises, crashes or runs too long) are *data*: they become rows of
``results.missing``. The classes here are for the other kind: bad input, a backend that cannot work,
and the user's own Ctrl-C.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .results import MapResults

__all__ = ["BackendError", "BackendNotInstalled", "Interrupted", "JournalError", "ParamsurveyError"]


class ParamsurveyError(Exception):
    """Base class of paramsurvey's own errors (not raised for a worker's failure)."""


class BackendError(ParamsurveyError):
    """The parallel engine itself failed (not one pset): it says what to do next."""


class BackendNotInstalled(BackendError, ImportError):
    """The chosen backend's engine is not installed; the message names the extra to install."""


class JournalError(ParamsurveyError):
    """A journal cannot be used for this survey (unreadable, or its psets do not match)."""


class Interrupted(KeyboardInterrupt):
    """Raised by ``map()`` on Ctrl-C, after every worker has been stopped.

    ``.results`` is the partial :class:`~paramsurvey.MapResults`: what finished is in the results,
    everything else is in ``.results.missing`` with ``_status == 'cancelled'``.
    """

    def __init__(self, results: MapResults | Any, message: str = "paramsurvey.map interrupted") -> None:
        super().__init__(message)
        self.results = results
