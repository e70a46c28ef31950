"""Ingestion of raw interaction uploads into versioned, validated curated datasets in S3.

Entry point: :func:`ingest` with an :class:`IngestConfig`; it returns a JSON-able
:class:`IngestResult`. See :mod:`dkt_core.ingest.layout` for the key layout and
:mod:`dkt_core.ingest.pipeline` for the write order that makes runs idempotent.
"""

from dkt_core.ingest.layout import run_slug
from dkt_core.ingest.manifest import IngestBusy, ManifestState, load_state
from dkt_core.ingest.pipeline import IngestConfig, IngestResult, ingest, pending_objects

__all__ = [
    "IngestBusy",
    "IngestConfig",
    "IngestResult",
    "ManifestState",
    "ingest",
    "load_state",
    "pending_objects",
    "run_slug",
]
