"""Checking a library database and the files derived from it, and repairing what can be repaired.

`diagnose` never writes: it runs SQLite's ``integrity_check`` on the database (on a read-only
connection, so a damaged file is not made worse), compares every vector cache with a rebuild
from the database, checks every approximate-search graph against the vectors it must hold,
and checks every trained model's files. `repair` then removes what is
garbage by construction — unfinished (``.partial``) model folders left by a killed training
and model folders no row refers to — and, when asked, rebuilds the damaged or stale vector
caches. A damaged model cannot be rebuilt from the database: it is reported, to be trained
again (knn serves meanwhile). Nothing outside the data folder is ever touched.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from mrs_tui.errors import DatabaseError
from mrs_tui.store.connection import integrity_problems

# A ".partial" folder younger than this may belong to a training that is saving right now.
PARTIAL_GRACE_S = 600.0


@dataclass
class Finding:
    kind: str  # "database", "cache", "graph", "model"
    name: str  # what it is about (a file, a model)
    state: str  # "ok", "damaged", "stale", "orphan", "unfinished", "missing", "outside"
    detail: str = ""
    path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "state": self.state, "detail": self.detail}


@dataclass
class Diagnosis:
    db: Path
    data_folder: Path
    findings: list[Finding] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def database_ok(self) -> bool:
        return all(f.ok for f in self.findings if f.kind == "database")

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    @property
    def rebuildable(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in ("cache", "graph") and f.state in ("damaged", "stale")]

    def to_dict(self) -> dict:
        return {
            "database": str(self.db),
            "database_ok": self.database_ok,
            "findings": [f.to_dict() for f in self.findings],
            "problems": len(self.problems),
            "repaired": self.repaired,
        }


def diagnose(db: Path) -> Diagnosis:
    from mrs_tui.store import Store

    db = Path(db)
    if not db.is_file():
        raise DatabaseError(f"there is no database at {db}", "pass --db PATH (or set MRS_TUI_DB)")
    data_folder = db.parent / f"{db.stem}-data"
    report = Diagnosis(db, data_folder)
    problems = integrity_problems(db)
    report.findings.append(
        Finding("database", db.name, "damaged" if problems else "ok", "; ".join(problems[:5]) or "integrity_check ok")
    )
    if problems:
        return report  # every other check reads the database: it cannot be trusted now
    with Store.open(db) as store:
        _check_caches(store, data_folder, report)
        _check_models(store, data_folder, report)
    return report


def _check_caches(store, data_folder: Path, report: Diagnosis) -> None:
    import numpy as np

    from mrs_tui.catalogue import Catalogue

    folder = data_folder / "indexes"
    models = {Catalogue.cache_path(folder, b, v).name: (b, v) for (b, v) in store.embedding_counts()}
    rebuilt: dict[tuple[str, str], Catalogue] = {}  # from the database, once per model: a million vectors is slow
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        if ".tmp" in path.suffixes:
            report.findings.append(Finding("cache", path.name, "unfinished", "left by an interrupted write", path))
            continue
        key = models.get(path.name)
        if key is None:
            report.findings.append(Finding("cache", path.name, "orphan", "no vectors of that model are stored", path))
            continue
        cached = Catalogue.read_cache(path, *key, trust_checked=False)
        fresh = rebuilt[key] = Catalogue(*key)
        fresh.rebuild(store)
        if cached is None:
            report.findings.append(Finding("cache", path.name, "damaged", "cannot be read or fails its checksum", path))
        elif cached.track_ids.tolist() != fresh.track_ids.tolist() or not np.array_equal(cached.vectors, fresh.vectors):
            cached.refresh(store)
            same = cached.track_ids.tolist() == fresh.track_ids.tolist() and np.array_equal(
                cached.vectors, fresh.vectors
            )
            state, detail = (
                ("ok", "behind the database; refreshed on use") if same else ("stale", "differs from the database")
            )
            report.findings.append(Finding("cache", path.name, state, detail, path))
        else:
            report.findings.append(Finding("cache", path.name, "ok", f"{len(fresh)} vectors", path))
    _check_graphs(store, folder, models, rebuilt, report)


def _check_graphs(store, folder: Path, models: dict, rebuilt: dict, report: Diagnosis) -> None:
    """The HNSW graphs beside the caches: each must hold the first vectors of its model as the
    database has them now (a damaged one could crash a search; the app rebuilds it unasked)."""
    from mrs_tui.catalogue import Catalogue

    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.tmp")):  # a graph write that was interrupted
        report.findings.append(Finding("graph", path.name, "unfinished", "left by an interrupted write", path))
    for path in sorted(folder.glob("*.hnsw")):
        key = models.get(path.with_suffix(".npz").name)
        catalogue = None
        if key is not None:
            catalogue = rebuilt.get(key)
            if catalogue is None:
                catalogue = rebuilt[key] = Catalogue(*key)
                catalogue.rebuild(store)
        if catalogue is None or not catalogue.approximate:
            why = "no vectors of that model are stored" if key is None else "the library is small: exact search"
            report.findings.append(Finding("graph", path.name, "orphan", why, path))
        elif catalogue.graph_file_matches(folder):
            report.findings.append(Finding("graph", path.name, "ok", f"{len(catalogue)} vectors", path))
        else:
            report.findings.append(
                Finding("graph", path.name, "stale", "damaged or not the stored vectors; rebuilt on use", path)
            )


def _check_models(store, data_folder: Path, report: Diagnosis) -> None:
    from mrs_tui import training

    referenced: set[Path] = set()
    for record in store.model_records():
        name = f"{record.recommender}@{record.backend}"
        folder = training.model_folder(data_folder, record.path)
        if folder is None:
            report.findings.append(Finding("model", name, "outside", f"its row names {record.path!r}; never touched"))
            continue
        referenced.add(folder)
        if not folder.is_dir():
            report.findings.append(Finding("model", name, "missing", "train it again (t)", folder))
            continue
        try:
            training.load_record(record, data_folder)
        except training.ModelDamaged as exc:
            report.findings.append(Finding("model", name, "damaged", str(exc), folder))
            continue
        report.findings.append(Finding("model", name, "ok", record.path, folder))
    root = data_folder / "models"
    now = time.time()
    for folder in sorted(root.glob("*/*")) if root.is_dir() else []:
        if not folder.is_dir() or folder.is_symlink() or folder.resolve() in referenced:
            continue
        relative = folder.relative_to(data_folder).as_posix()
        if folder.name.endswith(".partial"):
            if now - folder.stat().st_mtime >= PARTIAL_GRACE_S:
                report.findings.append(Finding("model", relative, "unfinished", "left by a stopped training", folder))
        else:
            report.findings.append(Finding("model", relative, "orphan", "no trained model refers to it", folder))


def repair(report: Diagnosis, *, rebuild: bool) -> None:
    """Remove unfinished and orphan derived files; with `rebuild`, rebuild the damaged caches."""
    from mrs_tui.catalogue import Catalogue
    from mrs_tui.store import Store

    root = report.data_folder.resolve()
    for finding in report.problems:
        path = finding.path
        if path is None or not path.resolve().is_relative_to(root):
            continue
        if finding.state in ("unfinished", "orphan"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
                if finding.kind == "graph":  # its facts file goes with it
                    path.with_name(path.name + ".json").unlink(missing_ok=True)
            report.repaired.append(f"removed {path.relative_to(report.data_folder).as_posix()}")
            finding.state, finding.detail = "ok", "removed"
    if not rebuild or not report.database_ok:
        return
    with Store.open(report.db) as store:
        counts = store.embedding_counts()
        for finding in report.rebuildable:
            cache = finding.path.with_suffix(".npz")
            key = next((k for k in counts if Catalogue.cache_path(cache.parent, *k).name == cache.name), None)
            if key is None:
                continue
            catalogue = Catalogue(*key)
            catalogue.rebuild(store)
            if finding.kind == "graph":
                catalogue.build_in_background = False
                catalogue.search_index(wait=True)  # built here: the save below writes it
            catalogue.save(cache.parent)
            report.repaired.append(f"rebuilt indexes/{finding.path.name}")
            finding.state, finding.detail = "ok", "rebuilt from the database"


def describe(report: Diagnosis) -> str:
    lines = []
    for f in report.findings:
        mark = "ok " if f.ok else "!! "
        lines.append(f"{mark} {f.kind:8s} {f.name}: {f.state}{f' ({f.detail})' if f.detail else ''}")
    lines += [f"    {r}" for r in report.repaired]
    if not report.database_ok:
        lines.append(
            "the database is damaged: restore a backup, or copy what SQLite can still read with `sqlite3 DB .recover`"
        )
    elif report.problems:
        lines.append(f"{len(report.problems)} problem(s) left")
    else:
        lines.append("everything is consistent")
    return "\n".join(lines)
