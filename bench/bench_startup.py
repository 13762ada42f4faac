"""First paint of the TUI on a 10,000-track library, next to a bare Textual app.

Each run is a fresh interpreter (cold imports, as a user starting the app), timed from the
moment the parent spawns it to the child's first painted frame; the mrs-tui child also
reports when the first rows are on screen (a big library shows its first page at once, the
rest follows). Median of 5 runs each. Goal: first paint under
2x the bare app.

    python bench/bench_startup.py [--runs 5] [--tracks 10000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BARE = textwrap.dedent(
    """
    import time
    from textual.app import App
    from textual.widgets import Label

    class Hello(App):
        def compose(self):
            yield Label("hello")
        def on_mount(self):
            self.call_after_refresh(self.painted)
        def painted(self):
            print("PAINT", time.time(), flush=True)
            self.exit()

    Hello().run(headless=True, size=(150, 45))
    """
)

MRS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mrs_tui.tui.app import MrsTuiApp
    from mrs_tui.tui import messages as msg

    class Timed(MrsTuiApp):
        def on_mount(self):
            super().on_mount()
            self.call_after_refresh(lambda: print("PAINT", time.time(), flush=True))
        def on_engine_ready(self, message):
            super().on_engine_ready(message)
            self.call_after_refresh(self.shown)
        def shown(self):
            print("ROWS", time.time(), flush=True)
            heavy = sorted(m for m in ("torch", "librosa", "faiss", "transformers") if m in sys.modules)
            print("HEAVY", ",".join(heavy) or "-", flush=True)
            self.exit()

    Timed(db_path=Path(sys.argv[1]), index_on_start=False).run(headless=True, size=(150, 45))
    """
)


def make_library_db(path: Path, n: int) -> None:
    from mrs_tui.store import Store

    store = Store.open(path)
    now = time.time()
    rows = [
        (
            f"/music/Artist {i % 700}/Album {i % 1500}/{i:05d} Track {i}.flac",
            f"Track {i}",
            f"Artist {i % 700}",
            f"Album {i % 1500}",
            "Genre",
            "2020",
            180.0 + i % 120,
            "ok",
            now,
            now,
        )
        for i in range(n)
    ]
    with store.write() as conn:
        conn.executemany(
            """INSERT INTO tracks (path, title, artist, album, genre, year, duration, status, added_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            rows,
        )
    store.close()


def timed_run(script: str, *args: str) -> dict[str, float | str]:
    start = time.time()
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True).stdout
    marks: dict[str, float | str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("PAINT", "ROWS"):
            marks[parts[0]] = float(parts[1]) - start
        elif len(parts) == 2 and parts[0] == "HEAVY":
            marks["HEAVY"] = parts[1]
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tracks", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "library.db"
        make_library_db(db, args.tracks)
        bare, paint, rows, heavy = [], [], [], set()
        for _ in range(args.runs):  # interleaved, so background load hits both alike
            bare.append(timed_run(BARE)["PAINT"])
            marks = timed_run(MRS, str(db))
            paint.append(marks["PAINT"])
            rows.append(marks["ROWS"])
            heavy.add(marks.get("HEAVY", "-"))
    b, p, r = (statistics.median(x) for x in (bare, paint, rows))
    print(f"first paint, median of {args.runs} fresh processes")
    print(f"  bare Textual app                 {b * 1000:7.0f} ms")
    print(f"  mrs-tui, {args.tracks:,} tracks          {p * 1000:7.0f} ms  ({p / b:.2f}x bare; goal < 2x)")
    print(f"  mrs-tui, first rows on screen    {r * 1000:7.0f} ms")
    print(f"  heavy modules loaded by then: {', '.join(sorted(heavy))}")


if __name__ == "__main__":
    main()
