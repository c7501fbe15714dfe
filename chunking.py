"""The Chunk that travels from a source to the store and back into the prompt, the Document
that groups a source's chunks for re-indexing, and token-budgeted splitting (the WhatsApp
parser's; `obsidian_markdown` has a structure-aware splitter of its own). Also the text
helpers both parsers and the store share: reading a source's bytes (`decode_text`), accent
folding (`fold_text`) and a chunk's JSON form (`json_fields`).

Budgets are in tokens of the embedding model, so nothing is ever silently truncated by it.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import re
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Sequence

TokenCounter = Callable[[str], int]

NOTES = "notes"
MESSAGES = "messages"
# metadata["date_origin"] of a note dated only by its file's modification time: when the file
# was last touched (a sync, a clone), not when its content happened; date filters skip it.
MTIME_ORIGIN = "mtime"


def fold_text(text: str) -> str:
    """Lower-case and strip accents so `José` and `jose` match: `fold_text("Ação") == "acao"`.
    The one accent folder: stored search text, search filters and chat-name matching all use it."""
    if text.isascii():  # the common case, ~50x cheaper
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def decode_text(raw: bytes) -> tuple[str, int]:
    """(text, number of undecodable byte sequences replaced) of a source file's bytes: UTF-8
    (a BOM allowed) or UTF-16 with a BOM (a file that went through Windows). Notes and
    WhatsApp exports both read through it."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = raw.decode("utf-16", "replace")
        return text, text.count("\ufffd")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
    # Each bad byte sequence became one U+FFFD; genuine U+FFFD characters are not counted.
    return text, text.count("\ufffd") - raw.count("\ufffd".encode())


def local_span(started: datetime | None, ended: datetime | None) -> tuple[datetime, datetime] | None:
    """A chunk's first and last moments in the user's wall clock (a missing end is the start, a
    missing start the end); None when undated. The span formatters (--list, search, the chat's
    passage headers) all start from it and differ only in how much of the moment they show."""
    if started is None and ended is None:
        return None
    return (started or ended).astimezone(), (ended or started).astimezone()


def json_fields(item: object, names: Sequence[str]) -> dict:
    """The named attributes of a chunk (or a search hit) as a JSON-safe dict, in the order
    given: datetimes as ISO 8601 strings, lists copied. Every JSON rendering of a chunk (the
    previews, `--list --json`, search `--json`) goes through it, so a field reads the same in all."""
    record = {}
    for name in names:
        value = getattr(item, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, list):
            value = list(value)
        record[name] = value
    return record


@dataclass
class Chunk:
    """One embeddable passage plus the metadata that retrieval filters and the prompt shows.

    `doc_id` names the document the chunk came from ("obsidian:Notes/Kyoto.md",
    "whatsapp:<chat id>"); `source` is what the user sees ("<obsidian>:Notes/Kyoto").
    Times are timezone-aware datetimes (naive ones are taken as local wall-clock by the store).
    """

    text: str
    source: str
    doc_id: str
    source_kind: str  # NOTES or MESSAGES
    title: str | None = None
    heading: str | None = None
    chat_name: str | None = None
    chat_id: str | None = None
    people: list[str] = field(default_factory=list)  # chat participants / speakers
    tags: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    metadata: dict = field(default_factory=dict)  # anything else (aliases, message ids, date origin)

    @property
    def text_hash(self) -> str:
        """Hash of the embedded text alone: equal texts have equal vectors, whichever note or chat
        they are in, so a moved note reuses its vectors. Matches the store's SQL backfill
        (`text_hash_sql`): the text as stored, without NUL characters."""
        return hashlib.sha256(self.text.replace("\x00", "").encode("utf-8", "surrogatepass")).hexdigest()[:32]

    @property
    def content_hash(self) -> str:
        """Hash of everything stored for the chunk but its vector: the identity used for
        incremental re-indexing (a changed tag or date re-writes the chunk, not only new text)."""
        described = json.dumps(
            [self.title, self.heading, self.chat_name, self.chat_id, self.people, self.tags,
             self.started_at, self.ended_at, self.metadata, self.source, self.source_kind],
            default=str, sort_keys=True, ensure_ascii=False,
        )
        digest = hashlib.sha256()
        for part in (self.doc_id, self.text, described):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
        return digest.hexdigest()[:32]


class SourceUnreadable(Exception):
    """Raised by `make_chunks` when the document's file exists but cannot be read this time."""


@dataclass
class Document:
    """A unit of re-indexing: a note or a chat.

    `fingerprint` changes whenever the document's chunks would; `make_chunks` is called only
    when the stored fingerprint differs, so an unchanged document costs no chunking.
    `unreadable` marks a file that exists but could not be read this run: ingestion keeps
    whatever is stored from it (for the document `doc_id`, or, when the parser cannot tell
    which documents the file held and `doc_id` is empty, for every document stored from `paths`).
    `paths` are whole file paths, never joined: a file name may hold any character.
    """

    doc_id: str
    source_kind: str
    fingerprint: str
    make_chunks: Callable[[], list[Chunk]]
    paths: tuple[str, ...] = ()  # the file(s) it came from, for messages and for `unreadable`
    unreadable: bool = False


def unreadable_file(source_kind: str, path: str, doc_id: str = "") -> Document:
    """The Document a parser yields for a file it had to skip (see `Document.unreadable`)."""
    return Document(doc_id=doc_id, source_kind=source_kind, fingerprint="", make_chunks=list,
                    paths=(path,), unreadable=True)


def local_zone() -> str:
    """The machine's time zone as a fingerprint part: a parser that turns times into local dates
    re-indexes when it changes (both names, so a DST switch does not count)."""
    return f"{time.tzname}{time.timezone}"


def fingerprint(*parts: str | bytes) -> str:
    """Stable short hash of the given parts (raw file bytes, parser version, settings...)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def split_to_fit(text: str, count_tokens: TokenCounter, max_tokens: int) -> list[str]:
    """Split `text` into pieces of at most `max_tokens`, at the largest boundary that works.

    Paragraphs first, then lines, then sentences, then words, then characters; every character
    of the input survives in order (whitespace at the cut points aside).
    "3 paragraphs of 200 tokens, budget 250 -> 3 pieces".
    """
    text = text.strip()
    if not text:
        return []
    if count_tokens(text) <= max_tokens:
        return [text]
    for splitter in (_PARAGRAPH_BREAK.split, str.splitlines, _SENTENCE_END.split, str.split):
        parts = [p for p in splitter(text) if p.strip()]
        if len(parts) > 1:
            joiner = "\n\n" if splitter is _PARAGRAPH_BREAK.split else "\n" if splitter is str.splitlines else " "
            pieces: list[str] = []
            for part in parts:
                pieces.extend(split_to_fit(part, count_tokens, max_tokens))
            return pack(pieces, count_tokens, max_tokens, joiner=joiner)
    # One unbroken token run: cut by characters, halving until it fits.
    middle = len(text) // 2
    return split_to_fit(text[:middle], count_tokens, max_tokens) + split_to_fit(
        text[middle:], count_tokens, max_tokens
    )


def pack(pieces: list[str], count_tokens: TokenCounter, max_tokens: int, joiner: str = "\n\n") -> list[str]:
    """Greedily merge consecutive pieces while the merged text stays within `max_tokens`.

    Pieces are assumed to fit on their own (use `split_to_fit` first).
    "5 pieces of 40 tokens, budget 100 -> 3 packs (2, 2, 1)".
    """
    packs: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}{joiner}{piece}" if current else piece
        if current and count_tokens(candidate) > max_tokens:
            packs.append(current)
            current = piece
        else:
            current = candidate
    if current:
        packs.append(current)
    return packs
