"""Ingestion: incremental by content, crash-safe, streaming, one writer at a time; real embedded
PostgreSQL + pgvector and the real packaged embedding model (wrapped to record what it embeds).
"""
from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg
import pytest

import create_and_persist_embeddings as cpe
import ingest_pipeline
import settings
import store
from chunking import MESSAGES, NOTES, Chunk, Document, fingerprint
from retrieve_related_content_from_db import SearchRequest, search

PROJECT_DIR = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers


class RecordingEmbedder:
    """The real embedder, recording every text it embeds; optionally failing like a kill."""

    def __init__(self, inner, fail_after_calls: int | None = None):
        self.inner = inner
        self.texts: list[str] = []
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed_passages(self, texts):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("simulated kill")
        self.calls += 1
        self.texts.extend(texts)
        return self.inner.embed_passages(texts)


class Made:
    """Which documents were chunked (make_chunks called)."""

    def __init__(self):
        self.doc_ids: list[str] = []


def note(rel: str, paragraphs: list[str], made: Made | None = None) -> Document:
    doc_id = f"obsidian:{rel}"

    def make():
        if made is not None:
            made.doc_ids.append(doc_id)
        return [Chunk(text=p, source=f"<obsidian>:{rel[:-3]}", doc_id=doc_id, source_kind=NOTES,
                      title=rel[:-3], tags=["t"]) for p in paragraphs]

    return Document(doc_id, NOTES, fingerprint(rel, *paragraphs), make, paths=(rel,))


def chat(name: str, lines: list[str], made: Made | None = None) -> Document:
    doc_id = f"whatsapp:{name.lower()}@s.whatsapp.net"
    start = datetime(2021, 6, 26, 10, 0, tzinfo=timezone.utc)

    def make():
        if made is not None:
            made.doc_ids.append(doc_id)
        return [Chunk(text=f"{name}\n{line}", source=f"<whatsapp>:{name}", doc_id=doc_id, source_kind=MESSAGES,
                      chat_name=name, chat_id=doc_id[9:], people=[name, "Me"],
                      started_at=start + timedelta(hours=i), ended_at=start + timedelta(hours=i, minutes=5))
                for i, line in enumerate(lines)]

    return Document(doc_id, MESSAGES, fingerprint(name, *lines), make, paths=("result.json",))


def vault(n_notes: int = 6, paragraphs: int = 3) -> list[Document]:
    return [note(f"Notes/n{i}.md", [f"Note {i} paragraph {j} about topic {i * 7 + j}." for j in range(paragraphs)])
            for i in range(n_notes)]


def chats() -> list[Document]:
    return [chat("Maria", ["2021-06-26 10:15 Maria: Saturday?", "2021-06-26 10:16 Me: Yes, at noon."]),
            chat("Joao", ["2021-07-01 09:00 Joao: The keys are under the mat."])]


def run(url, embedder, sources, **kwargs) -> ingest_pipeline.Summary:
    with store.Store(url) as db:
        cpe.open_index(db, embedder, say=lambda m: None)
        return cpe.ingest(db, embedder, sources, **kwargs)


def index_state(url) -> tuple[set, set]:
    """({(doc_id, content_hash, content, source)}, {(doc_id, fingerprint, chunk_count)})."""
    with psycopg.connect(url) as conn:
        chunks = set(conn.execute("SELECT doc_id, content_hash, content, source FROM chunks").fetchall())
        documents = set(conn.execute("SELECT doc_id, fingerprint, chunk_count FROM documents").fetchall())
        count = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert count == len(chunks), "duplicate rows"
    return chunks, documents


def expected_hashes(documents: list[Document]) -> set:
    return {(c.doc_id, c.content_hash) for d in documents for c in ingest_pipeline.unique_chunks(d.make_chunks())}


@pytest.fixture
def other_database_url(pg_server):
    """A second fresh database, for comparing two runs side by side."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_server.replace("/postgres?", f"/{name}?")
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------- incremental by content


def test_first_run_indexes_everything_and_an_unchanged_rerun_embeds_nothing(database_url, embedder):
    recorder = RecordingEmbedder(embedder)
    notes, messages = vault(), chats()
    summary = run(database_url, recorder, {"obsidian": notes, "whatsapp": messages})
    assert summary.chunks_embedded == 6 * 3 + 3
    # ...and what each speaker of a chat chunk said, once per speaker (speaker_vectors).
    assert recorder.texts[summary.chunks_embedded:] == ["Maria: Saturday?", "Me: Yes, at noon.",
                                                         "Joao: The keys are under the mat."]
    assert summary.speaker_vectors == 3
    assert summary.chunks_total == 21 and summary.documents == 8 and summary.documents_new == 8
    chunks, documents = index_state(database_url)
    assert {(d, h) for d, h, _, _ in chunks} == expected_hashes(notes + messages)
    assert {d for d, _, _ in documents} == {d.doc_id for d in notes + messages}

    made, again = Made(), RecordingEmbedder(embedder)
    notes = [note(d.paths[0], [c.text for c in d.make_chunks()], made) for d in notes]
    summary = run(database_url, again, {"obsidian": notes, "whatsapp": chats()})
    assert again.texts == [] and made.doc_ids == []  # nothing embedded, nothing even chunked
    assert (summary.chunks_embedded, summary.chunks_deleted, summary.documents_unchanged) == (0, 0, 8)
    assert summary.speaker_vectors == 0
    assert index_state(database_url) == (chunks, documents)


def test_an_edited_note_reembeds_only_its_new_chunks_and_drops_the_stale_one(database_url, embedder):
    notes = vault()
    run(database_url, embedder, {"obsidian": notes})
    before, _ = index_state(database_url)
    edited = note("Notes/n2.md", ["Note 2 paragraph 0 about topic 14.", "A brand new second paragraph.",
                                  "Note 2 paragraph 2 about topic 16.", "And one more at the end."])
    notes[2] = edited
    recorder = RecordingEmbedder(embedder)
    summary = run(database_url, recorder, {"obsidian": notes})
    assert sorted(recorder.texts) == ["A brand new second paragraph.", "And one more at the end."]
    assert (summary.chunks_embedded, summary.chunks_deleted, summary.documents_changed) == (2, 1, 1)
    after, documents = index_state(database_url)
    assert {r[2] for r in before - after} == {"Note 2 paragraph 1 about topic 15."}
    assert {r[2] for r in after - before} == {"A brand new second paragraph.", "And one more at the end."}
    assert ("obsidian:Notes/n2.md", edited.fingerprint, 4) in documents


def test_a_chat_with_new_messages_embeds_only_the_new_chunks(database_url, embedder):
    run(database_url, embedder, {"whatsapp": chats()})
    longer = chat("Maria", ["2021-06-26 10:15 Maria: Saturday?", "2021-06-26 10:16 Me: Yes, at noon.",
                            "2021-06-27 08:00 Maria: Bring the cake!"])
    recorder = RecordingEmbedder(embedder)
    summary = run(database_url, recorder, {"whatsapp": [longer, chats()[1]]})
    assert recorder.texts == ["Maria\n2021-06-27 08:00 Maria: Bring the cake!", "Maria: Bring the cake!"]
    assert (summary.chunks_embedded, summary.chunks_deleted, summary.chunks_total) == (1, 0, 4)
    with psycopg.connect(database_url) as conn:
        people, started = conn.execute(
            "SELECT people, started_at FROM chunks WHERE content LIKE %s", ("%cake%",)).fetchone()
    assert people == ["Maria", "Me"] and started == datetime(2021, 6, 26, 12, 0, tzinfo=timezone.utc)


def test_vanished_documents_are_deleted_only_from_sources_given_on_this_run(database_url, embedder):
    notes, messages = vault(), chats()
    run(database_url, embedder, {"obsidian": notes, "whatsapp": messages})
    # A note deleted from the vault and a chat gone from the export.
    summary = run(database_url, embedder, {"obsidian": notes[1:], "whatsapp": messages[:1]})
    assert (summary.documents_deleted, summary.chunks_deleted, summary.chunks_embedded) == (2, 4, 0)
    chunks, documents = index_state(database_url)
    assert {d for d, _, _ in documents} == {d.doc_id for d in notes[1:] + messages[:1]}
    # WhatsApp left off the command line: its chunks stay.
    summary = run(database_url, embedder, {"obsidian": notes[1:]})
    assert summary.chunks_deleted == 0 and index_state(database_url) == (chunks, documents)
    # Only an explicit prune removes a source.
    summary = run(database_url, embedder, {"obsidian": notes[1:]}, prune=["whatsapp"])
    assert (summary.documents_deleted, summary.chunks_deleted, summary.pruned) == (1, 2, ["whatsapp"])
    assert not any(d.startswith("whatsapp:") for d, _, _, _ in index_state(database_url)[0])


def test_repeated_text_in_one_document_is_stored_once_and_empty_documents_are_remembered(database_url, embedder):
    twice = note("Notes/twice.md", ["ok", "something else", "ok"])
    empty, made = Made(), Made()
    blank = note("Notes/blank.md", [], empty)
    summary = run(database_url, embedder, {"obsidian": [twice, blank]})
    assert summary.chunks_total == 2
    _, documents = index_state(database_url)
    assert ("obsidian:Notes/twice.md", twice.fingerprint, 2) in documents
    assert ("obsidian:Notes/blank.md", blank.fingerprint, 0) in documents
    run(database_url, embedder, {"obsidian": [note("Notes/twice.md", ["ok", "something else", "ok"], made),
                                              note("Notes/blank.md", [], made)]})
    assert made.doc_ids == []


def test_documents_of_another_source_or_repeated_ids_are_skipped_with_a_warning(database_url, embedder):
    warnings: list[str] = []
    progress = ingest_pipeline.Progress(enabled=False)
    progress.warn = warnings.append
    notes = vault(2)
    summary = run(database_url, embedder, {"obsidian": [*notes, notes[0], chats()[0]]}, progress=progress)
    assert (summary.documents, summary.documents_new, summary.documents_skipped) == (4, 2, 2)
    assert summary.chunks_total == 6
    assert len(warnings) == 2 and "appears twice" in warnings[0] and "not a obsidian document" in warnings[1]


def test_a_large_load_builds_the_vector_index_and_analyses_the_table(database_url, embedder):
    summary = run(database_url, embedder, {"obsidian": vault(10)})
    assert summary.vector_index_rebuilt
    with psycopg.connect(database_url) as conn:
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")}
        analysed = conn.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'chunks'").fetchone()[0]
        conn.execute("SET enable_seqscan = off")  # 30 rows: prove the index serves the kNN query
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM chunks ORDER BY embedding <=> (SELECT embedding FROM chunks LIMIT 1) LIMIT 5"))
    assert "chunks_embedding_hnsw" in indexes and analysed
    assert "chunks_embedding_hnsw" in plan
    # An incremental run into a non-empty index keeps the index in place.
    assert not run(database_url, embedder, {"obsidian": vault(11)}).vector_index_rebuilt


def hnsw_options(url) -> list[str]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'chunks_embedding_hnsw'").fetchone()[0]


def test_an_index_with_an_older_graph_is_rebuilt_once_without_re_embedding(database_url, embedder, monkeypatch):
    monkeypatch.setattr(store, "HNSW_EF_CONSTRUCTION", 64)
    run(database_url, embedder, {"obsidian": vault(10)})
    assert hnsw_options(database_url) == ["m=16", "ef_construction=64"]
    before, _ = index_state(database_url)
    monkeypatch.undo()
    notes: list[str] = []
    with store.Store(database_url) as db:
        cpe.open_index(db, embedder, say=lambda m: None)
        summary = cpe.ingest(db, embedder, {"obsidian": vault(10)}, say=notes.append)
    assert summary.vector_index_rebuilt and summary.chunks_embedded == 0
    assert notes == [f"rebuilding the vector index once with this release's graph (HNSW ef_construction 64 -> "
                     f"{store.HNSW_EF_CONSTRUCTION}); searches go on meanwhile"]
    assert hnsw_options(database_url) == ["m=16", f"ef_construction={store.HNSW_EF_CONSTRUCTION}"]
    assert index_state(database_url)[0] == before
    with psycopg.connect(database_url) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM chunks ORDER BY embedding <=> (SELECT embedding FROM chunks LIMIT 1) LIMIT 5"))
    assert "chunks_embedding_hnsw" in plan
    assert not run(database_url, embedder, {"obsidian": vault(10)}).vector_index_rebuilt  # once


def test_graph_settings_fill_in_pgvectors_defaults():
    assert store.graph_settings(None) == {"m": 16, "ef_construction": 64}
    assert store.graph_settings(["ef_construction=128"]) == {"m": 16, "ef_construction": 128}
    assert store.graph_settings(["m=24", "ef_construction=200"]) == {"m": 24, "ef_construction": 200}



def centroid_state(url) -> tuple[list | None, list]:
    """(the recorded centroid, the mean of the stored chunk vectors), both as float lists."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT value FROM index_meta WHERE key = %s", (store.CENTROID_KEY,)).fetchone()
        vectors = [json.loads(v) for (v,) in conn.execute("SELECT embedding::text FROM chunks")]
    return (json.loads(row[0]) if row else None), np.mean(vectors, axis=0).tolist()


def test_each_run_that_changes_the_index_records_the_mean_its_searches_centre_on(database_url, embedder):
    run(database_url, embedder, {"obsidian": vault(3)})
    recorded, mean = centroid_state(database_url)
    assert recorded is not None and np.allclose(recorded, mean, atol=1e-5)
    run(database_url, embedder, {"obsidian": vault(4)})  # one more note: the mean moves with it
    recorded_after, mean_after = centroid_state(database_url)
    assert not np.allclose(mean, mean_after, atol=1e-4) and np.allclose(recorded_after, mean_after, atol=1e-5)
    with psycopg.connect(database_url) as conn:  # an index from before centroids: the next run adds it
        conn.execute("DELETE FROM index_meta WHERE key = %s", (store.CENTROID_KEY,))
    run(database_url, embedder, {"obsidian": vault(4)})
    assert np.allclose(centroid_state(database_url)[0], mean_after, atol=1e-5)

# ---------------------------------------------------------------- crash safety


def _break_writes_after(db: store.Store, copies: int) -> None:
    original = db.copy_chunks
    done = [0]

    def copy_chunks(chunks, vectors):
        if done[0] >= copies:
            raise OSError("simulated kill during a write")
        done[0] += 1
        return original(chunks, vectors)

    db.copy_chunks = copy_chunks


def _parse_then_die(documents, after):
    for i, document in enumerate(documents):
        if i == after:
            raise KeyboardInterrupt
        yield document


@pytest.mark.parametrize("where", ["embed", "write", "parse"])
def test_a_run_killed_between_batches_then_rerun_gives_the_uninterrupted_index(
        database_url, other_database_url, embedder, where):
    # Small groups and commits so the kill lands after several commits and inside a
    # document that spans several COPYs (n3 has 9 chunks, groups of 4).
    notes = vault(8, paragraphs=3)
    notes[3] = note("Notes/big.md", [f"Big note paragraph {j}, long enough." for j in range(9)])
    knobs = dict(embed_group=4, queue_items=2, commit_chunks=4, commit_seconds=60)
    run(other_database_url, embedder, {"obsidian": notes, "whatsapp": chats()}, **knobs)
    uninterrupted = index_state(other_database_url)

    failing = RecordingEmbedder(embedder, fail_after_calls=3 if where == "embed" else None)
    sources = {"obsidian": notes, "whatsapp": chats()}
    expected_error = {"embed": RuntimeError, "write": OSError, "parse": KeyboardInterrupt}[where]
    with store.Store(database_url) as db, pytest.raises(expected_error):
        cpe.open_index(db, failing, say=lambda m: None)
        if where == "write":
            _break_writes_after(db, 3)
        if where == "parse":
            sources["obsidian"] = _parse_then_die(notes, 5)
        cpe.ingest(db, failing, sources, **knobs)
    assert not [t for t in threading.enumerate() if t.name in ("embed", "write")]

    chunks, documents = index_state(database_url)
    assert 0 < len(documents) < len(uninterrupted[1])  # some work was committed, not all
    assert documents <= uninterrupted[1] and chunks <= uninterrupted[0]
    done = {d for d, _, _ in documents}
    assert {c[0] for c in chunks} <= done  # no half-written document
    for doc_id in done:
        assert {c for c in chunks if c[0] == doc_id} == {c for c in uninterrupted[0] if c[0] == doc_id}

    recorder = RecordingEmbedder(embedder)
    run(database_url, recorder, {"obsidian": notes, "whatsapp": chats()}, **knobs)
    assert index_state(database_url) == uninterrupted
    # Only the missing chunks, then each chat chunk's speaker: their vectors come after a whole run.
    assert len(recorder.texts) == len(uninterrupted[0]) - len(chunks) + 3


SIGKILL_SCRIPT = textwrap.dedent("""
    import hashlib, sys, time
    import numpy as np
    sys.path.insert(0, {project!r})
    import create_and_persist_embeddings as cpe, store
    from chunking import NOTES, Chunk, Document, fingerprint

    class SlowHashEmbedder:
        name, dimension = "hash-embedder", 8
        def embed_passages(self, texts):
            time.sleep(float(sys.argv[2]))
            rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:32], dtype=np.uint8)[:8] for t in texts]
            vectors = np.asarray(rows, dtype=np.float32) + 1
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def doc(i):
        texts = [f"note {{i}} part {{j}}" for j in range(5)]
        make = lambda: [Chunk(text=t, source=f"<obsidian>:n{{i}}", doc_id=f"obsidian:n{{i}}.md",
                              source_kind=NOTES) for t in texts]
        return Document(f"obsidian:n{{i}}.md", NOTES, fingerprint(*texts), make)

    embedder = SlowHashEmbedder()
    with store.Store(sys.argv[1]) as db:
        cpe.open_index(db, embedder)
        cpe.ingest(db, embedder, {{"obsidian": [doc(i) for i in range(40)]}},
                   embed_group=5, commit_chunks=5, commit_seconds=60)
""")


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_index(database_url, other_database_url, tmp_path):
    script = tmp_path / "ingest_some.py"
    script.write_text(SIGKILL_SCRIPT.format(project=str(PROJECT_DIR)))
    subprocess.run([sys.executable, str(script), other_database_url, "0"], check=True, timeout=120)
    uninterrupted = index_state(other_database_url)

    victim = subprocess.Popen([sys.executable, str(script), database_url, "0.1"])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with psycopg.connect(database_url) as conn:
                exists = conn.execute("SELECT to_regclass('documents') IS NOT NULL").fetchone()[0]
                done = conn.execute("SELECT count(*) FROM documents").fetchone()[0] if exists else 0
            if done >= 5:
                break
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.wait()
    chunks, documents = index_state(database_url)
    assert 5 <= len(documents) < 40 and {c[0] for c in chunks} == {d for d, _, _ in documents}
    subprocess.run([sys.executable, str(script), database_url, "0"], check=True, timeout=120)
    assert index_state(database_url) == uninterrupted
    with psycopg.connect(database_url) as conn:  # the interrupted bulk load's index came back
        assert conn.execute("SELECT to_regclass('chunks_embedding_hnsw') IS NOT NULL").fetchone()[0]


def test_a_worker_error_stops_the_pipeline_and_reaches_the_caller(database_url, embedder):
    class Broken(RecordingEmbedder):
        def embed_passages(self, texts):
            raise ValueError("model exploded")

    with pytest.raises(ValueError, match="model exploded"):
        run(database_url, Broken(embedder), {"obsidian": vault(50)}, queue_items=2, embed_group=2)
    assert not [t for t in threading.enumerate() if t.name in ("embed", "write")]
    assert index_state(database_url) == (set(), set())


# ---------------------------------------------------------------- one writer at a time


def test_concurrent_runs_one_waits_for_the_other_and_nothing_is_duplicated(database_url, embedder):
    waiting = threading.Event()
    messages: list[str] = []
    results: dict[str, ingest_pipeline.Summary] = {}
    errors: list[BaseException] = []

    class WaitsForTheOther(RecordingEmbedder):
        def embed_passages(self, texts):
            waiting.wait(timeout=60)  # hold the lock until the second run is queued behind it
            return super().embed_passages(texts)

    def first_run(locked: threading.Event):
        try:
            embedder_a = WaitsForTheOther(embedder)
            with store.Store(database_url) as db:
                cpe.open_index(db, embedder_a, say=messages.append)
                locked.set()
                results["first"] = cpe.ingest(db, embedder_a, {"obsidian": vault(), "whatsapp": chats()})
        except BaseException as err:
            errors.append(err)

    def second_run():
        try:
            def say(message):
                messages.append(message)
                waiting.set()

            with store.Store(database_url) as db:
                cpe.open_index(db, embedder, say=say)
                results["second"] = cpe.ingest(db, embedder, {"obsidian": vault(), "whatsapp": chats()})
        except BaseException as err:
            errors.append(err)

    locked = threading.Event()
    first = threading.Thread(target=first_run, args=(locked,))
    first.start()
    assert locked.wait(60)
    second = threading.Thread(target=second_run)
    second.start()
    first.join(120)
    second.join(120)
    assert not errors
    assert messages == [cpe.LOCK_WAIT_MESSAGE]
    assert results["first"].chunks_embedded == 21 and results["second"].chunks_embedded == 0
    chunks, _ = index_state(database_url)  # index_state asserts no duplicate rows
    assert len(chunks) == 21


def test_no_wait_stops_with_a_clear_error_while_another_run_holds_the_lock(database_url, embedder_path_args, tmp_path):
    (tmp_path / "vault").mkdir()
    with store.Store(database_url) as holder:
        assert holder.try_writer_lock()
        with pytest.raises(settings.UserError, match="another ingestion is running"):
            cpe.main(["--obsidian", str(tmp_path / "vault"), "--no-wait", "--quiet", *embedder_path_args])
        with pytest.raises(settings.UserError, match="another ingestion is running"):
            cpe.main(["--forget", "<whatsapp>:Maria", "--no-wait", "--database-url", database_url])


def test_a_chat_keeps_reading_while_a_run_writes(database_url, embedder):
    run(database_url, embedder, {"obsidian": vault(3)})
    with store.Store(database_url) as chat_store:
        before = len(search(chat_store, embedder, SearchRequest("topic"), k=5).hits)
    seen: list[int] = []

    class ReadsMeanwhile(RecordingEmbedder):
        def embed_passages(self, texts):
            # What the chat does per question, while the writer holds an open transaction;
            # a lock wait would fail the run instead of hanging it.
            with store.Store(database_url) as chat_store:
                chat_store.conn.execute("SET lock_timeout = '5s'")
                assert chat_store.index_info().model == embedder.name
                seen.append(len(search(chat_store, embedder, SearchRequest("topic"), k=5).hits))
            return super().embed_passages(texts)

    run(database_url, ReadsMeanwhile(embedder), {"obsidian": vault(6)})
    # Every search answered, with at least what the index held before (notes commit one by one).
    assert seen and before > 0 and all(n >= before for n in seen)


# ---------------------------------------------------------------- command line


@pytest.fixture
def embedder_path_args(database_url, embedding_model_path):
    return ["--database-url", database_url, "--embedding-model", embedding_model_path, "--device", "cpu"]


def run_main(argv: list[str]) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert cpe.main(argv) == 0
    return out.getvalue(), err.getvalue()


def test_a_missing_source_path_is_an_error_naming_it(tmp_path, monkeypatch, embedder_path_args):
    with pytest.raises(settings.UserError) as err:
        cpe.main(["--obsidian", str(tmp_path / "nope"), *embedder_path_args])
    assert str(err.value).startswith(f"OBSIDIAN_VAULT_PATH {tmp_path / 'nope'} does not exist;")
    monkeypatch.setenv("WHATSAPP_WORKING_PATH", str(tmp_path / "wa"))
    with pytest.raises(settings.UserError, match=r"WHATSAPP_WORKING_PATH .*wa does not exist"):
        cpe.main(embedder_path_args)


def test_nothing_configured_explains_how_to_configure(embedder_path_args):
    with pytest.raises(settings.UserError) as err:
        cpe.main(embedder_path_args)
    assert str(err.value) == cpe.NOTHING_CONFIGURED


def test_prune_beside_the_source_path_reads_it_and_lets_it_delete_however_much_vanished(
        tmp_path, database_url, embedder, embedder_path_args):
    run(database_url, embedder, {"obsidian": vault(2), "whatsapp": chats()})
    out, _ = run_main(["--obsidian", str(tmp_path), "--prune", "obsidian", "--json", *embedder_path_args])
    summary = json.loads(out)
    assert (summary["documents_deleted"], summary["chunks_total"], summary["pruned"]) == (2, 3, ["obsidian"])


def test_prune_only_and_json_summary_keys(database_url, embedder, embedder_path_args):
    run(database_url, embedder, {"obsidian": vault(2), "whatsapp": chats()})
    out, _ = run_main(["--prune", "whatsapp", "--json", *embedder_path_args])
    summary = json.loads(out)
    assert {"documents", "chunks_total", "chunks_embedded", "chunks_deleted", "seconds"} <= set(summary)
    assert (summary["chunks_deleted"], summary["documents_deleted"], summary["chunks_total"]) == (3, 2, 6)
    assert summary["pruned"] == ["whatsapp"]


def test_list_shows_every_chunk_and_forget_deletes_a_source_prefix(database_url, embedder):
    run(database_url, embedder, {"obsidian": vault(2), "whatsapp": chats()})
    out, _ = run_main(["--list", "--database-url", database_url])
    lines = out.splitlines()
    assert len(lines) == 9
    maria = [line.split("\t") for line in lines if line.startswith("<whatsapp>:Maria")]
    first, last = (datetime(2021, 6, 26, 10, minute, tzinfo=timezone.utc).astimezone() for minute in (0, 5))
    assert maria[0][:3] == ["<whatsapp>:Maria", "whatsapp:maria@s.whatsapp.net",
                            f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"]
    assert maria[0][3] == "Maria\\n2021-06-26 10:15 Maria: Saturday?"  # one line per chunk

    out, _ = run_main(["--list", "--json", "--source-prefix", "<whatsapp>:", "--database-url", database_url])
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 3 and {r["chat_name"] for r in records} == {"Maria", "Joao"}
    assert records[0]["text"] == "Joao\n2021-07-01 09:00 Joao: The keys are under the mat."

    out, err = run_main(["--forget", "<whatsapp>:Maria", "--database-url", database_url])
    assert out.strip() == "forgot 2 chunks of 1 documents under '<whatsapp>:Maria'"
    assert "later runs keep them out too" in err and '--unforget "<whatsapp>:Maria"' in err
    chunks, documents = index_state(database_url)
    assert len(chunks) == 7 and "whatsapp:maria@s.whatsapp.net" not in {d for d, _, _ in documents}
    # The source still holds them: the forget list keeps them out (tests/test_index_safety.py).
    recorder = RecordingEmbedder(embedder)
    summary = run(database_url, recorder, {"whatsapp": chats()})
    assert recorder.texts == [] and summary.chunks_forgotten == 2


def test_other_peoples_terminal_escapes_never_reach_the_terminal(database_url, embedder, embedding_model_path):
    import main
    import retrieve_related_content_from_db as retrieval
    from chat_prompt import source_list

    # A contact who named the group with a window-title sequence and writes screen clears.
    name = "\x1b]0;pwned\x07Mallory\x1b[2J"
    run(database_url, embedder, {"whatsapp": [chat(name, ["Mallory: the \x1b[31mkeys\x1b[0m are \x9b2Jhere\r"])]})
    listed, _ = run_main(["--list", "--database-url", database_url])
    found = io.StringIO()
    with redirect_stdout(found):
        retrieval.main(["keys", "--database-url", database_url, "--embedding-model", embedding_model_path])
    assert "keys" in found.getvalue()
    with store.Store(database_url) as db:
        hits = retrieval.search(db, embedder, retrieval.SearchRequest("keys")).hits
    session = main.ChatSession(llm=None, retriever=None, persona=main.resolve_persona())
    session.last_hits, session.last_request = hits, retrieval.SearchRequest("keys")
    for printed in (listed, found.getvalue(), session.describe_sources(), session.describe_passage("1"),
                    source_list(hits)):
        assert "Mallory" in printed
        assert not any(c in printed for c in "\x1b\x07\x9b\r"), repr(printed)


def test_rebuild_alone_empties_the_index_and_forget_needs_a_prefix(database_url, embedder):
    run(database_url, embedder, {"obsidian": vault(2)})
    with pytest.raises(settings.UserError, match="non-empty source prefix"):
        cpe.main(["--forget", "", "--database-url", database_url])
    out, _ = run_main(["--rebuild", "--json", "--quiet", "--database-url", database_url])
    assert json.loads(out)["chunks_total"] == 0 and json.loads(out)["rebuilt"] is True
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('chunks')").fetchone()[0] is None


def test_a_model_change_is_refused_until_rebuild(database_url, embedder):
    with store.Store(database_url) as db:
        db.ensure_schema("another-model", 1024)
    with store.Store(database_url) as db, pytest.raises(settings.UserError, match="--rebuild"):
        cpe.open_index(db, embedder)
    summary = run_rebuild(database_url, embedder)
    assert summary.chunks_total == 6


def run_rebuild(url, embedder) -> ingest_pipeline.Summary:
    with store.Store(url) as db:
        cpe.open_index(db, embedder, rebuild=True)
        return cpe.ingest(db, embedder, {"obsidian": vault(2)})


# ---------------------------------------------------------------- through the real parsers


def write_vault(root: Path) -> Path:
    vault_dir = root / "vault"
    (vault_dir / "Trips").mkdir(parents=True)
    (vault_dir / "Trips" / "Kyoto.md").write_text(
        "---\ntags: [travel]\n---\n# Kyoto\n\nWe stayed near the Kamo river in April 2019.\n\n"
        "## Food\n\nThe best ramen was at a tiny shop near the station.\n")
    (vault_dir / "Groceries.md").write_text("Buy oat milk, coffee beans and lemons.\n")
    return vault_dir


def write_whatsapp(root: Path) -> Path:
    folder = root / "wa"
    folder.mkdir()
    chat_record = {"name": "Maria Silva", "type": "ios", "messages": {
        "1": {"from_me": False, "timestamp": 1624702500, "data": "Are we still on for Saturday?",
              "sender": None, "media": False},
        "2": {"from_me": True, "timestamp": 1624702560, "data": "Yes! Noon at the park.", "sender": None,
              "media": False},
    }}
    (folder / "result.json").write_text(json.dumps({"5511999990000@s.whatsapp.net": chat_record}))
    return folder


def test_cli_through_the_real_parsers_is_incremental(tmp_path, database_url, embedder_path_args):
    vault_dir, wa_dir = write_vault(tmp_path), write_whatsapp(tmp_path)
    sources = ["--obsidian", str(vault_dir), "--whatsapp", str(wa_dir)]
    first = json.loads(run_main([*sources, "--json", "--quiet", *embedder_path_args])[0])
    assert first["documents"] == 3 and first["chunks_embedded"] == first["chunks_total"] > 0
    listed = run_main(["--list", "--database-url", embedder_path_args[1]])[0]
    assert "ramen" in listed and "Saturday" in listed and "<obsidian>:Trips/Kyoto" in listed

    again = json.loads(run_main([*sources, "--json", "--quiet", *embedder_path_args])[0])
    assert (again["chunks_embedded"], again["chunks_deleted"], again["documents_unchanged"]) == (0, 0, 3)

    (vault_dir / "Groceries.md").write_text("Buy oat milk, coffee beans, lemons and rice.\n")
    (vault_dir / "Trips" / "Kyoto.md").unlink()
    edited = json.loads(run_main(["--obsidian", str(vault_dir), "--json", "--quiet", *embedder_path_args])[0])
    assert edited["chunks_embedded"] == 1 and edited["documents_deleted"] == 1
    listed = run_main(["--list", "--database-url", embedder_path_args[1]])[0]
    assert "rice" in listed and "ramen" not in listed and "Saturday" in listed  # WhatsApp kept

    out, err = run_main([*sources, *embedder_path_args])
    assert out.startswith("2 documents") and "chunks embedded" in out


def test_files_that_turn_unreadable_keep_what_is_stored(tmp_path, database_url, embedder_path_args):
    vault_dir, wa_dir = write_vault(tmp_path), write_whatsapp(tmp_path)
    (wa_dir / "WhatsApp Chat with Maria Silva.txt").write_text(
        "26/06/2021, 12:30 - Maria Silva: Bring the frisbee\n")
    sources = ["--obsidian", str(vault_dir), "--whatsapp", str(wa_dir), "--json", "--quiet", *embedder_path_args]
    run_main(sources)
    before, _ = index_state(database_url)

    # A note replaced by binary junk, and the exporter JSON cut short by a full disk: the
    # parsers skip both with a warning; nothing stored from them may be lost or re-chunked.
    (vault_dir / "Trips" / "Kyoto.md").write_bytes(bytes(range(256)) * 8)
    result = wa_dir / "result.json"
    result.write_text(result.read_text()[:40])
    out, err = run_main(sources)
    summary = json.loads(out)
    after, _ = index_state(database_url)
    assert after == before
    assert summary["chunks_deleted"] == 0 and summary["documents_kept"] == 2
    assert "Kyoto.md" in err and "result.json" in err

    # Gone for real (the files deleted): now the index follows.
    (vault_dir / "Trips" / "Kyoto.md").unlink()
    result.unlink()
    summary = json.loads(run_main(sources)[0])
    listed = run_main(["--list", "--database-url", embedder_path_args[1]])[0]
    assert summary["documents_deleted"] == 2 and "ramen" not in listed  # the note and the merged chat
    assert "frisbee" in listed and "Saturday" not in listed  # the chat now holds only the .txt messages


def test_cli_on_a_generated_corpus_matches_the_parsers_chunks(tmp_path, database_url, embedder, embedder_path_args):
    sys.path.insert(0, str(PROJECT_DIR / "bench"))
    from corpus import chunk_texts, write_corpus

    paths = write_corpus(tmp_path, chunks=80)
    expected = chunk_texts(paths, embedder.count_tokens, embedder.passage_token_budget)
    out, _ = run_main(["--obsidian", str(paths["obsidian"]), "--whatsapp", str(paths["whatsapp"]),
                       "--json", "--quiet", *embedder_path_args])
    summary = json.loads(out)
    chunks, _ = index_state(database_url)
    assert summary["chunks_embedded"] == summary["chunks_total"] == len(chunks) == len(set(expected))
    assert {c[2] for c in chunks} == set(expected)


def test_other_text_search_languages_rebuild_the_keyword_column_without_re_embedding(
        tmp_path, database_url, embedder_path_args):
    sources = ["--obsidian", str(write_vault(tmp_path)), "--whatsapp", str(write_whatsapp(tmp_path))]
    first = json.loads(run_main([*sources, "--json", "--quiet", *embedder_path_args])[0])
    with pytest.raises(settings.UserError, match="TEXT_SEARCH_LANGUAGES: 'klingon' is not"):
        cpe.main([*sources, "--text-search-languages", "english,klingon", "--quiet", *embedder_path_args])
    out, err = run_main([*sources, "--json", "--text-search-languages", "portuguese", *embedder_path_args])
    again = json.loads(out)
    assert "note: keyword index rebuilt with the word stems of portuguese" in err and "before: english" in err
    assert (again["chunks_embedded"], again["chunks_total"]) == (0, first["chunks_total"])
    _, err = run_main([*sources, "--json", "--text-search-languages", "portuguese", *embedder_path_args])
    assert "keyword index rebuilt" not in err


def test_a_misspelt_text_search_language_is_refused_before_the_embedder_is_built(
        tmp_path, database_url, embedder_path_args, monkeypatch):
    import embedding_generator_multilingual

    def no_embedder(*args, **kwargs):
        raise AssertionError("the embedder was built before the languages were checked")

    monkeypatch.setattr(embedding_generator_multilingual, "load_embedder", no_embedder)
    with pytest.raises(settings.UserError, match="TEXT_SEARCH_LANGUAGES: 'englsh' is not .*english"):
        cpe.main(["--obsidian", str(write_vault(tmp_path)), "--text-search-languages", "englsh", "--quiet",
                  *embedder_path_args])
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('chunks')").fetchone()[0] is None  # no index was created
