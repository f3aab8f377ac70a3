"""Serving a checkpoint: recommendations for any history, export, an HTTP server and what it needs.

Submodules (import from them; this package re-exports only ``Recommender`` and ``Recommendation``):

    recommender   ``Recommender``: top-K lists for raw-id histories or dataset users, from one checkpoint
    onnx_recommender  ``OnnxRecommender``: the same for histories, from an exported ONNX file (onnxruntime)
    export        the scoring model written to a portable format (ONNX) and checked against PyTorch
    server        the FastAPI app (``divrec serve``): recommend, feedback, health, metrics, hot reload
    batching      micro-batching of concurrent requests into one ``Recommender`` call
    store         the feedback event store (SQLAlchemy)
    telemetry     Prometheus metrics of the server
    ann           approximate nearest-neighbour retrieval (faiss) for large catalogs
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from divrec.serving.recommender import Recommendation, Recommender

__all__ = ["Recommendation", "Recommender"]


def __getattr__(name: str) -> Any:
    """``Recommender`` / ``Recommendation`` on first use: importing a light submodule (``serving.ann``,
    ``serving.store``) does not load the model stack."""
    if name in __all__:
        from divrec.serving import recommender

        return getattr(recommender, name)
    raise AttributeError(f"module 'divrec.serving' has no attribute {name!r}")
