"""Which derived files were read whole and found sound, so that the next start need not hash them again.

A vector cache or a search graph of a million tracks is about a gigabyte, and hashing it costs
seconds on every CLI call. Once a full check of such a file passes, its identity (size, inode,
modification and change times) is noted in ``checked.json`` in the same folder; a later read that
finds the same identity trusts the digest the file carries. Any write to the file moves its times,
and its change time cannot be set back by hand.

As in git's index, a file written in the last few seconds is never noted: a second write in the
same tick of the file system's clock could leave its times as they were ("racily clean"), so such
a file is hashed again until it has been left alone a while. `doctor` always reads files whole.
Losing the ledger, or two processes overwriting each other's notes, only costs a hash.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

LEDGER = "checked.json"
QUIET_NS = 3_000_000_000  # a file must have been left alone this long before it is noted


def _identity(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns]


def _read_ledger(folder: Path) -> dict:
    try:
        ledger = json.loads((folder / LEDGER).read_text())
    except (OSError, ValueError):
        return {}
    return ledger if isinstance(ledger, dict) else {}


def was_checked(path: Path, digest: str) -> bool:
    """Whether `path` is, unchanged, the file a full check found sound with this digest."""
    entry = _read_ledger(path.parent).get(path.name)
    identity = _identity(path)
    return identity is not None and entry == {"identity": identity, "digest": digest}


def note_checked(path: Path, digest: str) -> None:
    """Remember that `path` passed a full check against `digest` (unless it changed too recently)."""
    identity = _identity(path)
    if identity is None or time.time_ns() - max(identity[2], identity[3]) < QUIET_NS:
        return
    folder = path.parent
    ledger = _read_ledger(folder)
    ledger = {name: entry for name, entry in ledger.items() if (folder / name).exists()}
    ledger[path.name] = {"identity": identity, "digest": digest}
    write_text_atomically(folder / LEDGER, json.dumps(ledger))  # not written: hashed again next time


def write_text_atomically(path: Path, text: str) -> bool:
    """Replace `path` with `text` in one step (readers see the old or the new file, never half
    of one); False when the folder cannot be written, which for a note of a derived file is fine."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True
