"""The app's knn keeps its vectors and index between plays, and what it serves equals a fresh fit."""

from __future__ import annotations

import numpy as np

from mrs_tui.config import Settings
from mrs_tui.engine import Engine
from mrs_tui.store import Store
from mrs_tui.store.bulk import BulkPlay, BulkTrack, write_bulk_history


def _engine(tmp_path) -> Engine:
    store = Store.open(tmp_path / "library.db")
    rng = np.random.default_rng(3)
    tracks = [BulkTrack(f"/m/{i:03d}.flac", f"t{i}", f"a{i % 5}") for i in range(120)]
    plays = [
        BulkPlay(s, int(rng.integers(0, 60)), "complete", 1000.0 + s * 9000 + n) for s in range(8) for n in range(5)
    ]
    write_bulk_history(
        store, tracks, {("mfcc", "1"): rng.normal(size=(120, 6)).astype(np.float32)}, plays, source="app"
    )
    return Engine(store, Settings(backend="mfcc", recommender="knn"))


def _fresh_hot_mask(engine: Engine) -> np.ndarray:
    catalogue = engine.catalogue()
    return engine.history.data(catalogue.index_of).interactions.hot_mask()


def test_hot_items_follow_every_kind_of_history_change_without_a_refit(tmp_path):
    engine = _engine(tmp_path)
    store = engine.store
    model = engine.fitted_model()
    vectors = model.unit
    assert np.array_equal(model.hot_mask, _fresh_hot_mask(engine))
    steps = [
        lambda: engine.record(100, "complete"),  # a new track turns hot
        lambda: engine.record(100, "skip"),  # skipped afterwards in the same session: cold again
        lambda: engine.record(101, "like"),
        lambda: store.add_play(1, 102, "complete", 0.5),  # an imported play older than the rest
        lambda: store.delete_play(store.last_play_id()),  # a deletion: counted from scratch
        lambda: store.delete_session(2),
    ]
    for number, step in enumerate(steps):
        step()
        model = engine.fitted_model()
        assert model.unit is vectors  # the same vectors: nothing per catalogue item was redone
        assert np.array_equal(model.hot_mask, _fresh_hot_mask(engine)), f"after step {number}"
    hot = engine.suggest(pool="hot", k=200, session_id=None)
    catalogue = engine.catalogue()
    served = {catalogue.index_of[s.track.id] for s in hot.items}
    assert served and served <= set(np.flatnonzero(_fresh_hot_mask(engine)))


def test_a_seed_and_session_blend_matches_single_searches(tmp_path):
    engine = _engine(tmp_path)
    for track in (3, 4, 5):
        engine.record(track, "complete")
    model = engine.fitted_model()
    from recommenders.base import Query

    queries = [Query(seed=7, exclude={1, 2}), Query(history=[3, 4], exclude={1, 2})]
    batched = model.recommend_batch(queries, 30)
    for query, (items, scores) in zip(queries, batched, strict=True):
        single_items, single_scores = model.recommend(query, 30)
        assert items.tolist() == single_items.tolist()
        assert np.allclose(scores, single_scores)
        assert not {1, 2} & set(items.tolist())


def test_each_suggestion_explains_itself_with_its_own_tags(tmp_path):
    from mrs_tui.store import EmbeddingRow

    engine = _engine(tmp_path)
    tagged = {7: [["rock", 0.9], ["guitar", 0.5]], 8: [["piano", 0.8]]}
    musicnn = engine.version("musicnn")
    engine.store.put_embeddings(
        [
            EmbeddingRow(t, "musicnn", musicnn, np.ones(4, np.float32), extras={"tags": tags})
            for t, tags in tagged.items()
        ]
    )
    result = engine.suggest(k=120, tracks=[5, 6])
    reasons = {s.track.id: s.reason for s in result.items}
    assert "sounds like rock, guitar" in reasons[7] and "sounds like piano" in reasons[8]
    assert all("sounds like" not in r for t, r in reasons.items() if t not in tagged)
    assert engine.tracks_tags(list(reasons), "mfcc") == {t: engine.track_tags(t, "mfcc") for t in reasons}


def test_hot_tracks_tell_which_tracks_flipped_since_a_version(tmp_path, monkeypatch):
    from mrs_tui.history import HotTracks

    engine = _engine(tmp_path)
    hot = engine.history.hot_tracks
    start = hot.update()
    engine.record(100, "complete")
    after_play = hot.update()
    assert hot.changed_since(start) == {100} and hot.changed_since(after_play) == set()
    engine.record(100, "skip")  # hot, then cold again: still a change to apply to an old mask
    engine.record(101, "like")
    hot.update()
    assert hot.changed_since(start) == {100, 101} and hot.changed_since(after_play) == {100, 101}
    engine.store.delete_play(engine.store.last_play_id())  # a deletion: counted again from scratch
    hot.update()
    assert hot.changed_since(after_play) is None

    # A mask older than the versions kept is built again, and still right.
    monkeypatch.setattr(HotTracks, "KEPT_VERSIONS", 2)
    model = engine.fitted_model()
    for track in (103, 104, 105, 106):
        engine.record(track, "complete")
        hot.update()
    model = engine.fitted_model()
    assert np.array_equal(model.hot_mask, _fresh_hot_mask(engine))
