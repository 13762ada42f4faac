"""Registry of recommenders, by name; listing them imports none (torch stays unloaded)."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from mrs_tui.errors import UserError
from recommenders.base import Cancelled, Interactions, Query, Recommender

__all__ = [
    "REGISTRY",
    "Cancelled",
    "Interactions",
    "Query",
    "Recommender",
    "RecommenderSpec",
    "create",
    "get_spec",
    "load_saved",
]


@dataclass(frozen=True)
class RecommenderSpec:
    name: str
    target: str  # "module:Class"
    description: str
    trainable: bool  # learns from interactions beyond counting (worth a background retrain)
    baseline: bool = False


_SPECS = [
    RecommenderSpec(
        "knn",
        "recommenders.knn:KNNRecommender",
        "Mean of the vectors played in the session plus the seed; cosine search in FAISS.",
        trainable=False,
    ),
    RecommenderSpec(
        "shallow",
        "recommenders.shallow:ShallowRecommender",
        "One shared Linear+ReLU projection of session and track vectors, cosine score, hinge loss.",
        trainable=True,
    ),
    RecommenderSpec(
        "contrastive",
        "recommenders.contrastive:ContrastiveRecommender",
        "Audio and collaborative (ELSA) views of each track projected into one space with a contrastive loss.",
        trainable=True,
    ),
    RecommenderSpec(
        "hybrid",
        "recommenders.hybrid:HybridRecommender",
        "ELSA autoencoder whose track factors are an MLP of the audio vectors; new tracks scored from audio.",
        trainable=True,
    ),
    RecommenderSpec(
        "bert4rec",
        "recommenders.bert4rec:Bert4RecRecommender",
        "Masked-item transformer over listening sequences, track embeddings projected from audio.",
        trainable=True,
    ),
    RecommenderSpec(
        "elsa",
        "recommenders.elsa:ELSARecommender",
        "Collaborative filtering only (ELSA on the play matrix, no audio): what audio adds; ranks no new tracks.",
        trainable=True,
        baseline=True,
    ),
    RecommenderSpec(
        "popular",
        "recommenders.popular:PopularRecommender",
        "Most played tracks first; the baseline every model must beat.",
        trainable=False,
        baseline=True,
    ),
    RecommenderSpec(
        "random",
        "recommenders.random:RandomRecommender",
        "Tracks in random order; the floor of every evaluation, hot and cold.",
        trainable=False,
        baseline=True,
    ),
]

REGISTRY: dict[str, RecommenderSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> RecommenderSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown recommender {name!r}", f"choose one of: {', '.join(REGISTRY)}") from None


def recommender_class(name: str) -> type[Recommender]:
    module_name, _, class_name = get_spec(name).target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def create(name: str, **params: object) -> Recommender:
    return recommender_class(name)(**params)


def load_saved(path: Path | str) -> Recommender:
    """Load a model saved with `Recommender.save`, whatever its class."""
    meta = json.loads((Path(path) / "params.json").read_text(encoding="utf-8"))
    return recommender_class(meta["name"]).load(path)
