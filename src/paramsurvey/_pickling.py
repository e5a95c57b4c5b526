"""How the map's function travels to worker processes (every backend uses this one function).

cloudpickle ships functions of ``__main__``, lambdas and closures by value, but writes
``<dynamic-code>`` as the file name of every code object it ships: a failed pset's traceback would
read ``File "<dynamic-code>", line 3, in worker`` with no source line. The pickler here keeps each
code object's real file name; nested code objects (closures, lambdas, helpers) travel inside
``co_consts`` through the same pickler, so they keep theirs too.

Source the workers cannot read from disk because only the driver holds it (a Jupyter cell lives in
the driver's linecache; ``python -c`` code lives in its command line) travels along, once per file
per pickle, and is put in the worker's linecache as the function loads: the traceback then shows
the source line as the driver itself would.

Standard library only at import (cloudpickle is imported when pickling): a worker imports this
module when it loads a function that carries source lines.
"""

from __future__ import annotations

import io
import linecache
import os
import pickle
import sys
import types
from typing import Any

# The file name cloudpickle writes in place of the real one.
_DYNAMIC = "<dynamic-code>"
# The file name Python gives code compiled from ``python -c``.
_COMMAND = "<string>"

_pickler_class: Any = None


def dumps_by_value(obj: Any) -> bytes:
    """cloudpickle ``obj`` (functions of __main__, lambdas and closures by value), keeping the file
    name of each code object and the source the workers could not read otherwise."""
    buffer = io.BytesIO()
    _get_pickler_class()(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def register_source(filename: str, lines: tuple[str, ...]) -> str:
    """Runs in the worker as a function loads: make ``lines`` the source of ``filename`` for
    tracebacks. A modification time of None keeps linecache.checkcache from dropping the entry
    (what IPython does for its cells). Returns the file name, for the code object being built."""
    linecache.cache[filename] = (sum(map(len, lines)), None, list(lines), filename)
    return filename


class _SourceFile:
    """Stands for a file name in a pickled code object; loads as that name, registering the
    driver's lines for it first. One instance per file per pickle: pickle's memo sends the lines
    once however many code objects come from that file."""

    __slots__ = ("filename", "lines")

    def __init__(self, filename: str, lines: list[str]) -> None:
        self.filename = filename
        self.lines = tuple(lines)

    def __reduce__(self) -> tuple[Any, ...]:
        return register_source, (self.filename, self.lines)


def _get_pickler_class() -> Any:
    global _pickler_class
    if _pickler_class is None:
        _pickler_class = _make_pickler_class()
    return _pickler_class


def _make_pickler_class() -> Any:
    import cloudpickle

    reduce_code = cloudpickle.Pickler.dispatch_table[types.CodeType]

    class FileKeepingPickler(cloudpickle.Pickler):  # type: ignore[misc]
        def __init__(self, file: Any, protocol: int | None = None) -> None:
            super().__init__(file, protocol=protocol)
            self.file_tokens: dict[str, Any] = {}

        def reducer_override(self, obj: Any) -> Any:
            # code objects first: cloudpickle's own reducer would erase their file name
            if type(obj) is types.CodeType:
                return self._reduce_code(obj)
            return super().reducer_override(obj)

        def _reduce_code(self, code: types.CodeType) -> Any:
            constructor, args = reduce_code(code)
            args = list(args)
            for i, arg in enumerate(args):  # the file name's place differs between Python versions
                if isinstance(arg, str) and arg == _DYNAMIC:
                    args[i] = self._file_token(code)
                    break
            return constructor, tuple(args)

        def _file_token(self, code: types.CodeType) -> Any:
            filename = code.co_filename
            token = self.file_tokens.get(filename)
            if token is None:
                lines = driver_only_source(code)
                token = _SourceFile(filename, lines) if lines else filename
                self.file_tokens[filename] = token
            return token

    return FileKeepingPickler


def driver_only_source(code: types.CodeType) -> list[str] | None:
    """The lines of ``code``'s file when only this process has them, else None (a file on disk:
    workers on this machine read it themselves, as the driver would)."""
    filename = code.co_filename
    if os.path.isfile(filename):
        return None
    entry = linecache.cache.get(filename)
    if entry is not None and len(entry) == 4 and entry[2]:  # e.g. a Jupyter cell
        return list(entry[2])
    if filename == _COMMAND:
        return _command_source(code)
    return None


def _command_source(code: types.CodeType) -> list[str] | None:
    """The ``python -c`` source, if ``code`` was compiled from it (other code, such as the methods
    dataclasses generate, is also called "<string>": it must not be shown the command's lines)."""
    argv = getattr(sys, "orig_argv", None)
    if sys.argv[:1] != ["-c"] or not argv or "-c" not in argv[:-1]:
        return None
    source = argv[argv.index("-c") + 1]
    compiled = _command_codes(source)
    if (code.co_firstlineno, code.co_name, code.co_code) not in compiled:
        return None
    return source.splitlines(keepends=True)


_command_cache: dict[str, set[tuple[int, str, bytes]]] = {}


def _command_codes(source: str) -> set[tuple[int, str, bytes]]:
    codes = _command_cache.get(source)
    if codes is None:
        codes = set()
        try:
            pending = [compile(source, _COMMAND, "exec")]
        except (SyntaxError, ValueError):
            pending = []
        while pending:
            code = pending.pop()
            codes.add((code.co_firstlineno, code.co_name, code.co_code))
            pending.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        _command_cache[source] = codes
    return codes
