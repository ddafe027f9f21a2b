"""A fresh, real MLflow SQLite store per test, cheaply (shared by the test modules)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def fresh_mlflow_uri(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> str:
    """A new MLflow SQLite store in `folder`, copied from a session-wide migrated template
    (creating the schema takes seconds; copying the file takes milliseconds)."""
    from mlflow import MlflowClient

    template = tmp_path_factory.getbasetemp() / "mlflow-template.db"
    if not template.exists():
        staging = template.with_suffix(f".staging-{os.getpid()}.db")
        MlflowClient(f"sqlite:///{staging}").search_experiments()
        staging.rename(template)
    target = folder / "mlflow.db"
    shutil.copy(template, target)
    return f"sqlite:///{target}"
