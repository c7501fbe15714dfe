"""The store's values without SQL: a chunk's COPY row, the model an index was built with, and
the forget list as ingestion reads it. store.py runs the statements these feed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

import numpy as np

import settings
from chunking import Chunk, fold_text

CHUNK_COLUMNS = (
    "doc_id", "source_kind", "source", "content_hash", "text_hash", "content", "title", "heading",
    "chat_name", "chat_id", "people", "people_folded", "people_words", "tags", "started_at", "ended_at",
    "date_origin", "metadata", "search_text", "embedding",
)
CHUNK_COPY_TYPES = (
    "text", "text", "text", "text", "text", "text", "text", "text",
    "text", "text", "text[]", "text[]", "text[]", "text[]", "timestamptz", "timestamptz",
    "text", "jsonb", "text", "vector",
)


@dataclass
class IndexInfo:
    """What the meta table says about the index."""

    model: str
    dimension: int
    schema_version: str


def name_words(names: Iterable[str]) -> list[str]:
    """The distinct folded words of people's names, what the person filter's index holds:
    `name_words(["Maria Silva", "José"]) == ["jose", "maria", "silva"]`."""
    return sorted({word for name in names for word in fold_text(no_nul(name) or "").split()})


@dataclass(frozen=True)
class ForgetList:
    """What --forget keeps out of the index: sources starting with a prefix, and texts forgotten
    under one (text hash -> its rule)."""

    prefixes: tuple[str, ...] = ()
    texts: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.prefixes)

    def rule_for(self, chunk: Chunk) -> str | None:
        """The rule that keeps `chunk` out, or None."""
        for prefix in self.prefixes:
            if chunk.source.startswith(prefix):
                return prefix
        return self.texts.get(chunk.text_hash)


def refuse_another_model(meta: dict, model_name: str, dimension: int, model_folder: str | None) -> None:
    """Raise the rebuild message unless the index's meta rows name this model and dimension."""
    built_with = (meta["embedding_model"], int(meta["embedding_dimension"]))
    if built_with[1] != dimension or not same_model(
            built_with[0], meta.get("embedding_model_folder"), model_name, model_folder):
        raise settings.UserError(
            f"the index was built with {built_with[0]} ({built_with[1]} dims); "
            f"EMBEDDING_MODEL is {model_name} ({dimension}). Rebuild the index with "
            f"{settings.ingest_hint('--rebuild')}, or set EMBEDDING_MODEL back."
        )


def same_model(stored_name: str, stored_folder: str | None, name: str, folder: str | None) -> bool:
    """True when two model spellings are one model: equal names, or the same resolved folder.

    `same_model("models/e5/", None, "./models/e5", None)` is True where that folder exists.
    """
    if stored_name == name:
        return True
    theirs = Path(stored_folder).resolve() if stored_folder else settings.local_model_folder(stored_name)
    mine = Path(folder).resolve() if folder else settings.local_model_folder(name)
    return theirs is not None and theirs == mine


def _aware(moment: datetime | None) -> datetime | None:
    # Naive times (WhatsApp .txt exports) are local wall-clock on the user's machine.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.astimezone()


def chunk_row(chunk: Chunk, vector: np.ndarray) -> list:
    """The COPY row for one chunk, in CHUNK_COLUMNS order."""
    from psycopg.types.json import Jsonb

    search_text = fold_text(" ".join(filter(None, [chunk.text, chunk.chat_name, *chunk.people])))
    # Both ends of a dated span are stored, so each date bound is a plain column comparison.
    started, ended = _aware(chunk.started_at or chunk.ended_at), _aware(chunk.ended_at or chunk.started_at)
    origin = chunk.metadata.get("date_origin")
    return [
        chunk.doc_id, chunk.source_kind, chunk.source, chunk.content_hash, chunk.text_hash, no_nul(chunk.text),
        no_nul(chunk.title), no_nul(chunk.heading), no_nul(chunk.chat_name), no_nul(chunk.chat_id),
        [no_nul(p) for p in chunk.people], [fold_text(no_nul(p)) for p in chunk.people],
        name_words(chunk.people), [no_nul(t) for t in chunk.tags], started, ended,
        origin if isinstance(origin, str) else None,
        Jsonb(_json_safe(chunk.metadata)), no_nul(search_text), np.asarray(vector, dtype=np.float32),
    ]


def _json_safe(metadata: dict) -> dict:
    # jsonb rejects \u0000 and non-JSON values (datetimes become ISO strings).
    return json.loads(json.dumps(metadata, default=str, ensure_ascii=False).replace("\\u0000", ""))


def no_nul(text: str | None) -> str | None:
    """The text without NUL characters, which PostgreSQL text cannot hold."""
    return text.replace("\x00", "") if text else text
