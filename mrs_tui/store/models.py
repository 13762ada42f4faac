"""Trained models: which file serves which (recommender, backend, version)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import sqlite_utils

from mrs_tui.store.connection import LockedConnection


class ModelsMixin:
    """Mixed into `Store`; uses its ``conn``, ``db`` and ``write()``."""

    conn: LockedConnection
    db: sqlite_utils.Database

    def write(self) -> AbstractContextManager[LockedConnection]: ...  # provided by Store
