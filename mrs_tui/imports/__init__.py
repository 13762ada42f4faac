"""Importing listening history from ListenBrainz, Last.fm and Spotify exports.

`plan_import` reads the files and matches every listen to a local track without writing
anything: its `ImportPlan` is the dry-run report (matched / unmatched / ambiguous counts with
examples, rows that could not be read with FILE:LINE). `apply_import` then writes the matched
listens in one transaction, as sessions of their own whose source names the service
(``import:lastfm`` ...), so the history shows where each play came from and the app never
appends its own plays to an imported session. A listen is keyed by its start time and
normalised artist and title, so importing a file twice, or the same listens from two services'
exports, adds nothing the second time.

A listen the export flags as skipped, or heard for less than half the local track's length
(the rule the app applies to its own previews, capped at the 4 minutes Last.fm uses), becomes a
skip; the rest are complete plays. Imported plays are ordinary rows in ``plays``: training and
evaluation use them exactly like plays made in the app.
"""

from mrs_tui.imports.formats import SOURCES, Listen, ParsedFile, read_export
from mrs_tui.imports.importer import ImportPlan, ImportResult, apply_import, plan_import
from mrs_tui.imports.matching import Match, TrackMatcher, listen_key, normalise_artist, normalise_title

__all__ = [
    "SOURCES",
    "ImportPlan",
    "ImportResult",
    "Listen",
    "Match",
    "ParsedFile",
    "TrackMatcher",
    "apply_import",
    "listen_key",
    "normalise_artist",
    "normalise_title",
    "plan_import",
    "read_export",
]
