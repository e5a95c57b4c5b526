"""Backends by name, the optional ones loaded lazily with an install hint (as joblib does)."""

from __future__ import annotations

import importlib

from .._config import Settings
from ..exceptions import BackendNotInstalled
from .base import Backend

# name -> (module, class, the engine's import name, the extra that installs it)
REGISTRY: dict[str, tuple[str, str, str | None, str | None]] = {
    "multiprocessing": (".multiprocessing", "MultiprocessingBackend", None, None),
    "serial": (".serial", "SerialBackend", None, None),
    "ray": (".ray", "RayBackend", "ray", "ray"),
    "dask": (".dask", "DaskBackend", "distributed", "dask"),
    # dask_jobqueue itself is imported by the backend, which keeps the program's Ctrl-C handler
    "slurm": (".jobqueue", "SlurmBackend", "distributed", "slurm"),
    "pbs": (".jobqueue", "PBSBackend", "distributed", "slurm"),
    "sge": (".jobqueue", "SGEBackend", "distributed", "slurm"),
    "lsf": (".jobqueue", "LSFBackend", "distributed", "slurm"),
}


def backend_class(name: str) -> type[Backend]:
    """The backend's class (its module imported), or BackendNotInstalled naming the extra."""
    module_name, class_name, engine, extra = REGISTRY[name]
    if engine is not None:
        try:
            importlib.import_module(engine)
        except ImportError as exc:
            raise BackendNotInstalled(
                f"the {name} backend needs {engine}, which is not installed: "
                f"pip install 'paramsurvey[{extra}]'") from exc
    module = importlib.import_module(module_name, __name__)
    cls: type[Backend] = getattr(module, class_name)
    return cls


def create(settings: Settings) -> Backend:
    return backend_class(settings.backend)(settings)
