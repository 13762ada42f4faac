"""Finding the local track an external listen refers to.

First by MusicBrainz recording id, where both the listen and the file's tags carry one; else
by normalised artist and title. Normalising folds case and accents, drops punctuation and a
leading "The", turns "&" into "and", removes "feat." credits (from the artist and from the
title) and edition suffixes such as "- Remastered 2011" or "(Mono Version)". Live versions,
remixes and edits other than radio edits are different recordings and are kept apart.

When several local tracks share the key, the album, then the duration (within
`DURATION_TOLERANCE_S`) break the tie; copies of one file (same content hash) are one track.
Anything still undecided is *ambiguous* and reported, never picked at random.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from mrs_tui.imports.formats import Listen
from mrs_tui.store import Track

DURATION_TOLERANCE_S = 3.0

_EDITION_WORDS = (
    r"remaster(?:ed)?|mono|stereo|single version|album version|radio edit|deluxe(?: edition)?|"
    r"bonus track|explicit|clean|original mix"
)
_EDITION_BRACKETS = re.compile(rf"\s*[\(\[][^\)\]]*\b(?:{_EDITION_WORDS})\b[^\)\]]*[\)\]]", re.IGNORECASE)
_EDITION_DASH = re.compile(rf"\s+-\s+[^-]*\b(?:{_EDITION_WORDS})\b.*$", re.IGNORECASE)
_FEAT_BRACKETS = re.compile(r"\s*[\(\[]\s*(?:feat\.?|ft\.?|featuring|with)\s[^\)\]]*[\)\]]", re.IGNORECASE)
_FEAT_TAIL = re.compile(r"\s+(?:feat\.?|ft\.?|featuring)\s.*$", re.IGNORECASE)
_SEPARATORS = re.compile(r"\s*(?:,|;|/|&|\band\b|\bx\b|\bvs\.?)\s*", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+")
_APOSTROPHES = re.compile(r"['\u2019\u2018`\u00b4]")


@lru_cache(maxsize=200_000)
def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    plain = _APOSTROPHES.sub("", plain).replace("&", " and ")
    words = _NOT_WORD.sub(" ", plain).split()
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    return " ".join(words)


@lru_cache(maxsize=200_000)
def normalise_title(title: str) -> str:
    text = _FEAT_BRACKETS.sub("", title)
    text = _EDITION_BRACKETS.sub("", text)
    text = _EDITION_DASH.sub("", text)
    text = _FEAT_TAIL.sub("", text)
    return _fold(text) or _fold(title)


@lru_cache(maxsize=200_000)
def normalise_artist(artist: str) -> str:
    text = _FEAT_BRACKETS.sub("", artist)
    text = _FEAT_TAIL.sub("", text)
    return _fold(text) or _fold(artist)


@lru_cache(maxsize=200_000)
def primary_artist(artist: str) -> str:
    """The first credited artist ("A & B", "A, B", "A x B" -> "A")."""
    text = _FEAT_TAIL.sub("", _FEAT_BRACKETS.sub("", artist))
    first = _SEPARATORS.split(text, maxsplit=1)[0]
    return _fold(first) or normalise_artist(artist)


def normalise_album(album: str | None) -> str:
    return normalise_title(album) if album else ""


def listen_key(listen: Listen) -> str:
    """What makes one listen the same listen on a second import, whichever file it came from."""
    return f"{int(listen.at)}|{normalise_artist(listen.artist)}|{normalise_title(listen.title)}"


@dataclass(frozen=True, slots=True)
class Match:
    track_id: int | None  # None: unmatched or ambiguous
    how: str  # "mbid", "tags", "tags+album", "tags+duration", "unmatched", "ambiguous"
    candidates: int = 0

    @property
    def matched(self) -> bool:
        return self.track_id is not None


class TrackMatcher:
    """Built once per import from the library's readable tracks; `match` is a few dict lookups."""

    def __init__(self, tracks: Iterable[Track]) -> None:
        self.by_mbid: dict[str, list[Track]] = {}
        self.by_artist_title: dict[tuple[str, str], list[Track]] = {}
        self.by_primary_title: dict[tuple[str, str], list[Track]] = {}
        self.tracks: dict[int, Track] = {}
        for track in tracks:
            self.tracks[track.id] = track
            if track.mbid:
                self.by_mbid.setdefault(track.mbid.strip().lower(), []).append(track)
            if not track.artist or not track.title:
                continue
            title = normalise_title(track.title)
            self.by_artist_title.setdefault((normalise_artist(track.artist), title), []).append(track)
            self.by_primary_title.setdefault((primary_artist(track.artist), title), []).append(track)

    def match(self, listen: Listen) -> Match:
        if listen.mbid:
            found = self.by_mbid.get(listen.mbid.strip().lower())
            if found:
                return Match(found[0].id, "mbid", len(found))
        title = normalise_title(listen.title)
        artist, primary = normalise_artist(listen.artist), primary_artist(listen.artist)
        candidates = (
            self.by_artist_title.get((artist, title))
            or self.by_artist_title.get((primary, title))
            or self.by_primary_title.get((primary, title))
        )
        if not candidates:
            return Match(None, "unmatched")
        return _break_tie(candidates, listen)


def _break_tie(candidates: list[Track], listen: Listen) -> Match:
    if len(candidates) == 1:
        return Match(candidates[0].id, "tags", 1)
    how = "tags"
    if listen.album:
        album = normalise_album(listen.album)
        same_album = [t for t in candidates if normalise_album(t.album) == album]
        if same_album:
            candidates, how = same_album, "tags+album"
    if len(candidates) > 1 and listen.duration_s:
        close = [t for t in candidates if t.duration and abs(t.duration - listen.duration_s) <= DURATION_TOLERANCE_S]
        if close:
            candidates, how = close, "tags+duration"
    if len(candidates) > 1 and len({t.content_hash for t in candidates}) == 1:
        candidates = candidates[:1]
    if len(candidates) == 1:
        return Match(candidates[0].id, how, 1)
    return Match(None, "ambiguous", len(candidates))
