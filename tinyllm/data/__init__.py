"""The data pipeline: raw text in, clean de-duplicated token shards out.

- `tinyllm.data.clean`: `html_to_text`, `normalize`, quality filters, `CleaningReport`;
- `tinyllm.data.dedup`: exact and MinHash/LSH near-duplicate removal (`dedup`, `Deduplicator`);
- `tinyllm.data.corpus`: built-in corpora (`builtin_documents`, `builtin_split`) and streaming
  user files (`iter_documents`);
- `tinyllm.data.dataset`: token files on disk (`write_tokens`, `read_tokens`) and the
  resumable `BatchLoader`;
- `tinyllm.data.prepare`: the whole pipeline, behind the ``tinyllm prepare`` command;
- `tinyllm.data.prepared`: reading a prepared folder (`load_prepared`), its provenance
  (`provenance`) and whether it is still what is asked for (`check_prepared`).
"""

from tinyllm.data.clean import CleaningReport, FilterConfig, check_quality, html_to_text, normalize
from tinyllm.data.corpus import builtin_documents, builtin_split, iter_documents
from tinyllm.data.dataset import BatchLoader, read_tokens, write_tokens
from tinyllm.data.dedup import Deduplicator, dedup
from tinyllm.data.prepared import check_prepared, load_prepared, provenance

__all__ = [
    "BatchLoader",
    "CleaningReport",
    "Deduplicator",
    "FilterConfig",
    "builtin_documents",
    "builtin_split",
    "check_prepared",
    "load_prepared",
    "provenance",
    "check_quality",
    "dedup",
    "html_to_text",
    "iter_documents",
    "normalize",
    "read_tokens",
    "write_tokens",
]
