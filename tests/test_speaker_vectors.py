"""Per-speaker vectors of chat passages (speaker_vectors.py) against a real PostgreSQL + pgvector:
what is embedded, that it is embedded once and leaves with its chunk, and that a question naming
someone ranks the passage where they say it above one where they do not speak."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

import passage_context
import retrieve_related_content_from_db as retrieval
import speaker_vectors
import store
from test_retrieval import DIM, FakeEmbedder, at_cosine, chat_chunk, fill, note

UTC = timezone.utc
HEADER = "WhatsApp chat with Aisha (me: Caleb), 2022-03-01 10:00 to 2022-03-01 10:05"


@pytest.fixture
def db(database_url):
    with store.Store(database_url) as opened:
        opened.ensure_schema(FakeEmbedder.name, DIM)
        yield opened


class PassageEmbedder(FakeEmbedder):
    """Chosen vectors for passage texts (at_cosine(0.1) for any other); records what it embedded."""

    def __init__(self, vectors: dict[str, np.ndarray]):
        super().__init__()
        self.vectors, self.passages = vectors, []

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        self.passages.extend(texts)
        return np.stack([self.vectors.get(text, at_cosine(0.1)) for text in texts]).astype(np.float32)


def test_speaker_texts_gather_each_speakers_lines_without_their_times():
    content = f"{HEADER}\n10:00 Aisha: hi\n10:01 Caleb: hey: you\n10:02 Aisha: I passed!\nnot a message line"
    assert speaker_vectors.speaker_texts(content) == {"aisha": "Aisha: hi\nAisha: I passed!", "caleb": "Caleb: hey: you"}
    assert speaker_vectors.speaker_texts("2021-06-26 10:15 José: Olá") == {}  # the header line is skipped
    assert speaker_vectors.speaker_texts("h\n2021-06-26 10:15 José: Olá") == {"jose": "José: Olá"}


def test_each_chat_chunk_gets_one_vector_per_speaker_once_and_loses_them_with_the_chunk(db):
    when = datetime(2022, 3, 1, 10, tzinfo=UTC)
    chats = [chat_chunk("Aisha", f"{HEADER}\n10:00 Aisha: hi\n10:01 Caleb: hello", ["Aisha", "Caleb"], when),
             chat_chunk("Aisha", f"{HEADER}\n10:05 Caleb: bye", ["Aisha", "Caleb"], when.replace(minute=5))]
    fill(db, chats + [note("Kyoto", "10:00 Aisha: not a chat")], [at_cosine(0.5)] * 3)
    embedder = PassageEmbedder({})
    assert speaker_vectors.fill_missing(db, embedder) == 3
    assert sorted(embedder.passages) == ["Aisha: hi", "Caleb: bye", "Caleb: hello"]  # the note has none
    assert db.conn.execute("SELECT count(*) FROM chunk_speakers").fetchone()[0] == 3
    # A re-run finds nothing to do and embeds nothing.
    embedder.passages.clear()
    assert speaker_vectors.fill_missing(db, embedder) == 0 and embedder.passages == []
    # Deleting the chat's chunks deletes their speaker vectors too.
    with db.transaction():
        db.delete_documents(["whatsapp:Aisha"])
    assert db.conn.execute("SELECT count(*) FROM chunk_speakers").fetchone()[0] == 0
    db.commit()


def test_a_named_persons_passages_rank_by_what_they_said_themselves(db, monkeypatch):
    monkeypatch.setattr(passage_context, "CONTEXT_UNITS", 0)
    when = datetime(2022, 3, 1, 10, tzinfo=UTC)
    # Caleb's news is nearer the question as a whole; Aisha does not speak in it.
    his = chat_chunk("Aisha", f"{HEADER}\n10:00 Caleb: I passed my driving test!\n10:01 Caleb: so happy",
                     ["Aisha", "Caleb"], when)
    hers = chat_chunk("Aisha", f"{HEADER}\n11:00 Aisha: I passed the bar exam!\n11:01 Caleb: wow",
                      ["Aisha", "Caleb"], when.replace(hour=11))
    fill(db, [his, hers], [at_cosine(0.9), at_cosine(0.8, spread=2)])
    question = retrieval.SearchRequest("What did Aisha pass?")
    assert retrieval.search(db, FakeEmbedder(), question, k=1).hits[0].content == his.text
    speaker_vectors.fill_missing(db, PassageEmbedder({"Aisha: I passed the bar exam!": at_cosine(0.7)}))
    assert retrieval.search(db, FakeEmbedder(), question, k=1).hits[0].content == hers.text
    # So too under the keeper's filter on her: her own lines re-rank the filtered candidates.
    filtered = retrieval.SearchRequest("What did Aisha pass?", people=["Aisha"])
    assert retrieval.search(db, FakeEmbedder(), filtered, k=1).hits[0].content == hers.text
    # The same question without a name has no speaker to rank by.
    assert retrieval.search(db, FakeEmbedder(), retrieval.SearchRequest("What did you pass?"),
                            k=1).hits[0].content == his.text


def test_a_search_over_an_index_without_speaker_vectors_ranks_as_before(db):
    when = datetime(2022, 3, 1, 10, tzinfo=UTC)
    fill(db, [chat_chunk("Aisha", f"{HEADER}\n10:00 Aisha: hi", ["Aisha"], when)], [at_cosine(0.9)])
    db.conn.execute("DROP TABLE chunk_speakers")  # an index from before the table (it comes with the next run)
    db.commit()
    speaker_vectors._has_table.clear()
    hits = retrieval.search(db, FakeEmbedder(), retrieval.SearchRequest("What did Aisha say?"), k=1).hits
    assert [hit.content for hit in hits] == [f"{HEADER}\n10:00 Aisha: hi"]
    db.ensure_schema(FakeEmbedder.name, DIM)  # what the next ingestion does first
    assert db.table_exists("chunk_speakers")


@pytest.fixture(autouse=True)
def _forget_known_tables():
    yield
    speaker_vectors._has_table.clear()  # each test has its own database at the same URL
