"""Text-video retrieval: metrics (:mod:`.metrics`), annotation readers (:mod:`.annotations`), the
on-disk video-embedding cache (:mod:`.index`), evaluation (:mod:`.evaluate`, ``hdvila
eval-retrieval``) and folder search (:mod:`.search`, ``hdvila search``)."""

from hdvila.retrieval.annotations import FORMATS, Annotations, load_annotations
from hdvila.retrieval.metrics import format_table, metrics_from_ranks, query_ranks, retrieval_metrics, retrieval_ranks

__all__ = ["FORMATS", "Annotations", "load_annotations", "format_table", "metrics_from_ranks", "query_ranks",
           "retrieval_metrics", "retrieval_ranks"]
