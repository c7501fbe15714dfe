"""WhatsApp history -> one Document per chat, chunked by conversation and token budget.

    python whatsapp_to_embeddings.py --whatsapp ~/whatsapp      # dry run: prints the chunks

The exports are read and merged into one Chat per conversation by `whatsapp_chats` (inputs,
contacts, how overlapping exports are merged); this module cuts each chat into chunks (a
header line with the chat and the sitting's dates, then one `HH:MM Name: text` line per message in
local time), fingerprints it, and skips exports
unchanged since the last complete read.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator

import chunking
import settings
import whatsapp_chats
from whatsapp_chats import UNKNOWN_SENDER, Chat, load_chats  # noqa: F401 (load_chats: for callers)
from whatsapp_txt_export import DATE_ORDERS, Message

# 2: the owner named in 1:1 headers; 3: 4-message units; 4: a message over the budget is cut by
# chunking.Splitter, the notes' splitter (at `;` too, in smaller pieces); chats without one are as before;
# 5: the exporter's lines carry their name (not "Me") when a 1:1 export shows it, and lines show
# only the time (the sitting's date is in the header).
PARSER_VERSION = "whatsapp-5"
# A silence longer than this starts a new chunk: chunks follow conversations.
DEFAULT_SESSION_GAP = timedelta(hours=1)
# Search units: at most this many message lines per chunk (None: up to the token budget).
# Small units are found precisely; retrieval reads them with their neighbours
# (passage_context.with_context).
# bench/bench_memory.py, all questions: whole-budget chunks 0.76 (0.80 read with one neighbour
# each side, 187 lines in the top 10); 4-message units read with two on each side 0.82 (148 lines).
CHAT_UNIT_MESSAGES: int | None = 4
ME = "Me"
# A line's time; the date is the sitting's, in the header (bench_memory, all questions: the date
# on every line too 0.849, the time alone 0.854, no time 0.849).
LINE_TIME_FORMAT = "%H:%M"
MAX_HEADER_NAME_CHARS = 80

__all__ = ["iter_documents", "chat_chunks", "indexed_chunks", "owner_name", "Chat"]


# --- chunks -----------------------------------------------------------------------------------

def _speaker(message: Message) -> str:
    return ME if message.from_me else (message.author or UNKNOWN_SENDER)


def owner_name(chat: Chat) -> str | None:
    """The exporter's own name when a 1:1 in-app export shows it, else None (their lines then say
    "Me"). In the header, their lines and the chunk's people, so a question naming them finds the
    chat and what they said in it (bench_memory: 0.825 -> 0.849 over all questions)."""
    if chat.is_group:
        return None
    names = Counter(m.author for m in chat.messages if m.from_me and m.author)
    return names.most_common(1)[0][0] if names else None


def _short(name: str) -> str:
    return name if len(name) <= MAX_HEADER_NAME_CHARS else name[:MAX_HEADER_NAME_CHARS] + "…"


def _header(chat: Chat, first: datetime, last: datetime, owner: str | None = None) -> str:
    kind = "WhatsApp group" if chat.is_group else "WhatsApp chat with"
    me = f" (me: {_short(owner)})" if owner else ""
    return f"{kind} {_short(chat.name)}{me}{chunking.sitting_span(first, last)}"


def _sessions(messages: list[Message], gap: timedelta) -> Iterator[list[Message]]:
    session: list[Message] = []
    for message in messages:
        if session and message.time - session[-1].time > gap:
            yield session
            session = []
        session.append(message)
    if session:
        yield session


@dataclass
class _Line:
    message: Message
    prefix: str  # "2021-06-26 10:15 Maria Silva: "
    body: str
    tokens: int

    @property
    def text(self) -> str:
        return self.prefix + self.body


def _split_line(message: Message, prefix: str, body: str, count_tokens, budget: int) -> list[_Line]:
    """`prefix + body` as one line, or several lines each repeating the prefix when over `budget`."""
    tokens = count_tokens(prefix + body)
    if tokens <= budget:
        return [_Line(message, prefix, body, tokens)]
    room = max(4, budget - count_tokens(prefix) - 2)
    pieces = chunking.Splitter(count_tokens).split(body, room, chunking.NO_CHAR_CAP)
    return [_Line(message, prefix, piece, count_tokens(prefix + piece)) for piece, _ in pieces]


def _message_lines(message: Message, count_tokens, budget: int, owner: str | None = None) -> list[_Line]:
    """One line per message; a message over the budget is split into several lines. The
    exporter's lines carry their name when known (`owner`), else "Me"."""
    speaker = owner if owner and message.from_me else _speaker(message)
    prefix = f"{chunking.wall_clock(message.time):{LINE_TIME_FORMAT}} {speaker}: "
    return _split_line(message, prefix, " ".join(message.text.split()), count_tokens, budget)


def chat_chunks(chat: Chat, count_tokens: Callable[[str], int], max_tokens: int,
                gap: timedelta = DEFAULT_SESSION_GAP, max_lines: int | None = None) -> list[chunking.Chunk]:
    """Chunks of one chat: a new chunk at each silence over `gap`, when `max_tokens` (the whole
    text, header included) would be passed, or after `max_lines` message lines. "1 message -> 1 chunk"; the last part is always kept.

    count_tokens runs about once per message line and once per chunk (a final check).
    """
    chunks: list[chunking.Chunk] = []
    owner = owner_name(chat)
    for session in _sessions(chat.messages, gap):
        header_tokens = count_tokens(_header(chat, session[0].time, session[-1].time, owner))
        budget = max(8, max_tokens - header_tokens - 2)
        pending = deque(line for m in session for line in _message_lines(m, count_tokens, budget, owner))
        while pending:
            pack = [pending.popleft()]
            used = pack[0].tokens
            while pending and used + pending[0].tokens + 1 <= budget and (max_lines is None or len(pack) < max_lines):
                used += pending[0].tokens + 1
                pack.append(pending.popleft())
            text = _chunk_text(chat, pack, owner)
            shrink = budget
            while count_tokens(text) > max_tokens:
                # Token counts are not exactly additive: give back lines, or cut the last one finer.
                if len(pack) > 1:
                    pending.appendleft(pack.pop())
                elif shrink <= 1:
                    break  # a budget smaller than the header itself: nothing can fit
                else:
                    shrink = max(1, int(shrink * 0.8))
                    line = pack[0]
                    pieces = _split_line(line.message, line.prefix, line.body, count_tokens, shrink)
                    pack = [pieces[0]]
                    pending.extendleft(reversed(pieces[1:]))
                text = _chunk_text(chat, pack, owner)
            chunks.append(_make_chunk(chat, pack, text, owner))
    return chunks


def _chunk_text(chat: Chat, pack: list[_Line], owner: str | None = None) -> str:
    return _header(chat, pack[0].message.time, pack[-1].message.time, owner) + "\n" + "\n".join(l.text for l in pack)


def _make_chunk(chat: Chat, pack: list[_Line], text: str, owner: str | None = None) -> chunking.Chunk:
    messages = list(dict.fromkeys(id(l.message) for l in pack))
    by_id = {id(l.message): l.message for l in pack}
    ordered = [by_id[i] for i in messages]
    people = [] if chat.is_group else [chat.name]
    people += [m.author for m in ordered if not m.from_me and m.author] + ([owner] if owner else [])
    return chunking.Chunk(
        text=text,
        source=f"<whatsapp>:{chat.name}",
        doc_id=f"whatsapp:{chat.key}",
        source_kind=chunking.MESSAGES,
        title=chat.name,
        chat_name=chat.name,
        chat_id=chat.key,
        people=list(dict.fromkeys(people)),
        started_at=ordered[0].time,
        ended_at=ordered[-1].time,
        metadata={
            "message_ids": [m.msg_id for m in ordered],
            "is_group": chat.is_group,
            "time_basis": "utc" if ordered[0].time.tzinfo else "local",
        },
    )


def _chat_fingerprint(chat: Chat, max_tokens: int) -> str:
    rows = "\n".join(f"{m.time.isoformat()}\x1f{_speaker(m)}\x1f{m.msg_id}\x1f{m.text}" for m in chat.messages)
    # Lines show local time, so the machine's zone is part of it.
    return chunking.fingerprint(PARSER_VERSION, str(max_tokens), str(DEFAULT_SESSION_GAP), str(CHAT_UNIT_MESSAGES),
                                chunking.local_zone(), chat.name, str(chat.is_group), str(owner_name(chat)), rows)


# --- skipping unchanged exports ---------------------------------------------------------------
# What the documents of a run were, keyed by everything they depend on: the exports' and the
# contacts file's contents (a file whose size and mtime are as recorded is not even read), the
# settings, and this parser's own source. An unchanged re-run then yields the recorded
# documents without parsing anything; a document ingestion must chunk parses the exports then.

CACHE_VERSION = "1"
_PARSER_FILES = ("whatsapp_to_embeddings.py", "whatsapp_chats.py", "whatsapp_txt_export.py",
                 "whatsapp_locales.py", "chunking.py")
_HASH_BLOCK = 1 << 20
_RACY_NS = 2_000_000_000


def indexed_chunks(chat: Chat, count_tokens: Callable[[str], int], max_tokens: int) -> list[chunking.Chunk]:
    """A chat's chunks as the index stores them: search units of CHAT_UNIT_MESSAGES lines (read
    at each call, so a benchmark may change it). A freshly parsed chat and one remade from the
    recorded run both go through here, so they cannot be cut differently."""
    return chat_chunks(chat, count_tokens, max_tokens, max_lines=CHAT_UNIT_MESSAGES)


def file_state(file: Path, recorded: dict | None = None) -> dict:
    """{"size", "mtime_ns", "sha256"} of a file; the recorded hash is reused, without reading
    the file, when its size and mtime are as recorded. OSError when it cannot be read."""
    stat = file.stat()
    if recorded and recorded.get("size") == stat.st_size and recorded.get("mtime_ns") == stat.st_mtime_ns:
        return recorded
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    # A file modified within the clock's coarse tick could change again with the same mtime:
    # record no mtime for it, so the next run hashes it again (git's "racily clean" rule).
    recent = time.time_ns() - stat.st_mtime_ns < _RACY_NS
    return {"size": stat.st_size, "mtime_ns": None if recent else stat.st_mtime_ns, "sha256": digest.hexdigest()}


@functools.lru_cache(maxsize=1)
def _parser_digest() -> str:
    here = Path(__file__).resolve().parent
    return chunking.fingerprint(*(here.joinpath(name).read_bytes() for name in _PARSER_FILES))


def _cache_file(cache_dir: Path, path: Path) -> Path:
    return cache_dir / f"whatsapp-{hashlib.sha256(str(path).encode('utf-8', 'surrogatepass')).hexdigest()[:16]}.json"


def _read_cache(file: Path) -> dict:
    try:
        cached = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) and cached.get("version") == CACHE_VERSION else {}


def _write_cache(file: Path, cached: dict) -> None:
    # Written whole then renamed: a killed run leaves the old record or the new one, never half.
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_suffix(".tmp")
        partial.write_text(json.dumps(cached, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, file)
    except OSError:
        pass  # a read-only data folder only costs the next run a parse


def _input_states(files: list[Path], contacts_file: Path | None, recorded: dict) -> dict | None:
    """Path -> file_state for every export and the contacts file; None when one cannot be read
    (the parse then says which, and how)."""
    states = {}
    try:
        for file in [*files, *([contacts_file] if contacts_file else [])]:
            states[str(file)] = file_state(file, recorded.get(str(file)))
    except OSError:
        return None
    return states


def iter_documents(path: Path, count_tokens: Callable[[str], int], max_tokens: int,
                   contacts: Path | None = None, date_order: str = "auto",
                   warn: Callable[[str], None] = settings.warn,
                   cache_dir: Path | None = None) -> Iterator[chunking.Document]:
    """One Document per chat found under `path` (a folder or one file), all its files merged.

    `max_tokens` bounds each whole chunk text; chunks are built only when `make_chunks` is called.
    With `cache_dir`, exports unchanged since the last complete run are not parsed: the chats
    recorded then are yielded, and parsed only when one must be chunked (see above).
    """
    path = Path(path).expanduser()
    whatsapp_chats.check_inputs(path, date_order)
    contacts_file = Path(contacts).expanduser() if contacts else whatsapp_chats.default_contacts(path)
    files = whatsapp_chats.find_files(path)
    key = [PARSER_VERSION, str(max_tokens), str(DEFAULT_SESSION_GAP), chunking.local_zone(), date_order,
           _parser_digest(), str(contacts_file or "")]
    record = _cache_file(cache_dir, path.resolve()) if cache_dir is not None and files else None
    cached = _read_cache(record) if record else {}
    states = _input_states(files, contacts_file, cached.get("files") or {}) if record else None

    def contents(files_states: dict | None) -> dict:
        return {name: state["sha256"] for name, state in (files_states or {}).items()}

    if states is not None and cached.get("key") == key and contents(cached.get("files")) == contents(states):
        yield from _recorded_documents(cached["documents"], path, contacts_file, date_order, count_tokens,
                                       max_tokens, warn)
        if cached.get("files") != states:
            _write_cache(record, {**cached, "files": states})  # touched, same content: skip the hash next time
        return

    failed: list[str] = []
    told = 0
    documents = []
    for chat in whatsapp_chats.iter_chats(path, contacts_file, date_order, warn, failed):
        # Before the chat they belonged to, so ingestion knows which stored chats those files
        # held: a chat merged from a file that could not be read this time keeps what is stored.
        for file in failed[told:]:
            yield chunking.unreadable_file(chunking.MESSAGES, file)
        told = len(failed)
        document = chunking.Document(
            doc_id=f"whatsapp:{chat.key}",
            source_kind=chunking.MESSAGES,
            fingerprint=_chat_fingerprint(chat, max_tokens),
            make_chunks=lambda chat=chat: indexed_chunks(chat, count_tokens, max_tokens),
            paths=tuple(dict.fromkeys(chat.paths)),
        )
        documents.append([document.doc_id, document.fingerprint, list(document.paths)])
        yield document
    for file in failed[told:]:  # files of no chat at all
        yield chunking.unreadable_file(chunking.MESSAGES, file)
    if states is not None and not failed:
        # Only a complete, clean read is recorded: a file that failed is read again next time.
        _write_cache(record, {"version": CACHE_VERSION, "key": key, "files": states, "documents": documents})


def _recorded_documents(recorded: list, path: Path, contacts_file: Path | None, date_order: str,
                        count_tokens: Callable[[str], int], max_tokens: int,
                        warn: Callable[[str], None]) -> Iterator[chunking.Document]:
    """The documents of the last complete run; the exports are parsed (once) only when one of
    them must be chunked, e.g. after --forget or into a fresh index."""
    parsed: dict[str, Chat] = {}

    def make_chunks(doc_id: str) -> list[chunking.Chunk]:
        if not parsed:
            chats = whatsapp_chats.load_chats(path, contacts_file, date_order, warn)
            parsed.update((f"whatsapp:{chat.key}", chat) for chat in chats)
        chat = parsed.get(doc_id)
        if chat is None:  # the exports changed under this run: the next run reads them anew
            raise chunking.SourceUnreadable(doc_id)
        return indexed_chunks(chat, count_tokens, max_tokens)

    for doc_id, fingerprint, paths in recorded:
        yield chunking.Document(doc_id=doc_id, source_kind=chunking.MESSAGES, fingerprint=fingerprint,
                                make_chunks=functools.partial(make_chunks, doc_id), paths=tuple(paths))


# --- command line -----------------------------------------------------------------------------

def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Print the chunks WhatsApp exports would give (dry run, no database).")
    parser.add_argument("--whatsapp", help="folder or file with exports (WHATSAPP_WORKING_PATH)")
    parser.add_argument("--contacts", help="Google Contacts CSV (WHATSAPP_CONTACTS; default contacts.csv in the folder)")
    parser.add_argument("--date-order", choices=DATE_ORDERS, help="date order of .txt exports (WHATSAPP_DATE_ORDER)")
    parser.add_argument("--embedding-model", help="model whose tokenizer sets the budget (EMBEDDING_MODEL)")
    parser.add_argument("--json", action="store_true", help="one JSON object per chunk instead of text")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    path = settings.get("WHATSAPP_WORKING_PATH", args.whatsapp)
    if not path:
        raise settings.UserError("no WhatsApp exports given; pass --whatsapp PATH or set WHATSAPP_WORKING_PATH")
    contacts = settings.get("WHATSAPP_CONTACTS", args.contacts)
    date_order = settings.get("WHATSAPP_DATE_ORDER", args.date_order) or "auto"
    whatsapp_chats.check_inputs(Path(path).expanduser(), date_order)  # before the model: a typo should fail fast
    from embedding_generator_multilingual import load_embedder

    embedder = load_embedder(args.embedding_model)
    budget = embedder.passage_token_budget
    documents = iter_documents(Path(path), embedder.count_tokens, budget, Path(contacts) if contacts else None,
                               date_order)
    chunking.preview(documents, embedder.count_tokens, args.json,
                     ("doc_id", "source", "chat_name", "people", "started_at", "ended_at"),
                     lambda chunk, tokens: f"=== {chunk.doc_id} ({tokens}/{budget} tokens)",
                     metadata_names=("message_ids",), clean=settings.terminal_safe)  # other people's text
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
