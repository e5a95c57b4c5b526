"""Every exception paramsurvey raises on purpose, in one place.

User failures (a worker that raises, crashes or runs too long) are *data*: they become rows of
``results.missing``. The classes here are for the other kind: bad input, a backend that cannot work,
and the user's own Ctrl-C.

Every error raised on purpose is a :class:`ParamsurveyError`, so ``except paramsurvey.ParamsurveyError``
catches them all; each is also the builtin the documentation names (a bad value is a ``ValueError``,
a bad type or an unknown keyword a ``TypeError``, a call at the wrong time a ``RuntimeError``), so
code written for 0.4.x's builtins keeps catching them:

    ParamsurveyError
    +-- ArgumentError (also ValueError)          a setting, pset or option with a value refused
    +-- ArgumentTypeError (also TypeError)       ... of a type refused, or a keyword not known
    +-- UsageError (also RuntimeError)           map() while one runs; init() of another backend
    +-- BackendError                             the parallel engine itself failed
    |   +-- BackendNotInstalled (also ImportError)
    +-- JournalError                             a journal that cannot serve this survey

:class:`Interrupted` is not among them: it is a ``KeyboardInterrupt``, which ``except Exception``
must not catch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ._results import MapResults

__all__ = ["ArgumentError", "ArgumentTypeError", "BackendError", "BackendNotInstalled", "Interrupted",
           "JournalError", "ParamsurveyError", "UsageError"]


class ParamsurveyError(Exception):
    """Base class of paramsurvey's own errors (not raised for a worker's failure)."""


class ArgumentError(ParamsurveyError, ValueError):
    """A setting, a pset or an option has a value paramsurvey refuses; raised before any work,
    naming the culprit.

    Example
    -------
    >>> import paramsurvey
    >>> try:
    ...     paramsurvey.init(backend='serial', verbose=7)
    ... except paramsurvey.ArgumentError as exc:
    ...     print(exc, isinstance(exc, ValueError))
    verbose=7 is out of range: verbose must be 0-3 True
    """


class ArgumentTypeError(ParamsurveyError, TypeError):
    """An argument of a type paramsurvey refuses, or a keyword argument (or option key) it does not
    know; raised before any work, naming it."""


class UsageError(ParamsurveyError, RuntimeError):
    """paramsurvey was called when it cannot act: a second ``map()`` while one runs in the process,
    ``init()`` of another backend before ``finalize()``."""


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
