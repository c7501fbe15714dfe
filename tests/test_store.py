"""The store against a real embedded PostgreSQL + pgvector."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import numpy as np
import psycopg
import pytest

import chunking
import database
import settings
import store
from chunking import MESSAGES, NOTES, Chunk
from retrieve_related_content_from_db import SearchRequest, check_index, search_vector

DIM = 8


def unit(values) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def nearest(db, vector, k: int = 10):
    """The real search, by vector alone: the top-k hits by cosine similarity."""
    return search_vector(db, vector, SearchRequest("unused"), k=k, mode="vector").hits


def make_chunk(i: int, **overrides) -> Chunk:
    fields = dict(text=f"chunk number {i}", source=f"<obsidian>:Note {i}", doc_id=f"obsidian:Note {i}.md",
                  source_kind=NOTES, title=f"Note {i}")
    fields.update(overrides)
    return Chunk(**fields)


@pytest.fixture
def db(database_url):
    with store.Store(database_url) as opened:
        opened.ensure_schema("test-model", DIM)
        yield opened


def test_schema_is_idempotent_and_records_the_model(database_url):
    with store.Store(database_url) as first:
        first.ensure_schema("test-model", DIM)
        first.ensure_schema("test-model", DIM)
        info = first.index_info()
    assert (info.model, info.dimension, info.schema_version) == ("test-model", DIM, store.SCHEMA_VERSION)
    with psycopg.connect(database_url) as conn:
        column_type = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        ).fetchone()[0]
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")}
    assert column_type == f"vector({DIM})"
    assert "chunks_embedding_hnsw" in indexes


def test_another_model_is_refused_with_the_rebuild_hint(database_url):
    with store.Store(database_url) as first:
        first.ensure_schema("small-model", 384)
    with store.Store(database_url) as second, pytest.raises(settings.UserError) as err:
        second.ensure_schema("big-model", 1024)
    assert str(err.value) == (
        "the index was built with small-model (384 dims); EMBEDDING_MODEL is big-model (1024). "
        f"Rebuild the index with `{settings.python_command()} create_and_persist_embeddings.py --rebuild`, "
        "or set EMBEDDING_MODEL back."
    )


def test_copy_round_trip_keeps_text_metadata_and_vectors(db):
    when = datetime(2021, 6, 26, 10, 15, tzinfo=timezone.utc)
    chunk = make_chunk(
        1, text="Maria: 'quoted'; DROP TABLE chunks; -- \x00 and ünïcødé", source_kind=MESSAGES,
        chat_name="Maria Silva", chat_id="123@s.whatsapp.net", people=["Maria Silva", "Me"],
        started_at=when, ended_at=when, metadata={"message_ids": ["a", "b"], "nul": "x\x00y"},
    )
    vector = unit(range(1, DIM + 1))
    with db.transaction():
        db.copy_chunks([chunk], vector[None, :])
    hit = nearest(db, vector, k=1)[0]
    assert hit.content == "Maria: 'quoted'; DROP TABLE chunks; --  and ünïcødé"
    assert hit.people == ["Maria Silva", "Me"]
    assert hit.started_at == when
    assert hit.metadata == {"message_ids": ["a", "b"], "nul": "xy"}
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    assert db.stored_hashes(chunk.doc_id) == {chunk.content_hash}


def test_naive_times_are_stored_as_local_wall_clock(db):
    naive = datetime(2020, 1, 2, 3, 4)
    with db.transaction():
        db.copy_chunks([make_chunk(1, started_at=naive)], unit([1] * DIM)[None, :])
    stored = nearest(db, unit([1] * DIM), k=1)[0].started_at
    assert stored == naive.astimezone()


def test_duplicate_chunk_is_rejected_and_nothing_is_half_written(db):
    vector = unit([1] * DIM)[None, :]
    with db.transaction():
        db.copy_chunks([make_chunk(1)], vector)
    with pytest.raises(psycopg.errors.UniqueViolation):
        with db.transaction():
            db.copy_chunks([make_chunk(2)], vector)
            db.copy_chunks([make_chunk(1)], vector)
    assert db.count_chunks() == 1


def _fill_random(db, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(8, DIM))
    vectors = centers[rng.integers(0, 8, size=count)] + 0.3 * rng.normal(size=(count, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    with db.transaction():
        db.copy_chunks([make_chunk(i) for i in range(count)], vectors)
    return vectors


def test_vector_search_orders_by_cosine_with_and_without_the_index(db):
    vectors = _fill_random(db, 300)
    query = unit(vectors[7] + 0.05)
    expected = [f"chunk number {i}" for i in np.argsort(-(vectors @ query))[:10]]
    db.drop_vector_index()
    exact = [hit.content for hit in nearest(db, query)]
    db.ensure_vector_index()
    with db.conn.cursor() as cur:
        plan = "\n".join(r[0] for r in cur.execute(
            "EXPLAIN SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 10", (query,)))
    approximate = [hit.content for hit in nearest(db, query)]
    assert exact == expected
    assert "chunks_embedding_hnsw" in plan
    assert len(set(approximate) & set(expected)) >= 8
    scores = [hit.score for hit in nearest(db, query)]
    assert scores == sorted(scores, reverse=True)


def test_delete_documents_removes_their_chunks_only(db):
    with db.transaction():
        db.copy_chunks([make_chunk(1), make_chunk(2)], np.stack([unit([1] * DIM)] * 2))
        db.record_document("obsidian:Note 1.md", NOTES, "fp1", 1)
    with db.transaction():
        assert db.delete_documents(["obsidian:Note 1.md"]) == 1
    assert db.count_chunks() == 1
    assert db.stored_documents() == {}


def test_the_read_path_checks_the_model_without_writing(database_url, tmp_path):
    folder = tmp_path / "small-model"
    folder.mkdir()
    with store.Store(database_url) as writer:
        writer.ensure_schema("small-model", DIM)  # an index from before model folders were recorded
    with store.Store(database_url, autocommit=True) as reader:
        reader.conn.execute("SET default_transaction_read_only = on")
        # The index's model passes; ensure_schema would record its folder here (a write).
        reader.check_model("small-model", DIM, str(folder))
        with pytest.raises(settings.UserError) as err:
            reader.check_model("big-model", 1024)
        assert str(err.value).startswith("the index was built with small-model (8 dims); EMBEDDING_MODEL is "
                                         "big-model (1024). Rebuild the index with")

        class Embedder:
            name, dimension, folder = "small-model", DIM, None

        check_index(reader, Embedder())
        assert reader.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with store.Store(database_url) as check:
        assert "embedding_model_folder" not in dict(check.conn.execute("SELECT key, value FROM index_meta"))


def test_concurrent_schema_creation_from_two_processes(database_url):
    script = (
        "import sys; sys.path.insert(0, '.'); import store;"
        f"s = store.Store({database_url!r}); s.ensure_schema('m', {DIM}); print('ok')"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=str(store.settings.PROJECT_DIR)) for _ in range(3)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [out.strip() for out, _ in results] == ["ok"] * 3, results
    with store.Store(database_url) as check:
        assert check.index_info().dimension == DIM


def test_unreachable_database_is_one_clear_error():
    with pytest.raises(settings.UserError) as err:
        store.Store("postgresql://someone:secret@127.0.0.1:1/nothing")
    message = str(err.value)
    assert message.startswith("cannot connect to the database at postgresql://someone:***@127.0.0.1:1/nothing")
    assert "secret" not in message


def test_unwritable_data_dir_is_one_clear_error(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    with pytest.raises(settings.UserError) as err:
        database.embedded_database_url(blocked / "data")
    assert "PERSONAL_LLM_DATA_DIR" in str(err.value)


def test_fold_text_ignores_case_and_accents():
    assert chunking.fold_text("José AÇÃO Ünïcode") == "jose acao unicode"


def test_first_error_line_keeps_a_one_line_report_whatever_the_message():
    # psycopg's messages carry DETAIL/HINT lines below the reason; the user sees the reason only.
    err = psycopg.OperationalError("connection to server failed\nDETAIL:  is the server running?\n")
    assert database.first_error_line(err) == "connection to server failed"
    assert database.first_error_line(psycopg.OperationalError(""), "connection lost") == "connection lost"
    assert database.first_error_line(psycopg.OperationalError("  ")) == "OperationalError"
    assert database.database_error_message(err) == "lost the connection to the database (connection to server failed)"
