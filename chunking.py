"""The Chunk that travels from a source to the store and back into the prompt, the Document
that groups a source's chunks for re-indexing, and the one token-budgeted splitter (`Splitter`:
Obsidian sections and over-long WhatsApp messages are both cut by it). Also the text
helpers both parsers and the store share: reading a source's bytes (`decode_text`), accent
folding (`fold_text`) and a chunk's JSON form (`json_fields`).

Budgets are in tokens of the embedding model, so nothing is ever silently truncated by it.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import re
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Callable, Iterable, Sequence

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
    missing start the end); None when undated. `span_text` writes it."""
    if started is None and ended is None:
        return None
    return (started or ended).astimezone(), (ended or started).astimezone()


def span_text(first: date | datetime | None, last: date | datetime | None = None, minutes: bool = False) -> str:
    """The one way a span of time is written, for people and the model alike: `2021-06-12`,
    `2021-06-12 to 2021-06-14`, with `minutes` `2021-06-12 10:15 to 2021-06-12 11:30`; '' when
    neither end is known. Datetimes are shown in the user's wall clock (see `local_span`)."""
    if first is None and last is None:
        return ""
    if isinstance(first or last, datetime):
        first, last = local_span(first, last)
    else:
        first, last = first or last, last or first
    shape = "%Y-%m-%d %H:%M" if minutes else "%Y-%m-%d"
    start, end = format(first, shape), format(last, shape)
    return start if start == end else f"{start} to {end}"


# The span that ends a chat chunk's header line: stored and embedded text, so its shape is fixed
# (both ends to the minute, even when equal) and search can find it to widen it (`SITTING_SPAN`).
SITTING_SPAN = re.compile(r", \d{4}-\d{2}-\d{2} \d{2}:\d{2} to \d{4}-\d{2}-\d{2} \d{2}:\d{2}$")


def wall_clock(when: datetime) -> datetime:
    """A chat message's moment as its lines show it: an aware one in the user's zone, a naive
    one (an export's own local time) as it is."""
    return when.astimezone() if when.tzinfo else when


def sitting_span(first: datetime, last: datetime) -> str:
    """`, 2021-06-26 10:15 to 2021-06-26 10:18`: the end of a chat chunk's header (wall clock).
    Changing it changes every chat chunk's text: bump the WhatsApp PARSER_VERSION with it."""
    return f", {wall_clock(first):%Y-%m-%d %H:%M} to {wall_clock(last):%Y-%m-%d %H:%M}"


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


def preview(documents: Iterable[Document], count_tokens: TokenCounter, as_json: bool,
            json_names: Sequence[str], heading: Callable[[Chunk, int], str],
            metadata_names: Sequence[str] = (), clean: Callable[[str], str] = str) -> tuple[int, int]:
    """The parsers' dry run (`obsidian_to_embeddings.py`, `whatsapp_to_embeddings.py`): print every
    chunk of `documents` and return (documents, chunks) seen.

    `as_json`: one object per line, the `json_names` fields, "tokens", the `metadata_names` of
    its metadata, then "text". Else `heading(chunk, tokens)`, the text and a blank line, each
    passed through `clean` (both previews strip terminal escapes: a note or a message may hold them).
    """
    try:  # counting long paragraphs is expected here; the tokenizer's length warning is noise
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
    except ImportError:
        pass
    seen = chunks = 0
    for document in documents:
        seen += 1
        for chunk in document.make_chunks():
            chunks += 1
            tokens = count_tokens(chunk.text)
            if as_json:
                print(json.dumps({**json_fields(chunk, json_names), "tokens": tokens,
                                  **{name: chunk.metadata[name] for name in metadata_names}, "text": chunk.text},
                                 ensure_ascii=False))
            else:
                print(clean(heading(chunk, tokens)))
                print(clean(chunk.text))
                print()
    return seen, chunks


# A piece never holds more characters than this per budget token, where the caller asks for a
# character cap (the Obsidian parser does). Tokenizers count a very long run of letters as one
# unknown token, so the token budget alone would let such a "word" grow without bound; normal
# text has 3-5 characters per token.
MAX_CHARS_PER_TOKEN = 8
# For callers that cap by tokens only (the WhatsApp parser).
NO_CHAR_CAP = sys.maxsize
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？;])\s+")


class Splitter:
    """Token-budgeted splitting that calls `count_tokens` about once per piece, never on a
    growing text: units are counted once, packed by their sums, and each pack verified."""

    def __init__(self, count_tokens: Callable[[str], int]):
        self.count_tokens = count_tokens
        self._cache: dict[str, int] = {}  # one note's blocks are looked at more than once

    def count(self, text: str) -> int:
        """`count_tokens(text)`, remembered."""
        if text not in self._cache:
            self._cache[text] = self.count_tokens(text)
        return self._cache[text]

    def fits(self, text: str, budget: int, chars: int) -> int | None:
        """Token count of `text` if it fits both budgets, else None (long texts are not counted)."""
        if len(text) > chars:
            return None
        n = self.count(text)
        return n if n <= budget else None

    def split(self, text: str, budget: int, chars: int, kind: str = "text") -> list[tuple[str, int]]:
        """Pieces of `text` (with their token counts), each within `budget` tokens and `chars`
        characters: whole text, else lines, else sentences, else words, else characters."""
        text = text.strip()
        if not text:
            return []
        n = self.fits(text, budget, chars)
        if n is not None:
            return [(text, n)]
        lines = [line for line in text.split("\n") if line.strip()]
        if len(lines) > 1:
            if kind == "table":
                return self._split_table(lines, budget, chars)
            return self._split_units(lines, "\n", budget, chars, kind)
        if kind != "code":
            sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
            if len(sentences) > 1:
                return self._split_units(sentences, " ", budget, chars, kind)
        return self.cut(text, budget, chars)

    def _split_units(self, units: list[str], joiner: str, budget: int, chars: int, kind: str) -> list[tuple[str, int]]:
        return self.pack_units([(unit, "text" if kind == "table" else kind) for unit in units], joiner, budget, chars)

    def pack_units(self, units: list[tuple[str, str]], joiner: str, budget: int, chars: int) -> list[tuple[str, int]]:
        """Pieces within budget made of consecutive (text, kind) units joined by `joiner`.

        Takes as many units as should fill ~95% of the budget, judged by the characters per
        token seen so far, and counts them once: about one call per piece, not one per unit.
        Too many: the estimate shrinks and it retries. A unit too big alone is split finer.
        """
        per_token = 4.0
        pieces: list[tuple[str, int]] = []
        start = 0
        while start < len(units):
            target = max(1, min(chars, int(budget * per_token * 0.95)))
            end = start + 1
            length = len(units[start][0])
            while end < len(units) and length + len(joiner) + len(units[end][0]) <= target:
                length += len(joiner) + len(units[end][0])
                end += 1
            if end - start == 1:
                pieces.extend(self.split(units[start][0], budget, chars, units[start][1]))
                start = end
                continue
            joined = joiner.join(text for text, _ in units[start:end])
            n = self.count(joined) if len(joined) <= chars else None
            if n is not None and n <= budget:
                pieces.append((joined, n))
                per_token = max(1.0, len(joined) / max(n, 1))
                start = end
            else:
                per_token = max(0.5, (len(joined) / n if n else per_token) * 0.85)
        return self.pack(pieces, joiner, budget, chars)

    def _split_table(self, rows: list[str], budget: int, chars: int) -> list[tuple[str, int]]:
        # Each piece of a long table repeats the header row, so its columns keep their names.
        header = rows[0]
        header_tokens = self.count(header)
        if header_tokens > budget // 3 or len(header) > chars // 3:
            return self._split_units(rows, "\n", budget, chars, "text")
        packs = self._split_units(rows[1:], "\n", budget - header_tokens - 1, chars - len(header) - 1, "text")
        return [(f"{header}\n{text}", n + header_tokens) for text, n in packs]

    def pack(self, pieces: list[tuple[str, int]], joiner: str, budget: int, chars: int) -> list[tuple[str, int]]:
        """Greedily join consecutive pieces (each already within budget) while the sum of their
        counts fits; every joined pack is counted once to confirm it."""
        packs: list[tuple[str, int]] = []
        current: list[tuple[str, int]] = []

        def close() -> None:
            while current:
                if len(current) == 1:
                    packs.append(current[0])
                    break
                joined = joiner.join(text for text, _ in current)
                n = self.fits(joined, budget, chars)
                if n is not None:
                    packs.append((joined, n))
                    break
                # The sum underestimated: give back the last piece and try again.
                tail = current.pop()
                close()
                current.append(tail)
            current.clear()

        total = 0
        length = 0
        for text, n in pieces:
            if current and (total + n > budget or length + len(joiner) + len(text) > chars):
                close()
                total = length = 0
            current.append((text, n))
            total += n
            length += len(text) + len(joiner)
        close()
        return packs

    def cut(self, text: str, budget: int, chars: int) -> list[tuple[str, int]]:
        """Cut a text with no line or sentence breaks: at spaces where there are some, else
        anywhere, sizing each piece from the characters-per-token seen so far."""
        pieces: list[tuple[str, int]] = []
        per_token = 4.0
        rest = text.strip()
        while rest:
            n = self.fits(rest, budget, chars) if len(rest) <= budget * per_token * 1.5 else None
            if n is not None:
                pieces.append((rest, n))
                break
            size = max(1, min(chars, int(budget * per_token * 0.9), len(rest)))
            while True:
                end = size
                space = rest.rfind(" ", size // 2, size + 1)
                if space > 0 and end < len(rest):
                    end = space
                piece = rest[:end].strip()
                n = self.count(piece) if piece else 0
                if n <= budget or size == 1:
                    break
                size = max(1, min(size - 1, int(size * budget / n * 0.9)))
            if piece:
                pieces.append((piece, n))
                per_token = max(1.0, len(piece) / max(n, 1))
            rest = rest[end:].strip()
        return pieces

    def tail(self, text: str, budget: int) -> str:
        """The last sentence (or last words) of `text` within `budget` tokens, for overlap."""
        last = text.rstrip().rsplit("\n", 1)[-1]
        sentences = [s for s in _SENTENCE_END.split(last) if s.strip()]
        candidate = sentences[-1] if sentences else last
        for _ in range(4):
            candidate = candidate.strip()
            if not candidate or len(candidate) > budget * MAX_CHARS_PER_TOKEN:
                candidate = candidate[-budget * 3:]
                space = candidate.find(" ")
                candidate = candidate[space + 1:] if space >= 0 else candidate
                continue
            if self.count(candidate) <= budget:
                return candidate
            candidate = candidate[len(candidate) // 2:]
            space = candidate.find(" ")
            candidate = candidate[space + 1:] if space >= 0 else candidate
        return ""
