"""Index the Obsidian vault and the WhatsApp history: re-run after every new export.

    python create_and_persist_embeddings.py                       # sources from .env / environment
    python create_and_persist_embeddings.py --obsidian ~/vault --whatsapp ~/wa --json
    python create_and_persist_embeddings.py --list --source-prefix "<whatsapp>:Maria"
    python create_and_persist_embeddings.py --forget "<whatsapp>:Maria"

Incremental by content: a document (note or chat) whose fingerprint is stored is skipped
without chunking; a changed one embeds only chunks whose content hash is not stored and
deletes its stale chunks; documents gone from a source given on this run are deleted. Sources
left off the command line keep their chunks (only --prune SOURCE or --rebuild removes them).
--rebuild fills an empty schema beside the live index and swaps its tables in with one
transaction at the end: until then searches use the old index, and a failed or killed rebuild
leaves it whole (the next run drops the leftovers).

Streaming: parsing and chunking run in the main thread, embedding in one worker thread (torch
releases the GIL) and writing in another, joined by bounded queues, so memory stays flat
whatever the size of the export and the embedding model sets the pace. All writes of a
document (its new chunks by binary COPY, its stale chunks' deletion, its `documents` row, the
"done" marker) commit in one transaction, so a kill at any moment followed by a re-run ends in
the same index as an uninterrupted run, and a chat running meanwhile sees each document old or
new, never half.
"""
from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import settings
from chunking import Chunk, Document, SourceUnreadable, json_fields, local_span

if TYPE_CHECKING:  # heavy modules load only when a run needs them
    from embedding_generator_multilingual import Embedder
    from store import ForgetList, Store

SOURCES = ("obsidian", "whatsapp")
SOURCE_SETTINGS = {"obsidian": "OBSIDIAN_VAULT_PATH", "whatsapp": "WHATSAPP_WORKING_PATH"}
SOURCE_FLAGS = {"obsidian": "--obsidian", "whatsapp": "--whatsapp"}
# Chunks handed to the model in one call: the model sorts them by length, so a larger group
# wastes less on padding; also the largest piece of one document in flight.
DEFAULT_EMBED_GROUP = 128
# Queue depth, in items (an item is at most one embed group of one document).
DEFAULT_QUEUE_ITEMS = 64
# Commit at the first document boundary after this many written chunks or seconds.
DEFAULT_COMMIT_CHUNKS = 256
DEFAULT_COMMIT_SECONDS = 5.0
# ANALYZE after a run that changed more than this fraction of the rows.
ANALYZE_FRACTION = 0.10
LOCK_WAIT_MESSAGE = "another ingestion is running; waiting for it to finish"
NOTHING_CONFIGURED = (
    "nothing to index: set OBSIDIAN_VAULT_PATH and/or WHATSAPP_WORKING_PATH (environment or .env, "
    "see .env.example), or pass --obsidian PATH / --whatsapp PATH"
)
_POLL_SECONDS = 0.1
# In the data folder: what the WhatsApp exports held at the last complete read, so unchanged
# exports are not parsed again (whatsapp_to_embeddings.iter_documents).
WHATSAPP_CACHE_FOLDER = "cache"


# ---------------------------------------------------------------- results and progress


@dataclass
class Summary:
    """What one run did; `--json` prints it as one object."""

    # Every document of the given sources is one of new, changed, unchanged, kept or skipped.
    documents: int = 0  # documents the given sources yielded (and those of files unreadable now)
    documents_new: int = 0  # indexed for the first time
    documents_changed: int = 0  # re-indexed because edited
    documents_unchanged: int = 0
    documents_deleted: int = 0  # vanished from a given source, or pruned
    documents_kept: int = 0  # their file could not be read this run: stored chunks left as they were
    documents_skipped: int = 0  # not indexed: unreadable and never stored, a repeated id, or the
    # readable part of a chat whose other file is unreadable now (its stored copy is kept)
    documents_missing: int = 0  # gone from a source that suddenly looks empty: kept, with a warning
    chunks_total: int = 0  # chunks in the index after the run
    chunks_embedded: int = 0
    chunks_reused: int = 0  # written with the stored vector of the same text (a moved note)
    chunks_forgotten: int = 0  # kept out by the forget list (--forget)
    chunks_deleted: int = 0
    seconds: float = 0.0
    chunks_per_second: float = 0.0
    sources: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    rebuilt: bool = False
    vector_index_rebuilt: bool = False
    embed_seconds: float = 0.0  # inside the model: the rest of `seconds` is what it did not hide
    index_seconds: float = 0.0  # HNSW build / ANALYZE at the end

    def line(self) -> str:
        """The one-line summary printed at the end of a run."""
        return (
            f"{self.documents} documents ({self.documents_new} new, {self.documents_changed} changed, "
            f"{self.documents_unchanged} unchanged"
            + (f", {self.documents_kept} kept as stored (unreadable now)" if self.documents_kept else "")
            + (f", {self.documents_skipped} skipped" if self.documents_skipped else "")
            + f"; {self.documents_deleted} removed"
            + (f", {self.documents_missing} missing but kept" if self.documents_missing else "")
            + "); "
            f"{self.chunks_embedded} chunks embedded, "
            + (f"{self.chunks_reused} reused, " if self.chunks_reused else "")
            + f"{self.chunks_deleted} deleted, "
            f"{self.chunks_total} in the index; {self.seconds:.1f} s"
            + (f" ({self.chunks_per_second:.1f} chunks/s)" if self.chunks_embedded else "")
        )


class Progress:
    """tqdm bars per source (documents parsed, chunks embedded) on stderr; silent when disabled.

    Called from the three pipeline threads; tqdm serialises the drawing.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bars: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def _bar(self, source: str, kind: str):
        key = (source, kind)
        if key not in self._bars and self.enabled:
            from tqdm import tqdm

            label = f"{source} documents" if kind == "docs" else f"{source} chunks embedded"
            self._bars[key] = tqdm(
                desc=label, unit="doc" if kind == "docs" else "chunk", total=None if kind == "docs" else 0,
                position=len(self._bars), file=sys.stderr, dynamic_ncols=True, leave=True,
            )
        return self._bars.get(key)

    def parsed(self, source: str) -> None:
        with self._lock:
            bar = self._bar(source, "docs")
            if bar is not None:
                bar.update(1)

    def queued(self, source: str, count: int) -> None:
        """`count` more chunks will be embedded: the chunks bar's total grows (its ETA follows)."""
        if not count:
            return
        with self._lock:
            bar = self._bar(source, "chunks")
            if bar is not None:
                bar.total += count
                bar.refresh()

    def embedded(self, source: str, count: int) -> None:
        with self._lock:
            bar = self._bar(source, "chunks")
            if bar is not None:
                bar.update(count)

    def warn(self, message: str) -> None:
        """A warning that does not tear the bars."""
        if self._bars:
            from tqdm import tqdm

            tqdm.write(f"warning: {message}", file=sys.stderr)
        else:
            settings.warn(message)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


def note(message: str) -> None:
    """One `note: ...` line on stderr."""
    print(f"note: {message}", file=sys.stderr)


# ---------------------------------------------------------------- opening the index


def _table_exists(store: "Store", name: str) -> bool:
    exists = store.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
    store.conn.commit()
    return bool(exists)


def _is_empty(store: "Store") -> bool:
    empty = store.conn.execute("SELECT NOT EXISTS (SELECT 1 FROM chunks)").fetchone()[0]
    store.conn.commit()
    return bool(empty)


def acquire_writer_lock(store: "Store", wait: bool = True, say: Callable[[str], None] = note) -> None:
    """Become the only writer: take the advisory lock, waiting (with a message) unless `wait` is off."""
    if store.try_writer_lock():
        return
    if not wait:
        raise settings.UserError(
            "another ingestion is running on this index; let it finish, or drop --no-wait to wait for it"
        )
    say(LOCK_WAIT_MESSAGE)
    store.writer_lock()


def open_index(store: "Store", embedder: "Embedder", rebuild: bool = False, wait: bool = True,
               say: Callable[[str], None] = note) -> None:
    """Lock, and create or check the schema for `embedder`'s model.

    `rebuild`: the schema is created empty beside the live index, which searches keep using
    until `finish_index` swaps the new one in; what an interrupted rebuild left is dropped first.
    """
    acquire_writer_lock(store, wait, say)
    store.drop_unfinished_rebuild()
    if rebuild:
        store.begin_rebuild()
    elif _table_exists(store, "chunks") and not store.vector_index_exists():
        # A bulk load was interrupted before its index build: build it now with enough memory
        # (ensure_schema would build it with the server's small default).
        store.ensure_vector_index()
    folder = getattr(embedder, "folder", None)
    info = None if rebuild else store.index_info()  # a rebuild's new index takes the model's own size
    if info is not None:
        # The index's own model (same name, or same folder however spelt) has the index's
        # dimension: no need to load it to learn that. Its real size is checked when it loads.
        try:
            store.ensure_schema(embedder.name, info.dimension, folder)
        except settings.UserError:
            pass  # another model: the refusal below names its real dimension
        else:
            expect = getattr(embedder, "expect_dimension", None)
            if expect is not None:
                expect(info.dimension)
            return
    store.ensure_schema(embedder.name, embedder.dimension, folder)


def finish_index(store: "Store", sources: Iterable[str] = (), prune: Iterable[str] = ()) -> None:
    """End of a run: a rebuild's new index replaces the live one, in one transaction, unless a
    source of it lost what `looks_lost` calls a mistake (named in `prune`: however much)."""
    if not store.search_path:
        return
    for name in sources:
        if name in prune:
            continue
        live, rebuilt, missing = store.rebuild_losses(f"{name}:")
        if looks_lost(live, rebuilt, missing):
            store.abandon_rebuild()
            raise settings.UserError(
                f"the rebuild was not swapped in: {name} gave {rebuilt} documents and {missing} of the {live} "
                "in the index are missing (a cloud folder not synced yet or a drive not mounted looks like this); "
                f"the old index is kept whole. If they were really removed, re-run with --rebuild --prune {name} "
                f"beside {SOURCE_FLAGS[name]} PATH")
    store.finish_rebuild()


# ---------------------------------------------------------------- the pipeline


@dataclass
class _Item:
    """One unit through the queues: a piece of one document's new chunks, or deletions."""

    source: str
    doc_id: str = ""
    chunks: list[Chunk] = field(default_factory=list)
    document: Document | None = None  # set on the piece that completes the document
    chunk_count: int = 0
    stale: set[str] = field(default_factory=set)
    vanished: list[str] = field(default_factory=list)  # doc ids to delete
    reused: list[tuple[Chunk, object]] = field(default_factory=list)  # new chunks with a stored vector
    forgotten: list[tuple[str, str]] = field(default_factory=list)  # (rule, text hash) kept out


_DONE = object()


class _Stopped(Exception):
    """Another pipeline thread failed; this one stops quietly."""


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return q.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue


def unique_chunks(chunks: Iterable[Chunk]) -> list[Chunk]:
    """Chunks with a repeated content hash dropped (same text twice in one document, e.g. two
    identical short messages): the index holds each (document, text) once."""
    seen: set[str] = set()
    kept = []
    for chunk in chunks:
        digest = chunk.content_hash
        if digest not in seen:
            seen.add(digest)
            kept.append(chunk)
    return kept


class _Pipeline:
    """Main thread: parse and diff. Embed thread: vectors. Write thread: COPY and commit."""

    def __init__(self, store: "Store", embedder, progress: Progress, summary: Summary,
                 embed_group: int, queue_items: int, commit_chunks: int, commit_seconds: float):
        self.store = store
        self.embedder = embedder
        self.progress = progress
        self.summary = summary
        self.embed_group = max(1, embed_group)
        self.commit_chunks = commit_chunks
        self.commit_seconds = commit_seconds
        self.to_embed: queue.Queue = queue.Queue(maxsize=queue_items)
        self.to_write: queue.Queue = queue.Queue(maxsize=queue_items)
        self.stop = threading.Event()
        self.allow_mass_deletion: set[str] = set()  # sources whose vanished documents go however many
        from store import ForgetList

        self.forget_list = ForgetList()  # what --forget keeps out, read when the run starts
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._guard, args=(self._embed_loop,), name="embed", daemon=True),
            threading.Thread(target=self._guard, args=(self._write_loop,), name="write", daemon=True),
        ]

    # -- threads

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except _Stopped:
            pass
        except BaseException as err:  # re-raised in the main thread by finish()
            self.errors.append(err)
            self.stop.set()

    def _embed_loop(self) -> None:
        done = False
        while not done:
            first = _get(self.to_embed, self.stop)
            if first is _DONE:
                break
            group, size = [first], len(first.chunks)
            # Take whatever else is already waiting, up to one group: full batches when the
            # parser is ahead, no waiting when it is behind.
            while size < self.embed_group:
                try:
                    nxt = self.to_embed.get_nowait()
                except queue.Empty:
                    break
                if nxt is _DONE:
                    done = True
                    break
                group.append(nxt)
                size += len(nxt.chunks)
            texts = [chunk.text for item in group for chunk in item.chunks]
            began = time.perf_counter()
            vectors = self.embedder.embed_passages(texts) if texts else None
            self.summary.embed_seconds += time.perf_counter() - began
            start = 0
            for item in group:
                count = len(item.chunks)
                _put(self.to_write, (item, vectors[start:start + count] if count else None), self.stop)
                start += count
                self.progress.embedded(item.source, count)
        _put(self.to_write, _DONE, self.stop)

    def _write_loop(self) -> None:
        store, summary = self.store, self.summary
        pending_chunks, opened_at = 0, None
        try:
            while True:
                entry = _get(self.to_write, self.stop)
                if entry is _DONE:
                    store.conn.commit()
                    return
                item, vectors = entry
                if opened_at is None:
                    opened_at = time.monotonic()
                if item.vanished:
                    summary.chunks_deleted += store.delete_documents(item.vanished)
                    summary.documents_deleted += len(item.vanished)
                if item.chunks or item.reused:  # one COPY: embedded and reused vectors alike
                    rows = item.chunks + [chunk for chunk, _ in item.reused]
                    store.copy_chunks(rows, [*(vectors if item.chunks else ()), *(v for _, v in item.reused)])
                    summary.chunks_embedded += len(item.chunks)
                    summary.chunks_reused += len(item.reused)
                    pending_chunks += len(rows)
                if item.document is not None:
                    doc = item.document
                    for rule in {rule for rule, _ in item.forgotten}:
                        store.record_forgotten(rule, [(text_hash, doc.doc_id) for r, text_hash in item.forgotten
                                                      if r == rule])
                    summary.chunks_deleted += store.delete_chunks(doc.doc_id, item.stale)
                    store.record_document(doc.doc_id, doc.source_kind, doc.fingerprint, item.chunk_count, doc.paths)
                    pending_chunks += 1
                    # Commit only at a document boundary: the documents row is the "done" marker.
                    if pending_chunks >= self.commit_chunks or time.monotonic() - opened_at >= self.commit_seconds:
                        store.conn.commit()
                        pending_chunks, opened_at = 0, None
                elif item.vanished:
                    store.conn.commit()
                    pending_chunks, opened_at = 0, None
        except BaseException:
            # Uncommitted work is whole documents at most (plus a part of one): dropping it
            # leaves the index as the last commit left it.
            store.conn.rollback()
            raise

    # -- main thread

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def feed_source(self, name: str, documents: Iterable[Document], reader: "Store") -> None:
        """Parse one source, queue its changed documents, then queue the deletion of vanished ones."""
        prefix = f"{name}:"
        stored = reader.stored_documents(prefix)  # doc_id -> (fingerprint, recorded paths)
        unreadable: set[str] = set()  # files that exist but could not be read this run
        kept_files: set[str] = set()  # every file of the stored documents built from those files
        seen: set[str] = set()
        summary = self.summary

        def from_unreadable_file(doc_id: str) -> bool:
            return any(path in unreadable for path in stored[doc_id][1])

        def shares_a_file_with_a_kept_document(document: Document) -> bool:
            # A chat merged from a readable and an unreadable file is kept whole; the readable
            # file's messages alone must not come back as a second copy under another id.
            return any(path in kept_files for path in document.paths)

        def count(kind: str) -> None:
            summary.documents += 1
            setattr(summary, f"documents_{kind}", getattr(summary, f"documents_{kind}") + 1)

        for document in documents:
            self.progress.parsed(name)
            if document.unreadable:
                if document.doc_id:
                    seen.add(document.doc_id)
                    count("kept" if document.doc_id in stored else "skipped")
                elif document.paths:
                    unreadable.update(document.paths)
                    kept_files = {path for doc_id, (_, paths) in stored.items() if from_unreadable_file(doc_id)
                                  for path in paths}
                continue
            doc_id = document.doc_id
            where = ", ".join(document.paths) or "?"
            if not doc_id.startswith(prefix):
                self.progress.warn(f"document {doc_id!r} from {where} is not a {name} document; skipped")
                count("skipped")
                continue
            if doc_id in seen:
                self.progress.warn(f"document {doc_id} ({where}) appears twice in this run; kept the first")
                count("skipped")
                continue
            seen.add(doc_id)
            if doc_id in stored and stored[doc_id][0] == document.fingerprint:
                count("unchanged")
                continue
            if doc_id in stored and from_unreadable_file(doc_id):
                count("kept")
                continue
            if shares_a_file_with_a_kept_document(document):
                count("skipped")
                continue
            try:
                chunks = unique_chunks(document.make_chunks())
            except SourceUnreadable:
                count("kept" if doc_id in stored else "skipped")
                continue
            count("changed" if doc_id in stored else "new")
            forgotten: list[tuple[str, str]] = []
            if self.forget_list:
                chunks, forgotten = keep_out_forgotten(chunks, self.forget_list)
                summary.chunks_forgotten += len(forgotten)
            old = reader.stored_hashes(doc_id)
            fresh = [chunk for chunk in chunks if chunk.content_hash not in old]
            stale = old - {chunk.content_hash for chunk in chunks}
            fresh, reused = split_known_vectors(fresh, reader)
            self.progress.queued(name, len(fresh))
            pieces = [fresh[i:i + self.embed_group] for i in range(0, len(fresh), self.embed_group)] or [[]]
            for piece in pieces[:-1]:
                _put(self.to_embed, _Item(name, doc_id, piece), self.stop)
            _put(self.to_embed, _Item(name, doc_id, pieces[-1], document, len(chunks), stale, reused=reused,
                                      forgotten=forgotten), self.stop)
        # The source was read to its end: whatever it no longer yields is gone from it.
        vanished = sorted(doc_id for doc_id in set(stored) - seen if not from_unreadable_file(doc_id))
        kept_unseen = len(set(stored) - seen) - len(vanished)  # stored from a file unreadable now
        summary.documents_kept += kept_unseen
        summary.documents += kept_unseen
        if vanished and name not in self.allow_mass_deletion and looks_lost(len(stored), len(seen), len(vanished)):
            # An unsynced cloud folder or an unmounted drive looks like this: report, never delete.
            self.summary.documents_missing += len(vanished)
            self.progress.warn(
                f"{name}: {len(vanished)} of the {len(stored)} documents stored from it are missing this run"
                + (" (it yielded no documents at all)" if not seen else "")
                + f"; kept them. If they were really removed, re-run with --prune {name} "
                f"beside {SOURCE_FLAGS[name]} PATH to remove them"
            )
            vanished = []
        if vanished:
            _put(self.to_embed, _Item(name, vanished=vanished), self.stop)

    def finish(self, failed: bool) -> None:
        """Drain and join the threads; re-raise the first worker error."""
        if failed:
            self.stop.set()
        else:
            try:
                _put(self.to_embed, _DONE, self.stop)
            except _Stopped:
                pass
        for thread in self.threads:
            while thread.is_alive():
                thread.join(timeout=_POLL_SECONDS)
        if self.errors and not failed:
            raise self.errors[0]


def keep_out_forgotten(chunks: list[Chunk], forget_list: "ForgetList") -> tuple[list[Chunk], list[tuple[str, str]]]:
    """(chunks to index, [(rule, text hash)] of those the forget list keeps out)."""
    kept, forgotten = [], []
    for chunk in chunks:
        rule = forget_list.rule_for(chunk)
        if rule is None:
            kept.append(chunk)
        else:
            forgotten.append((rule, chunk.text_hash))
    return kept, forgotten


def split_known_vectors(chunks: list[Chunk], reader: "Store") -> tuple[list[Chunk], list[tuple[Chunk, object]]]:
    """(chunks to embed, [(chunk, stored vector)]): a text already stored anywhere in the index
    (a note moved to another folder, a passage whose tags changed) takes its stored vector."""
    known = reader.vectors_by_text(chunk.text_hash for chunk in chunks) if chunks else {}
    if not known:
        return chunks, []
    to_embed = [chunk for chunk in chunks if chunk.text_hash not in known]
    return to_embed, [(chunk, known[chunk.text_hash]) for chunk in chunks if chunk.text_hash in known]


def looks_lost(stored: int, yielded: int, vanished: int) -> bool:
    """True when a source's vanished documents look like a mistake, not deletions: it yielded
    nothing, or more than half of what was stored went at once. One vanished note is a deletion.

    `looks_lost(51, 0, 51)`, `looks_lost(10, 4, 6)` are True; `looks_lost(2, 1, 1)` is False.
    """
    if vanished == 0:
        return False
    return yielded == 0 or (vanished > 1 and vanished * 2 > stored)


def prune_sources(store: "Store", names: Iterable[str]) -> tuple[int, int]:
    """Delete every document and chunk of the named sources; returns (documents, chunks)."""
    documents = chunks = 0
    with store.transaction():
        for name in names:
            prefix = f"{name}:"
            chunks += store.conn.execute("DELETE FROM chunks WHERE starts_with(doc_id, %s)", (prefix,)).rowcount
            documents += store.conn.execute("DELETE FROM documents WHERE starts_with(doc_id, %s)", (prefix,)).rowcount
    return documents, chunks


def ingest(store: "Store", embedder, sources: dict[str, Iterable[Document]], prune: Iterable[str] = (),
           progress: Progress | None = None, embed_group: int = DEFAULT_EMBED_GROUP,
           queue_items: int = DEFAULT_QUEUE_ITEMS, commit_chunks: int = DEFAULT_COMMIT_CHUNKS,
           commit_seconds: float = DEFAULT_COMMIT_SECONDS) -> Summary:
    """Bring the index in line with `sources` ({"obsidian": documents, ...}); returns a Summary.

    The store must be open with its schema in place (`open_index`). Each given source's
    vanished documents are deleted; sources not given are left alone unless named in `prune`.
    Documents are chunked in this thread while the model encodes in another: parsers must count
    tokens with `parser_token_counter(embedder)`, never the model's own tokenizer.
    """
    from store import Store

    started = time.monotonic()
    progress = progress or Progress(enabled=False)
    summary = Summary(sources=list(sources), pruned=sorted(set(prune)))
    # --prune SOURCE beside SOURCE's path: read it, and let it delete however much vanished.
    # Alone: remove everything stored from SOURCE.
    wiped = [name for name in summary.pruned if name not in sources]
    if wiped:
        pruned_docs, pruned_chunks = prune_sources(store, wiped)
        summary.documents_deleted += pruned_docs
        summary.chunks_deleted += pruned_chunks
    # Into an empty table, COPY without the HNSW index and build it once at the end: much
    # faster than growing the graph row by row.
    bulk = bool(sources) and _is_empty(store)
    if bulk:
        store.drop_vector_index()

    pipeline = _Pipeline(store, embedder, progress, summary, embed_group, queue_items, commit_chunks, commit_seconds)
    pipeline.allow_mass_deletion = set(summary.pruned) & set(sources)
    pipeline.forget_list = store.forget_list()
    reader = Store(store.url, store.search_path)  # a rebuild's reads see the new tables
    reader.conn.autocommit = True  # reads must hold no locks that DDL or the writer could wait on
    failed = True
    try:
        pipeline.start()
        for name, documents in sources.items():
            pipeline.feed_source(name, documents, reader)
        failed = False
    except _Stopped:
        failed = False  # a worker failed: finish() re-raises its error
    finally:
        pipeline.finish(failed)
        reader.close()
        progress.close()

    summary.chunks_total = store.count_chunks()
    written = summary.chunks_embedded + summary.chunks_reused
    rows_before = summary.chunks_total - written + summary.chunks_deleted
    began = time.perf_counter()
    if bulk or not store.vector_index_exists():
        store.ensure_vector_index()  # also ANALYZEs
        summary.vector_index_rebuilt = True
    elif written + summary.chunks_deleted > ANALYZE_FRACTION * max(rows_before, 1):
        store.conn.execute("ANALYZE chunks")
        store.conn.commit()
    summary.index_seconds = round(time.perf_counter() - began, 3)
    summary.embed_seconds = round(summary.embed_seconds, 3)
    summary.seconds = round(time.monotonic() - started, 3)
    if summary.chunks_embedded and summary.seconds:
        summary.chunks_per_second = round(summary.chunks_embedded / summary.seconds, 2)
    return summary


# ---------------------------------------------------------------- sources from settings


def configured_sources(args: argparse.Namespace, say: Callable[[str], None] = note) -> dict[str, Path]:
    """{source: path} for each source whose setting or flag is set; a missing path is an error."""
    paths: dict[str, Path] = {}
    for name in SOURCES:
        setting = SOURCE_SETTINGS[name]
        flag_value = getattr(args, name)
        if name in args.prune and not flag_value:
            continue  # pruned whole on this run, so not read from the settings either
        value = settings.get(setting, flag_value)
        if not value:
            say(f"{name} skipped: {setting} is not set (pass {SOURCE_FLAGS[name]} PATH or set it in .env)")
            continue
        path = Path(value).expanduser()
        if not path.exists():
            raise settings.UserError(
                f"{setting} {path} does not exist; fix {SOURCE_FLAGS[name]} or {setting} "
                "(environment or .env), or unset it to skip this source"
            )
        if name == "obsidian" and not path.is_dir():
            raise settings.UserError(
                f"{setting} {path} is not a folder; point {SOURCE_FLAGS[name]} or {setting} at the vault "
                "folder (the one holding .obsidian/), not at a note"
            )
        paths[name] = path
    if "whatsapp" in paths:
        contacts_path(args)  # checked now: nothing may be dropped before every argument is known good
    return paths


def contacts_path(args: argparse.Namespace) -> Path | None:
    """The Google Contacts CSV in force (--contacts / WHATSAPP_CONTACTS), or None; a missing file is an error."""
    contacts = settings.get("WHATSAPP_CONTACTS", args.contacts)
    path = Path(contacts).expanduser() if contacts else None
    if path is not None and not path.is_file():
        raise settings.UserError(
            f"WHATSAPP_CONTACTS {path} does not exist; fix --contacts or WHATSAPP_CONTACTS, "
            "or unset it to use contacts.csv beside the export"
        )
    return path


def build_sources(paths: dict[str, Path], args: argparse.Namespace, embedder,
                  warn: Callable[[str], None] = settings.warn) -> dict[str, Iterable[Document]]:
    """The document iterators of the configured sources, budgeted in `embedder`'s tokens."""
    sources: dict[str, Iterable[Document]] = {}
    budget = embedder.passage_token_budget
    count_tokens = embedder.count_tokens  # thread-safe: its own tokenizer copy
    if "obsidian" in paths:
        import obsidian_to_embeddings

        # The preview script's parser: what it shows excluded is what ingestion keeps out.
        exclude = obsidian_to_embeddings.exclude_globs(args.exclude)
        sources["obsidian"] = obsidian_to_embeddings.iter_documents(
            paths["obsidian"], count_tokens, budget, exclude=tuple(exclude), warn=warn
        )
    if "whatsapp" in paths:
        import whatsapp_to_embeddings

        sources["whatsapp"] = whatsapp_to_embeddings.iter_documents(
            paths["whatsapp"], count_tokens, budget, contacts=contacts_path(args),
            date_order=settings.get("WHATSAPP_DATE_ORDER", args.date_order), warn=warn,
            cache_dir=settings.data_dir(getattr(args, "data_dir", None)) / WHATSAPP_CACHE_FOLDER,
        )
    return sources


# ---------------------------------------------------------------- --list and --forget


def _span(started: datetime | None, ended: datetime | None) -> str:
    span = local_span(started, ended)
    if span is None:
        return "-"
    first, last = span
    text = f"{first:%Y-%m-%d %H:%M}"
    if last != first:
        text += f" .. {last:%Y-%m-%d %H:%M}" if last.date() != first.date() else f"-{last:%H:%M}"
    return text


def list_index(store: "Store", source_prefix: str = "", as_json: bool = False, out=None) -> int:
    """Print every stored chunk (source, doc id, time span, text), one per line; returns the count.

    Streams through a server-side cursor, so a big index costs no memory.
    """
    out = out or sys.stdout
    if not _table_exists(store, "chunks"):
        return 0
    count = 0
    with store.conn.transaction():
        with store.conn.cursor(name="personal_llm_list") as cur:
            cur.itersize = 500
            cur.execute(
                """SELECT source, doc_id, started_at, ended_at, content, title, heading, chat_name,
                          people, tags, source_kind
                   FROM chunks WHERE starts_with(source, %s)
                   ORDER BY source, doc_id, started_at NULLS FIRST, id""",
                (source_prefix,),
            )
            for source, doc_id, started, ended, content, title, heading, chat, people, tags, kind in cur:
                count += 1
                if as_json:
                    chunk = Chunk(content, source, doc_id, kind, title=title, heading=heading, chat_name=chat,
                                  people=people, tags=tags, started_at=started, ended_at=ended)
                    shown = ("source", "doc_id", "source_kind", "started_at", "ended_at", "title", "heading",
                             "chat_name", "people", "tags")
                    record = {**json_fields(chunk, shown), "text": content}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                else:
                    one_line = content.replace("\\", "\\\\").replace("\n", "\\n")
                    # Other people's text goes to the terminal: no escape sequences in it.
                    line = f"{source}\t{doc_id}\t{_span(started, ended)}\t{one_line}"
                    out.write(settings.terminal_safe(line) + "\n")
    return count


def forget(store: "Store", source_prefix: str) -> tuple[int, int]:
    """Forget for good: add `source_prefix` to the forget list and delete the chunks it covers
    (see `Store.forget`); later runs keep them out while the source still holds them.
    Returns (chunks, documents)."""
    if not source_prefix:
        raise settings.UserError("--forget needs a non-empty source prefix, e.g. \"<whatsapp>:Maria\"; "
                                 "use --rebuild to empty the whole index")
    return store.forget(source_prefix)


def unforget(store: "Store", source_prefix: str) -> int:
    """Take `source_prefix` off the forget list; returns how many documents the next run reads again."""
    documents = store.unforget(source_prefix)
    if documents is None:
        raise settings.UserError(f"{source_prefix!r} is not on the forget list; "
                                 "--list --forgotten shows what is (give the prefix exactly)")
    return documents


def list_forgotten(store: "Store", as_json: bool = False, out=None) -> int:
    """Print the forget list, one rule per line (prefix, when, texts kept out); returns the count."""
    out = out or sys.stdout
    rules = store.forget_rules()
    for prefix, when, texts in rules:
        if as_json:
            out.write(json.dumps({"prefix": prefix, "forgotten_at": when.isoformat(), "texts": texts},
                                 ensure_ascii=False) + "\n")
        else:
            out.write(f"{prefix}\t{when.astimezone():%Y-%m-%d %H:%M}\t{texts} passages kept out\n")
    return len(rules)


# ---------------------------------------------------------------- command line


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Index the Obsidian vault and WhatsApp history (incremental: re-run after every export)."
    )
    parser.add_argument("--obsidian", metavar="PATH", help="Obsidian vault folder (OBSIDIAN_VAULT_PATH)")
    parser.add_argument("--whatsapp", metavar="PATH",
                        help="folder or file with result.json and/or .txt/.zip exports (WHATSAPP_WORKING_PATH)")
    parser.add_argument("--contacts", metavar="FILE", help="Google Contacts CSV (WHATSAPP_CONTACTS)")
    parser.add_argument("--exclude", metavar="GLOB", action="append", default=[],
                        help="vault paths to keep out, comma-separated and/or repeated (OBSIDIAN_EXCLUDE)")
    parser.add_argument("--date-order", choices=("auto", "dayfirst", "monthfirst"),
                        help="date order of WhatsApp .txt exports (WHATSAPP_DATE_ORDER)")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the whole index anew beside the old one, swapped in at the end (a failed "
                             "rebuild leaves the old one whole); also the fix after changing EMBEDDING_MODEL")
    parser.add_argument("--prune", metavar="SOURCE", action="append", default=[], choices=SOURCES,
                        help="delete everything indexed from SOURCE (obsidian or whatsapp), repeatable; beside "
                             "SOURCE's path (--obsidian/--whatsapp): delete whatever vanished from it, "
                             "however much (a source that lost most of its documents is otherwise kept)")
    parser.add_argument("--forget", metavar="SOURCE_PREFIX",
                        help='delete the chunks whose source starts with this, e.g. "<whatsapp>:Maria", and keep '
                             'them out of later runs too (a forget list, undone by --unforget), and stop')
    parser.add_argument("--unforget", metavar="SOURCE_PREFIX",
                        help="take a prefix off the forget list (--list --forgotten shows it); the next run "
                             "indexes its passages again, and stop")
    parser.add_argument("--forgotten", action="store_true",
                        help="with --list: print the forget list instead of the passages")
    parser.add_argument("--list", action="store_true",
                        help="print what the index holds, one chunk per line (source, document, time span, text)")
    parser.add_argument("--source-prefix", default="", metavar="PREFIX",
                        help='with --list: only sources starting with this, e.g. "<obsidian>:Journal/"')
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON object (with --list: one JSON object per chunk)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes (warnings and errors stay)")
    parser.add_argument("--no-wait", action="store_true",
                        help="exit with an error instead of waiting when another ingestion is running")
    parser.add_argument("--database-url", help="PostgreSQL URL (DATABASE_URL); unset: the embedded server")
    parser.add_argument("--data-dir", help="data folder of the embedded server (PERSONAL_LLM_DATA_DIR)")
    parser.add_argument("--embedding-model", help="hub id or folder (EMBEDDING_MODEL)")
    parser.add_argument("--device", help="cpu, cuda or mps (EMBEDDING_DEVICE)")
    parser.add_argument("--batch-size", type=int, help="texts per embedding batch (EMBEDDING_BATCH_SIZE)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    say = (lambda message: None) if args.quiet else note
    import store

    try:
        return run(args, say)
    except Exception as err:
        if not store.is_database_error(err):
            raise
        # Every write is in a transaction that rolled back: the index is as the last commit left it.
        raise settings.UserError(
            f"{store.database_error_message(err)}; the index was left as the last completed "
            "documents left it. Fix the database (space, permissions, server) and re-run to finish."
        ) from None


def run(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """The work behind `main`, once the arguments are parsed."""
    from store import open_store

    if args.list and args.forgotten:
        with open_store(args.database_url, args.data_dir) as db:
            count = list_forgotten(db, as_json=args.json)
        if not count and not args.json:
            say("nothing is on the forget list")
        return 0
    if args.unforget is not None:
        with open_store(args.database_url, args.data_dir) as db:
            acquire_writer_lock(db, not args.no_wait, say)
            documents = unforget(db, args.unforget)
        if args.json:
            print(json.dumps({"unforgotten": args.unforget, "documents_to_read_again": documents}))
        else:
            print(f"{args.unforget!r} is off the forget list; the next ingestion reads {documents} documents again")
        return 0
    if args.list:
        with open_store(args.database_url, args.data_dir) as db:
            count = list_index(db, args.source_prefix, as_json=args.json)
        if not count and not args.json:
            say("nothing stored" + (f" under {args.source_prefix!r}" if args.source_prefix else ""))
        return 0
    if args.forget is not None:
        with open_store(args.database_url, args.data_dir) as db:
            acquire_writer_lock(db, not args.no_wait, say)
            chunks, documents = forget(db, args.forget)
        if args.json:
            print(json.dumps({"forgotten_chunks": chunks, "forgotten_documents": documents}))
        else:
            print(f"forgot {chunks} chunks of {documents} documents under {args.forget!r}")
        say("later runs keep them out too, while the export or vault still holds them; "
            f'--unforget "{args.forget}" lets them back')
        return 0

    paths = configured_sources(args, say)
    if not paths and not args.prune and not args.rebuild:
        raise settings.UserError(NOTHING_CONFIGURED)

    if paths:
        # Download the embedder (if missing) before the database is created or touched: a run
        # that cannot get its model leaves the data folder as it was. Loading it comes later.
        settings.fetch_models([(settings.get("EMBEDDING_MODEL", args.embedding_model), "EMBEDDING_MODEL",
                                "embedding model")])
    with open_store(args.database_url, args.data_dir) as db:
        if not paths:  # only pruning or wiping: no model needed
            acquire_writer_lock(db, not args.no_wait, say)
            summary = Summary(pruned=sorted(set(args.prune)), rebuilt=args.rebuild)
            if args.rebuild:
                db.drop_all()
            elif db.index_info() is not None:
                summary = ingest(db, None, {}, prune=args.prune)
            summary.chunks_total = db.count_chunks()
        else:
            from embedding_generator_multilingual import load_embedder

            embedder = load_embedder(args.embedding_model, args.device, args.batch_size)
            open_index(db, embedder, rebuild=args.rebuild, wait=not args.no_wait, say=say)
            progress = Progress(enabled=not args.quiet and sys.stderr.isatty())
            sources = build_sources(paths, args, embedder, warn=progress.warn)
            summary = ingest(db, embedder, sources, prune=args.prune, progress=progress)
            finish_index(db, sources, args.prune)
            summary.rebuilt = args.rebuild
    if args.json:
        print(json.dumps(asdict(summary)))
    elif not args.quiet:
        print(summary.line())
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
