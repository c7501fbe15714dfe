"""The ingestion pipeline: one source's documents in, the index's rows out, and what a run did.

Parsing and chunking run in the main thread, embedding in one worker thread (torch releases
the GIL) and writing in another, joined by bounded queues, so memory stays flat whatever the
size of the export and the embedding model sets the pace. All writes of a document (its new
chunks by binary COPY, its stale chunks' deletion, its `documents` row, the "done" marker)
commit in one transaction, so a kill at any moment followed by a re-run ends in the same index
as an uninterrupted run, and a chat running meanwhile sees each document old or new, never half.
create_and_persist_embeddings.ingest drives it.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import settings
from chunking import Chunk, Document, SourceUnreadable

if TYPE_CHECKING:  # the store (and numpy behind it) loads only when a run needs it
    from store import Store
    from store_values import ForgetList

SOURCES = ("obsidian", "whatsapp")
SOURCE_SETTINGS = {"obsidian": "OBSIDIAN_VAULT_PATH", "whatsapp": "WHATSAPP_WORKING_PATH"}
SOURCE_FLAGS = {"obsidian": "--obsidian", "whatsapp": "--whatsapp"}
_POLL_SECONDS = 0.1


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
    speaker_vectors: int = 0  # chat chunks' per-speaker vectors embedded (speaker_vectors.py)
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
            + (f"{self.speaker_vectors} speaker vectors, " if self.speaker_vectors else "")
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
        """One more document of `source` read."""
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
        """`count` more chunks of `source` embedded."""
        with self._lock:
            bar = self._bar(source, "chunks")
            if bar is not None:
                bar.update(count)

    def advanced(self, source: str, done: int, total: int) -> None:
        """`done` of `total` chunks of `source` embedded (a step that knows its total at the start)."""
        with self._lock:
            bar = self._bar(source, "chunks")
            if bar is not None:
                bar.total, bar.n = total, done
                bar.refresh()

    def warn(self, message: str) -> None:
        """A warning that does not tear the bars."""
        if self._bars:
            from tqdm import tqdm

            tqdm.write(f"warning: {message}", file=sys.stderr)
        else:
            settings.warn(message)

    def close(self) -> None:
        """Close the bars (they stay on screen)."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


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


class Stopped(Exception):
    """Another pipeline thread failed; this one stops quietly."""


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise Stopped
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise Stopped
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


@dataclass
class _SourceRead:
    """What reading one source has met so far, against what the index holds from it."""

    name: str
    stored: dict[str, tuple[str, tuple[str, ...]]]  # doc_id -> (fingerprint, recorded paths)
    seen: set[str] = field(default_factory=set)
    unreadable: set[str] = field(default_factory=set)  # files that exist but could not be read this run
    kept_files: set[str] = field(default_factory=set)  # every file of the stored documents built from those

    @property
    def prefix(self) -> str:
        return f"{self.name}:"

    def from_unreadable_file(self, doc_id: str) -> bool:
        """Whether a stored document was built from a file unreadable this run."""
        return any(path in self.unreadable for path in self.stored[doc_id][1])

    def shares_a_file_with_a_kept_document(self, document: Document) -> bool:
        """A chat merged from a readable and an unreadable file is kept whole; the readable
        file's messages alone must not come back as a second copy under another id."""
        return any(path in self.kept_files for path in document.paths)


class Pipeline:
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
        from store_values import ForgetList

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
        except Stopped:
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
                    store.commit()
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
                        store.commit()
                        pending_chunks, opened_at = 0, None
                elif item.vanished:
                    store.commit()
                    pending_chunks, opened_at = 0, None
        except BaseException:
            # Uncommitted work is whole documents at most (plus a part of one): dropping it
            # leaves the index as the last commit left it.
            store.rollback()
            raise

    # -- main thread

    def start(self) -> None:
        """Start the embed and write threads."""
        for thread in self.threads:
            thread.start()

    def feed_source(self, name: str, documents: Iterable[Document], reader: "Store") -> None:
        """Parse one source, queue its changed documents, then queue the deletion of vanished ones."""
        read = _SourceRead(name, reader.stored_documents(f"{name}:"))
        for document in documents:
            self.progress.parsed(name)
            if document.unreadable:
                self._note_unreadable(read, document)
                continue
            verdict = self._verdict(read, document)
            if verdict is None:
                try:
                    chunks = unique_chunks(document.make_chunks())
                except SourceUnreadable:
                    verdict = "kept" if document.doc_id in read.stored else "skipped"
            if verdict is not None:
                self._count(verdict)
                continue
            self._count("changed" if document.doc_id in read.stored else "new")
            self._queue_document(name, document, chunks, reader)
        # The source was read to its end: whatever it no longer yields is gone from it.
        self._queue_vanished(read)

    def _count(self, kind: str) -> None:
        summary = self.summary
        summary.documents += 1
        setattr(summary, f"documents_{kind}", getattr(summary, f"documents_{kind}") + 1)

    def _note_unreadable(self, read: "_SourceRead", document: Document) -> None:
        """A document that could not be read this run (its stored copy stays), or a file
        that could not be read at all (every stored document built from it stays)."""
        if document.doc_id:
            read.seen.add(document.doc_id)
            self._count("kept" if document.doc_id in read.stored else "skipped")
        elif document.paths:
            read.unreadable.update(document.paths)
            read.kept_files = {path for doc_id, (_, paths) in read.stored.items()
                               if read.from_unreadable_file(doc_id) for path in paths}

    def _verdict(self, read: "_SourceRead", document: Document) -> str | None:
        """How a readable document counts when it is not to be chunked (skipped, unchanged,
        kept), with a warning where the user should know; None: chunk it."""
        doc_id = document.doc_id
        where = ", ".join(document.paths) or "?"
        if not doc_id.startswith(read.prefix):
            self.progress.warn(f"document {doc_id!r} from {where} is not a {read.name} document; skipped")
            return "skipped"
        if doc_id in read.seen:
            self.progress.warn(f"document {doc_id} ({where}) appears twice in this run; kept the first")
            return "skipped"
        read.seen.add(doc_id)
        if doc_id in read.stored and read.stored[doc_id][0] == document.fingerprint:
            return "unchanged"
        if doc_id in read.stored and read.from_unreadable_file(doc_id):
            return "kept"
        if read.shares_a_file_with_a_kept_document(document):
            return "skipped"
        return None

    def _queue_document(self, name: str, document: Document, chunks: list[Chunk], reader: "Store") -> None:
        """Queue a new or changed document: its chunks not stored yet (in embed groups; those
        whose text is stored elsewhere take that vector), then what it no longer holds."""
        doc_id = document.doc_id
        forgotten: list[tuple[str, str]] = []
        if self.forget_list:
            chunks, forgotten = keep_out_forgotten(chunks, self.forget_list)
            self.summary.chunks_forgotten += len(forgotten)
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

    def _queue_vanished(self, read: "_SourceRead") -> None:
        """Queue the deletion of the stored documents the source no longer yields, unless
        that looks like a mistake (`looks_lost`): then they stay, with a warning."""
        name, stored, seen, summary = read.name, read.stored, read.seen, self.summary
        vanished = sorted(doc_id for doc_id in set(stored) - seen if not read.from_unreadable_file(doc_id))
        kept_unseen = len(set(stored) - seen) - len(vanished)  # stored from a file unreadable now
        summary.documents_kept += kept_unseen
        summary.documents += kept_unseen
        if vanished and name not in self.allow_mass_deletion and looks_lost(len(stored), len(seen), len(vanished)):
            # An unsynced cloud folder or an unmounted drive looks like this: report, never delete.
            summary.documents_missing += len(vanished)
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
            except Stopped:
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
