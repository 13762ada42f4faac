"""Schema of the library database and the migrations that bring any older file up to date.

The version lives in ``PRAGMA user_version``; migration N brings a file from version N-1 to N,
all inside one transaction (see `Store._migrate`).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def _migration_1(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE tracks (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            size INTEGER,
            mtime REAL,
            content_hash TEXT,
            title TEXT,
            artist TEXT,
            album TEXT,
            genre TEXT,
            year TEXT,
            duration REAL,
            status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'failed', 'missing')),
            error TEXT,
            added_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX tracks_hash ON tracks(content_hash)")
    db.execute(
        """
        CREATE TABLE embeddings (
            track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
            backend TEXT NOT NULL,
            version TEXT NOT NULL,
            dim INTEGER,
            vector BLOB,
            error TEXT,
            extras TEXT,
            seconds REAL,
            created_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE UNIQUE INDEX embeddings_key ON embeddings(track_id, backend, version)")
    db.execute("CREATE INDEX embeddings_model ON embeddings(backend, version)")
    db.execute(
        """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            last_at REAL NOT NULL,
            source TEXT NOT NULL DEFAULT 'app'
        )"""
    )
    db.execute(
        """
        CREATE TABLE plays (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id),
            track_id INTEGER NOT NULL REFERENCES tracks(id),
            event TEXT NOT NULL CHECK (event IN ('play', 'complete', 'skip', 'like', 'dislike')),
            at REAL NOT NULL,
            position_s REAL
        )"""
    )
    db.execute("CREATE INDEX plays_session ON plays(session_id, at)")
    db.execute("CREATE INDEX plays_track ON plays(track_id)")


def _migration_2(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            recommender TEXT NOT NULL,
            backend TEXT NOT NULL,
            version TEXT NOT NULL,
            path TEXT NOT NULL,
            trained_at REAL NOT NULL,
            n_plays INTEGER NOT NULL,
            last_play_id INTEGER,
            n_hot INTEGER,
            n_cold INTEGER,
            params TEXT
        )"""
    )
    db.execute("CREATE INDEX models_key ON models(recommender, backend, version, trained_at)")
    db.execute(
        """
        CREATE TABLE eval_runs (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            dataset TEXT NOT NULL,
            settings TEXT NOT NULL,
            results TEXT NOT NULL
        )"""
    )


def _migration_3(db: sqlite_utils.Database) -> None:
    # A counter that only grows: every write of an embedding and every change of a track's status
    # takes the next value, so a derived file that remembers the last value it saw can tell exactly
    # what changed since (a rowid can be reused after a delete; this cannot). `uid` tells this
    # database from another one that replaced it.
    db.execute(
        "CREATE TABLE changes (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL, uid TEXT NOT NULL)"
    )
    db.execute("INSERT INTO changes VALUES (1, 0, lower(hex(randomblob(16))))")
    db.execute("ALTER TABLE embeddings ADD COLUMN change INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE tracks ADD COLUMN change INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX embeddings_change ON embeddings(backend, version, change)")
    db.execute("CREATE INDEX tracks_change ON tracks(change)")
    # Work an indexer has taken on and not stored yet, so concurrent indexers split the tracks.
    db.execute(
        """
        CREATE TABLE claims (
            track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
            backend TEXT NOT NULL,
            version TEXT NOT NULL,
            owner TEXT NOT NULL,
            pid INTEGER NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (track_id, backend, version)
        )"""
    )


def next_change(conn) -> int:
    """Take the next value of the change counter (call inside a write transaction)."""
    conn.execute("UPDATE changes SET value = value + 1 WHERE id = 1")
    return conn.execute("SELECT value FROM changes WHERE id = 1").fetchone()[0]


def _migration_4(db: sqlite_utils.Database) -> None:
    # Recording MBIDs from the tags, and one row per imported external listen so that importing
    # the same export twice adds nothing (the key is the listen itself, not the file).
    db.execute("ALTER TABLE tracks ADD COLUMN mbid TEXT")
    db.execute("CREATE INDEX tracks_mbid ON tracks(mbid)")
    db.execute(
        """
        CREATE TABLE imported_listens (
            key TEXT PRIMARY KEY,
            play_id INTEGER REFERENCES plays(id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            file TEXT NOT NULL,
            imported_at REAL NOT NULL
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX imported_listens_play ON imported_listens(play_id)")


def _migration_5(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE playlists (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE playlist_items (
            playlist_id INTEGER NOT NULL REFERENCES playlists(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            track_id INTEGER NOT NULL REFERENCES tracks(id),
            PRIMARY KEY (playlist_id, position)
        ) WITHOUT ROWID"""
    )


def _migration_6(db: sqlite_utils.Database) -> None:
    # Blind A/B choices (pair stored sorted, so a tally is one GROUP BY) and the measured winner
    # pair serving each mode.
    db.execute(
        """
        CREATE TABLE ab_choices (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            axis TEXT NOT NULL,
            a TEXT NOT NULL,
            b TEXT NOT NULL,
            choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'same')),
            seed_track_id INTEGER
        )"""
    )
    db.execute("CREATE INDEX ab_choices_pair ON ab_choices(axis, a, b)")
    db.execute(
        """
        CREATE TABLE served_pairs (
            mode TEXT PRIMARY KEY CHECK (mode IN ('hot', 'cold')),
            recommender TEXT NOT NULL,
            backend TEXT NOT NULL,
            run_id INTEGER,
            set_at REAL NOT NULL
        )"""
    )


def _migration_7(db: sqlite_utils.Database) -> None:
    # Indexes so that what a screen shows costs the rows it shows: a page of the library, the
    # latest sessions, the app's current session.
    # The library's order as non-null columns (NULL artists last, a NULL album or title before an
    # empty one), so that a page starts right after the last row shown with one row-value
    # comparison SQLite seeks in an index: a comparison with NULL is never true, and SQLite seeks
    # row values over columns only, not over expressions. Virtual: computed on read, never stored.
    for name, expression in (
        ("order_artist_missing", "artist IS NULL"),
        ("order_artist", "ifnull(artist, '')"),
        ("order_album_known", "album IS NOT NULL"),
        ("order_album", "ifnull(album, '')"),
        ("order_title_known", "title IS NOT NULL"),
        ("order_title", "ifnull(title, '')"),
    ):
        db.execute(f"ALTER TABLE tracks ADD COLUMN {name} GENERATED ALWAYS AS ({expression}) VIRTUAL")
    db.execute(
        "CREATE INDEX tracks_library_order ON tracks(order_artist_missing, order_artist, order_album_known,"
        " order_album, order_title_known, order_title, path)"
    )
    db.execute("CREATE INDEX sessions_started ON sessions(started_at, id)")
    db.execute("CREATE INDEX sessions_latest ON sessions(source, last_at, id)")


def _migration_8(db: sqlite_utils.Database) -> None:
    # The play queue, saved whenever it changes and restored when the app starts. Entries keep
    # why they were queued; a track deleted from the library drops out of the saved queue.
    db.execute(
        """
        CREATE TABLE queue_entries (
            position INTEGER PRIMARY KEY,
            track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
            why TEXT NOT NULL,
            rule TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT 'user',
            score REAL
        )"""
    )
    db.execute("CREATE TABLE queue_state (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)")


def _migration_9(db: sqlite_utils.Database) -> None:
    # How many vectors and failures each model has, from the index alone: the compare screen and
    # the explain panel ask on every opening, and counting from the table reads every vector.
    db.execute("CREATE INDEX embeddings_stored ON embeddings(backend, version, vector IS NULL)")


# The text of a track in the search index, as `search_index_text` computes it (registered as an
# SQL function on every connection of the store, see `Store.__init__`).
_INDEX_TEXT = "track_search_text({0}.title, {0}.artist, {0}.album, {0}.genre, {0}.path)"


def _migration_10(db: sqlite_utils.Database) -> None:
    # A trigram index of what the track search looks in, so that a search reads the rows that hold
    # its words instead of running the search on every track. The indexed text is computed
    # (lowered, a non-UTF-8 path decoded as the search decodes it) and kept in the index's own
    # table: an entry then leaves by its rowid alone. A contentless index would need the exact
    # text it was indexed with to remove it, and any change to how the text is computed (a new
    # Python's case folding, say) would leave entries nothing can remove.
    db.execute("CREATE VIRTUAL TABLE track_search USING fts5(text, tokenize='trigram')")
    db.execute(f"INSERT INTO track_search (rowid, text) SELECT id, {_INDEX_TEXT.format('tracks')} FROM tracks")
    forget = "DELETE FROM track_search WHERE rowid = OLD.id;"
    learn = f"INSERT INTO track_search (rowid, text) VALUES (NEW.id, {_INDEX_TEXT.format('NEW')});"
    db.execute(f"CREATE TRIGGER track_search_insert AFTER INSERT ON tracks BEGIN {learn} END")
    db.execute(f"CREATE TRIGGER track_search_delete AFTER DELETE ON tracks BEGIN {forget} END")
    db.execute(
        "CREATE TRIGGER track_search_update AFTER UPDATE OF id, title, artist, album, genre, path ON tracks"
        f" BEGIN {forget} {learn} END"
    )


def _migration_11(db: sqlite_utils.Database) -> None:
    # The radio that was filling the queue, so that it fills it again after a restart: its seed
    # tracks (a JSON list; NULL: no radio) and what the queue says it is "radio from".
    db.execute("ALTER TABLE queue_state ADD COLUMN radio_seeds TEXT")
    db.execute("ALTER TABLE queue_state ADD COLUMN radio_label TEXT")


def _migration_12(db: sqlite_utils.Database) -> None:
    # The few tracks that cannot be searched (missing, failed...), so that counting a model's
    # searchable vectors subtracts theirs instead of looking up the status of every track: a
    # catalogue checks that count after every change to the vectors.
    db.execute("CREATE INDEX tracks_unavailable ON tracks(id) WHERE status != 'ok'")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
    _migration_9,
    _migration_10,
    _migration_11,
    _migration_12,
]
SCHEMA_VERSION = len(MIGRATIONS)
