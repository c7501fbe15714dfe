"""Retrieval against a real embedded PostgreSQL + pgvector: reciprocal-rank fusion, filters,
fallback, diversity, the HNSW plan, and the search CLI (with the real packaged model)."""
from __future__ import annotations

import io
import json
import re
from datetime import date, datetime, timezone

import numpy as np
import psycopg
import pytest

import passage_context
import retrieve_related_content_from_db as retrieval
import settings
import store
from chunking import MESSAGES, NOTES, Chunk
from retrieve_related_content_from_db import SearchRequest

DIM = 4
UTC = timezone.utc


class FakeEmbedder:
    """Returns chosen query vectors, so rankings are exactly known; records what it embedded."""

    name = "fake-embedder"
    dimension = DIM

    def __init__(self, vector=None):
        self.vector = unit([1, 0, 0, 0] if vector is None else vector)
        self.queries: list[str] = []

    def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return self.vector


def unit(values) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def at_cosine(c: float, spread: int = 1) -> np.ndarray:
    """A unit vector whose cosine with [1, 0, 0, 0] is exactly `c`."""
    rest = np.zeros(DIM - 1)
    rest[spread % (DIM - 1)] = np.sqrt(1 - c * c)
    return np.asarray([c, *rest], dtype=np.float32)


def note(name: str, text: str, **fields) -> Chunk:
    values = dict(text=text, source=f"<obsidian>:{name}", doc_id=f"obsidian:{name}.md", source_kind=NOTES,
                  title=name)
    values.update(fields)
    return Chunk(**values)


def chat_chunk(name: str, text: str, people: list[str], when: datetime, until: datetime | None = None,
               doc: str | None = None) -> Chunk:
    return Chunk(text=text, source=f"<whatsapp>:{name}", doc_id=doc or f"whatsapp:{name}", source_kind=MESSAGES,
                 chat_name=name, chat_id=f"{name}@chat", people=people, started_at=when, ended_at=until or when)


@pytest.fixture
def db(database_url):
    with store.Store(database_url) as opened:
        opened.ensure_schema(FakeEmbedder.name, DIM)
        yield opened


def fill(db: store.Store, chunks: list[Chunk], vectors) -> None:
    with db.transaction():
        db.copy_chunks(chunks, np.asarray(vectors, dtype=np.float32))
    db.conn.execute("ANALYZE chunks")
    db.conn.commit()


def sources(result) -> list[str]:
    return [hit.source for hit in result.hits]


# ---------------------------------------------------------------- fusion


def test_hybrid_order_is_reciprocal_rank_fusion_of_the_two_rankings(db):
    # Vector ranking A>B>C>D>E; text ranking (query word "quokka") E (twice) > C (once).
    cosines = {"A": 0.9, "B": 0.8, "C": 0.7, "D": 0.6, "E": 0.5}
    texts = {"A": "ferry timetable", "B": "museum tickets", "C": "the quokka selfie",
             "D": "packing list", "E": "quokka island, another quokka photo"}
    fill(db, [note(n, texts[n]) for n in cosines], [at_cosine(c) for c in cosines.values()])
    vector_rank = {n: i + 1 for i, n in enumerate(cosines)}
    text_rank = {"E": 1, "C": 2}
    fused = {n: 1 / (60 + vector_rank[n]) + (1 / (60 + text_rank[n]) if n in text_rank else 0) for n in cosines}
    expected = sorted(cosines, key=lambda n: -fused[n])
    assert expected == ["C", "E", "A", "B", "D"]  # both lists disagree with the fused order

    result = retrieval.search(db, FakeEmbedder(), SearchRequest("where is that quokka?"), k=10)
    assert sources(result) == [f"<obsidian>:{n}" for n in expected]
    for hit in result.hits:
        name = hit.title
        assert hit.fused_score == pytest.approx(fused[name])
        assert hit.score == pytest.approx(cosines[name], abs=1e-5)  # score is cosine similarity
        assert hit.vector_rank == vector_rank[name]
        assert hit.text_rank == text_rank.get(name)

    vector_only = retrieval.search(db, FakeEmbedder(), SearchRequest("where is that quokka?"), k=10, mode="vector")
    assert sources(vector_only) == [f"<obsidian>:{n}" for n in cosines]
    assert all(hit.fused_score is None and hit.text_rank is None for hit in vector_only.hits)


def test_passages_near_everything_stop_crowding_out_the_one_that_answers(db, database_url):
    # Eight templated daily notes lie near the corpus mean and a little nearer the question
    # than the one distinctive note; centred on the mean, the distinctive note ranks first.
    generic = [unit([0.77, 0.6, 0.02 * i, 0.01 * i]) for i in range(8)]
    distinctive = unit([0.75, 0, 0.66, 0])
    chunks = [note(f"Daily {i}", "woke up, emails, gym") for i in range(8)] + [note("Marathon", "finished in 4:12")]
    fill(db, chunks, generic + [distinctive])
    request = SearchRequest("what was my time in the long race?")
    before = retrieval.search(db, FakeEmbedder(), request, k=3, mode="vector")
    assert before.hits[0].title.startswith("Daily")  # uncentred: the hub wins

    db.refresh_centroid()
    stored = db.conn.execute("SELECT value FROM index_meta WHERE key = %s", (store.CENTROID_KEY,)).fetchone()[0]
    assert np.allclose(json.loads(stored), np.mean(generic + [distinctive], axis=0), atol=1e-5)
    with store.Store(database_url) as reader:  # a new connection reads the recorded centroid
        for mode in ("vector", "hybrid"):
            after = retrieval.search(reader, FakeEmbedder(), request, k=3, mode=mode)
            assert after.hits[0].title == "Marathon"
            # The similarity shown (and "nothing close") is still the plain cosine.
            assert after.hits[0].score == pytest.approx(float(distinctive[0]), abs=1e-5)


def test_a_missing_or_unreadable_centroid_leaves_search_uncentred(db, database_url):
    fill(db, [note("A", "alpha"), note("B", "beta")], [at_cosine(0.9), at_cosine(0.5)])
    db.conn.execute("INSERT INTO index_meta (key, value) VALUES (%s, 'not json')", (store.CENTROID_KEY,))
    db.conn.commit()
    with store.Store(database_url) as reader:
        assert reader.embedding_centroid() is None
        result = retrieval.search(reader, FakeEmbedder(), SearchRequest("alpha?"), k=2, mode="vector")
    assert [hit.title for hit in result.hits] == ["A", "B"]


def test_keyword_match_is_accent_and_case_insensitive_and_any_word_counts(db):
    fill(db, [note("far", "nothing relevant here"), note("kw", "Reunião com o JOÃO sobre orçamento")],
         [at_cosine(0.9), at_cosine(0.1)])
    result = retrieval.search(db, FakeEmbedder(), SearchRequest("joao reuniao budget tomorrow"), k=2)
    assert sources(result) == ["<obsidian>:kw", "<obsidian>:far"]
    assert result.hits[0].text_rank == 1


def test_query_words_drop_short_and_stop_words_and_fold_accents():
    assert retrieval.text_query_words("Quando a Márcia foi a Kyoto?") == ["marcia", "kyoto"]
    assert retrieval.text_query_words("what did Maria and I plan for Saturday?") == ["maria", "plan", "saturday"]
    assert retrieval.text_query_words("a & | ! :* ( 'x") == []
    assert retrieval._tsquery_text(["kyoto", "spa"]) == "'kyoto':* | 'spa'"


def test_words_in_most_chunks_are_left_out_and_long_words_match_as_prefixes(db):
    chunks = [note(f"Daily/{i}", f"2021 routine day {i}") for i in range(300)]
    chunks.insert(20, note("Zanzibar", "Finished the Zanzibar itinerary in 2021"))  # vector rank 21
    fill(db, chunks, [at_cosine(0.9 - i / 1000, spread=i) for i in range(301)])
    common = retrieval.common_words_query(db, ["2021", "zanzibar", "routine"]).fetchall()
    assert {row[0] for row in common} == {"2021", "routine"}
    result = retrieval.search(db, FakeEmbedder(), SearchRequest("when did I finish the zanzibar plan in 2021"))
    top = result.hits[0]
    assert top.title == "Zanzibar" and top.text_rank == 1
    # "2021" matched nothing on its own: only the one chunk was a keyword candidate.
    assert [hit.text_rank for hit in result.hits if hit.text_rank] == [1]


# ---------------------------------------------------------------- filters


def test_date_filter_keeps_chunks_whose_span_overlaps_the_range(db):
    chunks = [
        chat_chunk("May", "may talk", ["Ana"], datetime(2021, 5, 20, tzinfo=UTC)),
        chat_chunk("Across", "spans into June", ["Ana"], datetime(2021, 5, 31, 22, tzinfo=UTC),
                   datetime(2021, 6, 1, 1, tzinfo=UTC)),
        chat_chunk("June", "june talk", ["Ana"], datetime(2021, 6, 15, tzinfo=UTC)),
        chat_chunk("LastDay", "last day", ["Ana"], datetime(2021, 6, 30, 18, tzinfo=UTC)),
        chat_chunk("July", "july talk", ["Ana"], datetime(2021, 7, 2, tzinfo=UTC)),
        note("Undated", "no date at all"),
    ]
    fill(db, chunks, [at_cosine(0.9 - i / 10) for i in range(len(chunks))])
    request = SearchRequest("talk", since=datetime(2021, 6, 1, tzinfo=UTC), until=datetime(2021, 6, 30, tzinfo=UTC))
    result = retrieval.search(db, FakeEmbedder(), request, k=10)
    assert sorted(sources(result)) == ["<whatsapp>:Across", "<whatsapp>:June", "<whatsapp>:LastDay"]
    assert not result.fell_back
    # An `until` at midnight is the whole day; the filters are reported JSON-safe.
    assert result.filters_applied == {"since": "2021-06-01T00:00:00+00:00",
                                      "until": "2021-06-30T23:59:59.999999+00:00"}
    json.dumps(result.filters_applied)
    only_since = retrieval.search(db, FakeEmbedder(), SearchRequest("talk", since=datetime(2021, 7, 1, tzinfo=UTC)))
    assert sources(only_since) == ["<whatsapp>:July"]


def test_person_filter_matches_names_case_and_accent_insensitively_by_whole_word(db):
    chunks = [
        chat_chunk("Maria Silva", "see you saturday", ["María Silva", "Me"], datetime(2021, 6, 1, tzinfo=UTC)),
        chat_chunk("Mariana", "lunch?", ["Mariana Costa", "Me"], datetime(2021, 6, 1, tzinfo=UTC)),
        chat_chunk("JOSÉ", "the boat trip", ["José Alves", "Me"], datetime(2021, 6, 1, tzinfo=UTC)),
        note("Diary", "Long walk with Maria by the river"),
        note("Other", "groceries and chores"),
    ]
    fill(db, chunks, [at_cosine(0.9 - i / 10) for i in range(len(chunks))])

    def found(*people):
        result = retrieval.search(db, FakeEmbedder(), SearchRequest("plans", people=list(people)), k=10)
        return sorted(hit.source for hit in result.hits) if not result.fell_back else "fell back"

    maria = ["<obsidian>:Diary", "<whatsapp>:Maria Silva"]
    assert found("maria") == maria  # participant (accented) and mentioned in a note
    assert found("MARIA") == maria
    assert found("Maria Silva") == ["<whatsapp>:Maria Silva"]
    assert found("silva") == ["<whatsapp>:Maria Silva"]
    assert found("jose") == found("JOSÉ") == ["<whatsapp>:JOSÉ"]
    assert found("mari") == "fell back"  # a fragment of a name is not a name
    assert found("jose", "mariana") == ["<whatsapp>:JOSÉ", "<whatsapp>:Mariana"]  # any of the people


def test_a_date_from_the_files_modification_time_is_no_date_for_the_filters(db):
    # After a clone or a sync every undated note gets the same file time: it must not pass for
    # the day the note is about.
    synced = datetime(2021, 6, 15, 12, tzinfo=UTC)
    chunks = [
        note("2021-06-15", "daily note", started_at=synced, ended_at=synced, metadata={"date_origin": "filename"}),
        note("Trip", "frontmatter date", started_at=synced, ended_at=synced, metadata={"date_origin": "frontmatter"}),
        note("Cloned", "dated by its file only", started_at=synced, ended_at=synced, metadata={"date_origin": "mtime"}),
    ]
    fill(db, chunks, [at_cosine(0.9 - i / 10) for i in range(len(chunks))])
    june = SearchRequest("note", since=datetime(2021, 6, 1, tzinfo=UTC), until=datetime(2021, 6, 30, tzinfo=UTC))
    assert sorted(sources(retrieval.search(db, FakeEmbedder(), june))) == ["<obsidian>:2021-06-15", "<obsidian>:Trip"]
    everything = {hit.source: hit for hit in retrieval.search(db, FakeEmbedder(), SearchRequest("note")).hits}
    cloned = everything["<obsidian>:Cloned"]
    # The passage reaches the prompt undated; the file time is kept for /sources only.
    assert cloned.started_at is None and cloned.ended_at is None and cloned.modified_at == synced
    assert everything["<obsidian>:Trip"].started_at == synced and everything["<obsidian>:Trip"].modified_at is None


def filter_plan(db: store.Store, request: SearchRequest) -> str:
    """EXPLAIN of the rows the request's filters select, with sequential scans priced out: an
    index shows up in the plan exactly when it can serve the filter."""
    from psycopg import sql

    params: dict = {}
    where, _ = retrieval._filter_sql(request, params)
    with db.conn.transaction():
        db.conn.execute("SET LOCAL enable_seqscan = off")
        rows = db.conn.execute(sql.SQL("EXPLAIN SELECT id FROM chunks WHERE {}").format(where), params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_date_and_person_filters_are_served_by_their_indexes(db):
    chunks = [chat_chunk(f"Chat {i}", f"message {i}", [f"Person{i} Surname", "Me"], datetime(2021, 1 + i % 12, 1, tzinfo=UTC))
              for i in range(200)]
    fill(db, chunks, [at_cosine(0.5, i) for i in range(len(chunks))])
    june = datetime(2021, 6, 1, tzinfo=UTC)
    assert "chunks_ended" in filter_plan(db, SearchRequest("x", since=june))
    assert "chunks_started" in filter_plan(db, SearchRequest("x", until=june))
    both = filter_plan(db, SearchRequest("x", since=june, until=datetime(2021, 6, 30, tzinfo=UTC)))
    assert "chunks_started" in both or "chunks_ended" in both
    people = filter_plan(db, SearchRequest("x", people=["person7 surname", "Ana"]))
    assert "chunks_people_words" in people and "chunks_tsv" in people, people
    for plan in (both, people):
        assert "Seq Scan" not in plan, plan


def test_an_index_from_before_is_migrated_in_place(database_url):
    with store.Store(database_url) as db:
        db.ensure_schema(FakeEmbedder.name, DIM)
        # Roll the schema back to what older versions created, with rows written by them.
        db.conn.execute("ALTER TABLE chunks DROP COLUMN people_words, DROP COLUMN date_origin")
        db.conn.execute("DROP INDEX IF EXISTS chunks_started, chunks_ended, chunks_people_words")
        db.conn.execute("CREATE INDEX chunks_time ON chunks (started_at, ended_at)")
        db.conn.execute("CREATE INDEX chunks_people ON chunks USING gin (people_folded)")
        when = datetime(2021, 6, 15, tzinfo=UTC)
        for source, people, started, ended, origin in (
                ("<whatsapp>:Maria", ["maria silva", "me"], when, None, None),
                ("<obsidian>:Cloned", [], None, when, "mtime")):
            db.conn.execute(
                "INSERT INTO chunks (doc_id, source_kind, source, content_hash, content, people, people_folded, "
                "started_at, ended_at, metadata, search_text, embedding) VALUES (%s, 'notes', %s, 'h', 'text', "
                "%s, %s, %s, %s, %s, 'text', %s)",
                (source, source, people, people, started, ended,
                 psycopg.types.json.Jsonb({"date_origin": origin} if origin else {}), unit([1, 0, 0, 0])))
        db.conn.commit()
    with store.Store(database_url) as db:
        db.ensure_schema(FakeEmbedder.name, DIM)
        rows = db.conn.execute("SELECT source, people_words, started_at, ended_at, date_origin FROM chunks "
                               "ORDER BY source").fetchall()
        assert rows == [("<obsidian>:Cloned", [], when, when, "mtime"),
                        ("<whatsapp>:Maria", ["maria", "me", "silva"], when, when, None)]
        indexes = {r[0] for r in db.conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")}
        assert {"chunks_started", "chunks_ended", "chunks_people_words"} <= indexes
        assert not {"chunks_time", "chunks_people"} & indexes
        db.conn.commit()
        june = SearchRequest("x", since=datetime(2021, 6, 1, tzinfo=UTC), people=["Maria Silva"])
        result = retrieval.search(db, FakeEmbedder(), june)
        assert sources(result) == ["<whatsapp>:Maria"] and not result.fell_back


def test_source_kind_filter(db):
    chunks = [note("N1", "alpha"), chat_chunk("C1", "alpha", ["Bo"], datetime(2021, 1, 1, tzinfo=UTC)),
              note("N2", "beta")]
    fill(db, chunks, [at_cosine(0.9), at_cosine(0.8), at_cosine(0.7)])
    notes = retrieval.search(db, FakeEmbedder(), SearchRequest("alpha", source_kind=NOTES))
    messages = retrieval.search(db, FakeEmbedder(), SearchRequest("alpha", source_kind=MESSAGES))
    assert sources(notes) == ["<obsidian>:N1", "<obsidian>:N2"]
    assert sources(messages) == ["<whatsapp>:C1"]
    assert messages.filters_applied == {"source_kind": "messages"}
    with pytest.raises(settings.UserError, match="not one of notes, messages"):
        retrieval.search(db, FakeEmbedder(), SearchRequest("alpha", source_kind="emails"))


def test_window_returns_every_passage_of_the_period_oldest_first(db):
    # More passages than any top-k, stored out of time order, with other months around them.
    may = [chat_chunk("Maria", f"day {day}", ["Maria", "Me"], datetime(2023, 5, day, 12, tzinfo=UTC))
           for day in (29, 2, 17, 5, 11, 23, 8, 14, 20, 26, 3, 30, 9, 15)]
    others = [chat_chunk("Maria", "april", ["Maria", "Me"], datetime(2023, 4, 30, 12, tzinfo=UTC)),
              chat_chunk("Bob", "may with bob", ["Bob", "Me"], datetime(2023, 5, 10, 12, tzinfo=UTC)),
              note("Undated", "no date")]
    fill(db, may + others, [at_cosine(0.5 + i / 100) for i in range(len(may) + len(others))])
    window = SearchRequest("", since=datetime(2023, 5, 1, tzinfo=UTC), until=datetime(2023, 5, 31, tzinfo=UTC))
    hits = retrieval.window_passages(db, window)
    assert [h.started_at.day for h in hits] == sorted([c.started_at.day for c in may] + [10])
    assert len(hits) == 15 and all(h.score == 0.0 for h in hits)
    window.people = ["maria"]
    maria = retrieval.window_passages(db, window, vector=FakeEmbedder().vector)
    assert [h.content for h in maria] == [f"day {d}" for d in sorted(c.started_at.day for c in may)]
    assert all(0 < h.score <= 1 for h in maria)  # each passage's similarity to the query
    with pytest.raises(settings.UserError, match="needs a window"):
        retrieval.window_passages(db, SearchRequest("everything"))


def test_selective_filter_still_returns_a_full_top_k_through_the_index(db):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(2000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    matching = set(range(3, 2000, 133))  # 15 chunks, scattered, mostly far from the query
    chunks = [
        chat_chunk(f"chat{i}", f"message {i}", ["Rare Person"] if i in matching else ["Someone Else"],
                   datetime(2020, 1, 1, tzinfo=UTC))
        for i in range(2000)
    ]
    fill(db, chunks, vectors)
    query = unit(vectors[0] + 0.01)
    embedder = FakeEmbedder(query)
    result = retrieval.search(db, embedder, SearchRequest("message", people=["rare person"]), k=10, mode="vector")
    expected = sorted(matching, key=lambda i: -(vectors[i] @ query))[:10]
    assert [hit.source for hit in result.hits] == [f"<whatsapp>:chat{i}" for i in expected]
    hybrid = retrieval.search(db, embedder, SearchRequest("message", people=["rare person"]), k=10)
    assert len(hybrid.hits) == 10 and all(hit.people == ["Rare Person"] for hit in hybrid.hits)


def test_filter_that_matches_nothing_falls_back_to_unfiltered_results_and_says_so(db):
    fill(db, [note("A", "alpha"), note("B", "beta")], [at_cosine(0.9), at_cosine(0.8)])
    request = SearchRequest("alpha", people=["Nobody"], since=datetime(2030, 1, 1, tzinfo=UTC))
    result = retrieval.search(db, FakeEmbedder(), request)
    assert result.fell_back
    assert sources(result) == ["<obsidian>:A", "<obsidian>:B"]
    assert result.note == "no passages matched the date and person filter; showing unfiltered results"
    assert result.filters_applied == {}
    assert result.request is request


def test_hostile_strings_are_just_text(db):
    fill(db, [note("A", "it's 100% done; DROP TABLE chunks; --"), note("B", "beta")], [at_cosine(0.9), at_cosine(0.8)])
    for query in ["'; DROP TABLE chunks; --", "a & b | !c :* (d", "100%", "\\", "' OR '1'='1", ")"]:
        assert len(retrieval.search(db, FakeEmbedder(), SearchRequest(query)).hits) == 2
    result = retrieval.search(db, FakeEmbedder(), SearchRequest("done", people=["x' OR '1'='1", "%", "_"]))
    assert result.fell_back  # the wildcards matched nobody
    result = retrieval.search(db, FakeEmbedder(), SearchRequest("x", source_kind=NOTES, people=["drop table"]))
    assert sources(result) == ["<obsidian>:A"]  # found as a mention, not run as SQL
    assert db.count_chunks() == 2


# ---------------------------------------------------------------- diversity


def test_one_chatty_document_cannot_crowd_out_the_rest(db, monkeypatch):
    monkeypatch.setattr(passage_context, "CONTEXT_UNITS", 0)  # the cap alone, no neighbours
    chat = [chat_chunk("Group", f"group message {i}", ["A", "B"], datetime(2021, 1, 1, tzinfo=UTC), doc="whatsapp:group")
            for i in range(10)]
    notes = [note(f"N{i}", f"note {i}") for i in range(10)]
    fill(db, chat + notes, [at_cosine(0.95 - i / 100) for i in range(10)] + [at_cosine(0.5 - i / 100) for i in range(10)])
    hits = retrieval.search(db, FakeEmbedder(), SearchRequest("group"), k=10).hits
    assert [hit.doc_id for hit in hits].count("whatsapp:group") == retrieval.MAX_CHUNKS_PER_DOCUMENT
    assert [hit.content for hit in hits[:3]] == ["group message 0", "group message 1", "group message 2"]
    assert len(hits) == 10
    # With nothing else to show, the capped chunks fill the list again.
    alone = retrieval.search(db, FakeEmbedder(), SearchRequest("group", source_kind=MESSAGES), k=10).hits
    assert [hit.content for hit in alone] == [f"group message {i}" for i in range(10)]


def test_a_chat_fills_the_list_from_many_days_but_not_from_one(db, monkeypatch):
    monkeypatch.setattr(passage_context, "CONTEXT_UNITS", 0)  # the cap alone, no neighbours
    # One person's whole history is one chat: ten sittings on ten days may all be shown.
    days = [chat_chunk("Ana", f"sitting {i}", ["Ana"], datetime(2021, 1, 1 + i, 12, tzinfo=UTC), doc="whatsapp:ana")
            for i in range(6)]
    one_day = [chat_chunk("Rui", f"same day {i}", ["Rui"], datetime(2021, 2, 1, 12, i, tzinfo=UTC), doc="whatsapp:rui")
               for i in range(6)]
    notes = [note(f"N{i}", f"note {i}") for i in range(6)]
    fill(db, days + one_day + notes, [at_cosine(0.95 - i / 100) for i in range(6)]
         + [at_cosine(0.85 - i / 100) for i in range(6)] + [at_cosine(0.5 - i / 100) for i in range(6)])
    hits = retrieval.search(db, FakeEmbedder(), SearchRequest("sitting"), k=10).hits
    docs = [hit.doc_id for hit in hits]
    assert docs.count("whatsapp:ana") == 6 and docs.count("whatsapp:rui") == retrieval.MAX_CHUNKS_PER_DOCUMENT


def test_a_question_naming_a_chat_partner_prefers_that_chat(db, monkeypatch):
    monkeypatch.setattr(passage_context, "CONTEXT_UNITS", 0)
    # Bruno's passages are closer in meaning; neither text holds a query word, so only the
    # name (a participant of the Aisha chat) can lift Aisha's passages above them.
    when = datetime(2022, 3, 1, tzinfo=UTC)
    aisha = [chat_chunk("Aisha", f"the photos {i}", ["Aisha"], when, doc="whatsapp:aisha") for i in range(2)]
    bruno = [chat_chunk("Bruno Melo", f"the pictures {i}", ["Bruno Melo"], when, doc="whatsapp:bruno") for i in range(2)]
    fill(db, bruno + aisha, [at_cosine(0.9), at_cosine(0.89), at_cosine(0.6), at_cosine(0.59)])
    named = retrieval.search(db, FakeEmbedder(), SearchRequest("what did Aisha send?"), k=4).hits
    assert [h.doc_id for h in named] == ["whatsapp:aisha", "whatsapp:aisha", "whatsapp:bruno", "whatsapp:bruno"]
    # A word of a longer name counts (accent- and case-insensitively); no name: meaning decides.
    assert retrieval.named_people(db, "and MELO?") == ["bruno melo"]
    plain = retrieval.search(db, FakeEmbedder(), SearchRequest("what did Carla send?"), k=4).hits
    assert [h.doc_id for h in plain][:2] == ["whatsapp:bruno", "whatsapp:bruno"]
    # An explicit person filter is the keeper's choice: nothing is re-fused.
    filtered = retrieval.search(db, FakeEmbedder(), SearchRequest("Aisha", people=["bruno"]), k=4).hits
    assert {h.doc_id for h in filtered} == {"whatsapp:bruno"}


def test_a_named_persons_passages_rank_by_the_question_without_their_name(db, monkeypatch):
    monkeypatch.setattr(passage_context, "CONTEXT_UNITS", 0)
    # Every passage of Aisha's chat carries her name; with it, the question is nearest to where
    # she talks most. Her passages are ranked by the question without her name instead.
    when = datetime(2022, 3, 1, tzinfo=UTC)
    chat = [chat_chunk("Aisha", "Aisha: hi hi", ["Aisha"], when, doc="whatsapp:aisha"),
            chat_chunk("Aisha", "Aisha: a milestone, I passed my driving test!", ["Aisha"], when.replace(day=2),
                       doc="whatsapp:aisha")]
    fill(db, chat, [at_cosine(0.9), at_cosine(0.8, spread=2)])

    class ByText(FakeEmbedder):
        def embed_query(self, text: str) -> np.ndarray:
            self.queries.append(text)
            return unit([0.8, 0, 0, 0.6]) if text == "What milestone did reach?" else self.vector

    embedder = ByText()
    hits = retrieval.search(db, embedder, SearchRequest("What milestone did Aisha reach?"), k=2).hits
    assert embedder.queries == ["What milestone did Aisha reach?", "What milestone did reach?"]
    # (The keyword half ranks the milestone first, the question's vector the greeting: a tie
    # that the named person's ranking decides.)
    assert [h.content for h in hits] == ["Aisha: a milestone, I passed my driving test!", "Aisha: hi hi"]
    assert hits[0].score == pytest.approx(0.8, abs=1e-3)  # its cosine to the question as asked
    # The keeper's filter on her: the question's own ranking holds only her passages, ranked so too.
    embedder.queries.clear()
    filtered = retrieval.search(db, embedder, SearchRequest("What milestone did Aisha reach?", people=["Aisha"]), k=2)
    assert embedder.queries == ["What milestone did Aisha reach?", "What milestone did reach?"]
    assert [h.content for h in filtered.hits][0] == "Aisha: a milestone, I passed my driving test!"


def test_without_names_drops_the_named_words_and_their_possessive():
    assert retrieval.without_names("Where is Leila's new flat?", ["leila"]) == "Where is new flat?"
    assert retrieval.without_names("Quando a MÁRCIA foi a Kyoto?", ["marcia souza"]) == "Quando a foi a Kyoto?"
    # Nothing named, or nothing but names: the question's own vector serves.
    assert retrieval.without_names("Kyoto?", []) is None
    assert retrieval.without_names("Leila?", ["leila"]) is None


def test_a_chat_hit_is_read_with_its_neighbours_in_the_same_sitting(db, monkeypatch):
    monkeypatch.setattr(passage_context, "CONTEXT_UNITS", 1)

    def unit(minute: int, text: str, hour: int = 10) -> Chunk:
        when = datetime(2022, 3, 1, hour, minute, tzinfo=UTC)
        header = f"WhatsApp chat with Ana, {when.astimezone():%Y-%m-%d %H:%M} to {when.astimezone():%Y-%m-%d %H:%M}"
        return chat_chunk("Ana", f"{header}\n{when.astimezone():%Y-%m-%d %H:%M} Ana: {text}", ["Ana"], when,
                          doc="whatsapp:ana")

    sitting = [unit(0, "hello"), unit(10, "we adopted a cat"), unit(20, "her name is Noodle"), unit(30, "bye")]
    later = unit(0, "next sitting", hour=15)  # after a long silence: another sitting
    fill(db, sitting + [later], [at_cosine(0.2), at_cosine(0.3), at_cosine(0.9), at_cosine(0.1), at_cosine(0.85)])
    hits = retrieval.search(db, FakeEmbedder(), SearchRequest("cat name"), k=3, mode="vector").hits
    best = hits[0].content.split("\n")
    assert best[0].startswith("WhatsApp chat with Ana, ") and best[0].endswith(" to " + best[-1][:16])
    assert [line.split(": ", 1)[1] for line in best[1:]] == ["we adopted a cat", "her name is Noodle", "bye"]
    # The next sitting is its own passage; units already shown are not shown twice.
    assert hits[1].content.endswith("Ana: next sitting")
    shown = [line for hit in hits for line in hit.content.split("\n")[1:]]
    assert len(shown) == len(set(shown)) and any(line.endswith("Ana: hello") for line in shown)


def test_a_note_hit_is_read_with_the_neighbouring_pieces_of_its_section(db):
    def piece(heading: str, body: str) -> Chunk:
        return note("Japan", f"Japan > {heading}\n{body}", heading=heading)

    # Day 2 was cut into three pieces for finding; the chunker repeats a sentence at each cut.
    pieces = [piece("Day 1", "Tokyo, late train."),
              piece("Day 2", "Hakone. The ryokan was quiet."),
              piece("Day 2", "The ryokan was quiet. Dinner had eleven courses."),
              piece("Day 2", "Dinner had eleven courses. Slept early."),
              piece("Day 3", "Kyoto, bikes along the river.")]
    fill(db, pieces + [note("Other", "Other\nunrelated")],
         [at_cosine(c) for c in (0.1, 0.5, 0.9, 0.8, 0.7, 0.2)])
    hits = retrieval.search(db, FakeEmbedder(), SearchRequest("ryokan dinner"), k=3, mode="vector").hits
    # The best piece comes with the rest of its section, header once, the repeated sentences once.
    assert hits[0].content == "Japan > Day 2\nHakone. The ryokan was quiet.\nDinner had eleven courses.\nSlept early."
    assert hits[0].heading == "Day 2" and len(hits[0].metadata["context_chunk_ids"]) == 3
    # Day 3 is another section: its own passage, never glued to Day 2; the pieces already read
    # inside the first passage do not come again.
    assert hits[1].content == "Japan > Day 3\nKyoto, bikes along the river."
    assert [h.content.split("\n")[0] for h in hits] == ["Japan > Day 2", "Japan > Day 3", "Other"]


def test_without_overlap_drops_only_the_repeated_opening():
    from passage_context import without_overlap

    assert without_overlap("A b. Repeated one.", "Repeated one. New.") == "New."
    assert without_overlap("Nothing shared.", "Fresh start.") == "Fresh start."
    assert without_overlap("", "Fresh start.") == "Fresh start."
    # A word's tail is not an overlap: "art." inside "start." does not count.
    assert without_overlap("a start.", "art. More") == "art. More"


def test_diversify_keeps_rank_order_when_refilling():
    def hit(doc, n):
        return retrieval.Hit(text=f"{doc}{n}", source=doc, score=0.0, doc_id=doc, source_kind=NOTES)

    hits = [hit("a", i) for i in range(5)] + [hit("b", 0)] + [hit("a", 5)]
    assert [h.content for h in retrieval.diversify(hits, 5, per_document=2)] == ["a0", "a1", "b0", "a2", "a3"]
    assert [h.content for h in retrieval.diversify(hits, 3, per_document=2)] == ["a0", "a1", "b0"]


# ---------------------------------------------------------------- index use and checks


def test_unfiltered_search_uses_the_hnsw_index(db):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, DIM)).astype(np.float32)
    fill(db, [note(f"n{i}", f"text {i}") for i in range(300)], vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    db.ensure_vector_index()
    for mode in retrieval.MODES:
        plan = retrieval.explain_search(db, unit([1, 2, 3, 4]), SearchRequest("text 5"), mode=mode)
        assert "chunks_embedding_hnsw" in plan, plan
    filtered = retrieval.explain_search(db, unit([1, 2, 3, 4]), SearchRequest("text", source_kind=NOTES), mode="vector")
    assert "chunks_embedding_hnsw" not in filtered  # a small filtered subset is searched exactly


def test_index_built_with_another_model_gets_the_rebuild_message(database_url):
    with store.Store(database_url) as other:
        other.ensure_schema("some-other-model", DIM)
        with pytest.raises(settings.UserError, match="create_and_persist_embeddings.py --rebuild"):
            retrieval.search(other, FakeEmbedder(), SearchRequest("x"))


def test_empty_index_raises_the_ingestion_hint(database_url):
    with store.Store(database_url) as fresh:
        hint = re.escape(f"run `{settings.python_command()} create_and_persist_embeddings.py` (or `make ingest`)")
        with pytest.raises(retrieval.EmptyIndexError, match=hint):
            retrieval.search(fresh, FakeEmbedder(), SearchRequest("x"))
        fresh.ensure_schema(FakeEmbedder.name, DIM)
        with pytest.raises(retrieval.EmptyIndexError):
            retrieval.search(fresh, FakeEmbedder(), SearchRequest("x"))


def test_parse_date_accepts_year_month_day_and_ends_them():
    local = datetime(2021, 1, 1).astimezone().tzinfo
    assert retrieval.parse_date("2021") == datetime(2021, 1, 1, tzinfo=local)
    assert retrieval.parse_date("2021", end=True) == datetime(2021, 12, 31, 23, 59, 59, 999999).astimezone()
    assert retrieval.parse_date("2024-02", end=True).date() == date(2024, 2, 29)
    assert retrieval.parse_date("2021-06-05").date() == date(2021, 6, 5)
    assert retrieval.parse_date("2021-06-05T10:30:00+02:00").utcoffset().total_seconds() == 7200
    for bad in ("yesterday", "2021-13", "21-06-05", ""):
        with pytest.raises(ValueError):
            retrieval.parse_date(bad)


def test_hit_to_json_is_json_safe():
    when = datetime(2021, 6, 26, 10, 15, tzinfo=UTC)
    hit = retrieval.Hit(text="x", source="s", score=0.5, doc_id="d", source_kind=MESSAGES, people=["Ana"],
                        started_at=when, ended_at=when, metadata={"ids": [1]})
    data = json.loads(json.dumps(hit.to_json()))
    assert data["started_at"] == "2021-06-26T10:15:00+00:00"
    assert {"source", "content", "score", "metadata", "people", "doc_id"} <= set(data)


# ---------------------------------------------------------------- CLI (real model)


@pytest.fixture
def real_index(database_url, embedder):
    texts = [
        (note("Travel/Kyoto", "Kyoto trip: we visited the bamboo forest and Fushimi Inari shrine."), None),
        (note("Cooking/Bread", "Sourdough bread recipe: flour, water, salt and a lively starter."), None),
        (chat_chunk("Maria Silva", "Maria: shall we go hiking on Saturday at the waterfall?",
                    ["Maria Silva", "Me"], datetime(2021, 6, 25, 9, tzinfo=UTC)), None),
        (chat_chunk("Bob", "Bob: the quarterly report is due on Monday", ["Bob", "Me"],
                    datetime(2022, 3, 1, 9, tzinfo=UTC)), None),
    ]
    chunks = [c for c, _ in texts]
    with store.Store(database_url) as db:
        db.ensure_schema(embedder.name, embedder.dimension)
        with db.transaction():
            db.copy_chunks(chunks, embedder.embed_passages([c.text for c in chunks]))
    return database_url


def run_cli(argv, embedding_model_path, database_url, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = retrieval.main([*argv, "--database-url", database_url, "--embedding-model", embedding_model_path])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prints_hits_and_json_with_filters(real_index, embedding_model_path, capsys):
    code, out, _ = run_cli(["bread recipe", "-k", "2"], embedding_model_path, real_index, capsys)
    assert code == 0
    assert out.splitlines()[0].startswith(" 1. ") and "<obsidian>:Cooking/Bread" in out.splitlines()[0]
    assert "Sourdough bread recipe" in out
    assert out.count("\n 2. ") == 1 and " 3. " not in out

    code, out, _ = run_cli(["weekend plans", "--json", "--person", "MARÍA", "--since", "2021-06",
                            "--until", "2021-06", "--source", "messages"], embedding_model_path, real_index, capsys)
    hits = json.loads(out)
    assert isinstance(hits, list) and len(hits) == 1
    hit = hits[0]
    assert hit["source"] == "<whatsapp>:Maria Silva"
    assert {"source", "content", "score", "metadata", "people", "started_at", "chat_name"} <= set(hit)
    assert hit["filters"]["people"] == ["MARÍA"] and hit["filters"]["source_kind"] == "messages"
    assert hit["filters"]["since"].startswith("2021-06-01T00:00:00")
    assert hit["filters"]["until"].startswith("2021-06-30T23:59:59")
    assert hit["fell_back"] is False


def test_cli_all_prints_every_passage_of_the_window_in_time_order(real_index, embedding_model_path, capsys):
    code, out, _ = run_cli(["anything", "--all", "--since", "2021", "--until", "2022", "--json"],
                           embedding_model_path, real_index, capsys)
    hits = json.loads(out)
    assert code == 0 and [h["source"] for h in hits] == ["<whatsapp>:Maria Silva", "<whatsapp>:Bob"]
    assert hits[0]["filters"]["since"].startswith("2021-01-01")
    code, out, _ = run_cli(["hiking", "--all", "--person", "bob"], embedding_model_path, real_index, capsys)
    assert out.splitlines()[0] == "1 passage in the window, oldest first"
    assert "<whatsapp>:Bob" in out and "Maria" not in out
    with pytest.raises(settings.UserError, match="--all needs a window"):
        run_cli(["x", "--all"], embedding_model_path, real_index, capsys)
    with pytest.raises(settings.UserError, match="no -k"):
        run_cli(["x", "--all", "--since", "2021", "-k", "3"], embedding_model_path, real_index, capsys)


def test_cli_fallback_note_goes_to_stderr(real_index, embedding_model_path, capsys):
    code, out, err = run_cli(["hiking", "--json", "--person", "Nobody"], embedding_model_path, real_index, capsys)
    assert code == 0
    assert err.strip().endswith("note: no passages matched the person filter; showing unfiltered results")
    hits = json.loads(out)
    assert len(hits) == 4 and all(hit["fell_back"] and hit["filters"] == {} for hit in hits)


def test_cli_reads_queries_from_stdin_as_json_lines(real_index, embedding_model_path, capsys, monkeypatch):
    code, out, _ = run_cli(["-", "-k", "1"], embedding_model_path, real_index, capsys,
                           stdin="bread recipe\n\nKyoto shrine\nquarterly report\n", monkeypatch=monkeypatch)
    assert code == 0
    lines = out.splitlines()
    assert [json.loads(line)[0]["source"] for line in lines] == [
        "<obsidian>:Cooking/Bread", "<obsidian>:Travel/Kyoto", "<whatsapp>:Bob"]


def test_cli_errors_are_one_line(real_index, embedding_model_path, database_url, capsys, tmp_path):
    with pytest.raises(settings.UserError, match="--since 'June' is not a date; use YYYY, YYYY-MM or YYYY-MM-DD"):
        run_cli(["x", "--since", "June"], embedding_model_path, real_index, capsys)
    with pytest.raises(settings.UserError, match="is after --until"):
        run_cli(["x", "--since", "2022", "--until", "2021"], embedding_model_path, real_index, capsys)
    with pytest.raises(SystemExit):
        run_cli(["x", "--source", "emails"], embedding_model_path, real_index, capsys)


def test_cli_on_an_empty_database_names_the_ingestion_command(pg_server, embedding_model_path, capsys):
    import subprocess
    import sys
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg_server.replace("/postgres?", f"/{name}?")
    try:
        proc = subprocess.run(
            [sys.executable, retrieval.__file__, "anything", "--database-url", url,
             "--embedding-model", embedding_model_path], capture_output=True, text=True, timeout=120)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {retrieval.EMPTY_INDEX_HINT}"]


# ---------------------------------------------------------------- sub-queries, bad input, batches


class MappingEmbedder(FakeEmbedder):
    """A chosen vector per query text (the rest get [1, 0, 0, 0]); records what it embedded."""

    def __init__(self, vectors: dict[str, list[float]], close_score: float | None = None):
        super().__init__()
        self.vectors = {text: unit(v) for text, v in vectors.items()}
        if close_score is not None:
            self.close_score = close_score

    def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return self.vectors.get(text, self.vector)


def test_fuse_rankings_sums_reciprocal_ranks_over_the_lists():
    from search_results import Hit, fuse_rankings

    def hit(n):
        return Hit(text=n, source=n, score=0.0, doc_id=n, source_kind=NOTES, chunk_id=ord(n))

    a, b, c, d = (hit(n) for n in "abcd")
    fused = fuse_rankings([[a, b, c], [hit("c"), d]])
    assert [h.text for h in fused] == ["c", "a", "b", "d"]  # c: 1/63 + 1/61; b and d tie at 1/62
    assert fused[0] is c and fused[0].fused_score == pytest.approx(1 / 63 + 1 / 61)


def test_sub_queries_are_searched_and_fused_with_the_question(db):
    # Three passages near the question, one near each sub-query; no word in common with any.
    vectors = {"A1": [1, 0, 0, 0.1], "A2": [1, 0, 0, 0.2], "A3": [1, 0, 0, 0.3], "B": [0, 1, 0, 0.1],
               "C": [0, 0, 1, 0.1]}
    fill(db, [note(n, f"passage {n.lower()}") for n in vectors], [unit(v) for v in vectors.values()])
    embedder = MappingEmbedder({"alpha question": [1, 0, 0, 0], "beta fact": [0, 1, 0, 0], "gamma fact": [0, 0, 1, 0]})
    plain = retrieval.search(db, embedder, SearchRequest("alpha question"), k=4)
    assert [h.title for h in plain.hits] == ["A1", "A2", "A3", "B"]
    joined = retrieval.search(db, embedder, SearchRequest("alpha question", sub_queries=["beta fact", "gamma fact"]), k=5)
    # Ranks (question, beta, gamma): A1 1,2,2; A2 2,3,3; B 4,1,5; C 5,5,1; A3 3,4,4.
    assert [h.title for h in joined.hits] == ["A1", "A2", "B", "C", "A3"]
    assert embedder.queries[-3:] == ["alpha question", "beta fact", "gamma fact"]
    assert joined.hits[2].fused_score == pytest.approx(1 / 64 + 1 / 61 + 1 / 65)


def test_sub_queries_keep_the_question_s_filters(db):
    fill(db, [note("Old", "old passage", started_at=datetime(2020, 1, 1, tzinfo=UTC)),
              note("New", "new passage", started_at=datetime(2023, 1, 1, tzinfo=UTC))],
         [unit([1, 0, 0, 0.1]), unit([0, 1, 0, 0.1])])
    embedder = MappingEmbedder({"beta fact": [0, 1, 0, 0]})
    request = SearchRequest("alpha", since=datetime(2019, 1, 1, tzinfo=UTC), until=datetime(2021, 1, 1, tzinfo=UTC),
                            sub_queries=["beta fact"])
    result = retrieval.search(db, embedder, request, k=5)
    assert [h.title for h in result.hits] == ["Old"] and result.filters_applied.keys() == {"since", "until"}


def test_a_question_with_nothing_close_still_gets_the_best_k_and_a_note(db):
    fill(db, [note(f"N{i}", f"passage {i}") for i in range(5)], [at_cosine(0.2 - i / 100) for i in range(5)])
    far = retrieval.search(db, MappingEmbedder({}, close_score=0.5), SearchRequest("zebra"), k=3)
    assert len(far.hits) == 3 and far.hits[0].title == "N0"
    assert far.note == "nothing in the index is close to this question (best similarity 0.20); these are the nearest passages"
    assert retrieval.search(db, MappingEmbedder({}, close_score=0.1), SearchRequest("zebra"), k=3).note is None
    assert retrieval.search(db, FakeEmbedder(), SearchRequest("zebra"), k=3).note is None  # no judgement


def test_a_very_long_question_is_cut_to_the_embedder_budget_with_a_note(embedder):
    from search_results import fit_query

    question = "where did we leave the spare keys " * 200
    text, note_text = fit_query(embedder, question)
    assert embedder.count_tokens(text) <= embedder.query_token_budget < embedder.count_tokens(question)
    assert question.startswith(text) and embedder.count_tokens(text + " where") > embedder.query_token_budget
    assert note_text.startswith(f"the question is {embedder.count_tokens(question)} tokens, more than the "
                                f"embedding model reads ({embedder.query_token_budget}); searched with its first ")
    assert fit_query(embedder, "spare keys?") == ("spare keys?", None)
    one_word = "x," * 2000  # no space to cut at: cut inside the "word"
    text, note_text = fit_query(embedder, one_word)
    assert 0 < len(text) < len(one_word) and embedder.count_tokens(text) <= embedder.query_token_budget


def test_cli_answers_a_very_long_question_with_a_note(real_index, embedding_model_path, capsys, monkeypatch):
    code, out, err = run_cli(["-", "-k", "2"], embedding_model_path, real_index, capsys,
                             stdin="sourdough bread recipe " * 300 + "\n", monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)[0]["source"] == "<obsidian>:Cooking/Bread"
    assert err.startswith("note: the question is ") and "more than the embedding model reads" in err


def test_cli_batches_keep_the_order_and_one_line_per_question(real_index, embedding_model_path, capsys, monkeypatch):
    import search_cli

    monkeypatch.setattr(search_cli, "QUERY_BATCH", 4)
    questions = ["bread recipe", "Kyoto shrine", "quarterly report", "hiking at the waterfall"] * 3
    code, out, _ = run_cli(["-", "-k", "1", "--json"], embedding_model_path, real_index, capsys,
                           stdin="\n".join(questions[:5] + [""] + questions[5:]) + "\n", monkeypatch=monkeypatch)
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(questions)
    expected = {"bread recipe": "<obsidian>:Cooking/Bread", "Kyoto shrine": "<obsidian>:Travel/Kyoto",
                "quarterly report": "<whatsapp>:Bob", "hiking at the waterfall": "<whatsapp>:Maria Silva"}
    assert [json.loads(line)[0]["source"] for line in lines] == [expected[q] for q in questions]
    # The same hits as one question at a time.
    _, single, _ = run_cli(["Kyoto shrine", "-k", "1", "--json"], embedding_model_path, real_index, capsys)
    assert json.loads(lines[1]) == json.loads(single)


def test_line_batches_answer_a_waiting_writer_at_once():
    import threading

    from search_cli import line_batches

    second_line_allowed = threading.Event()

    def conversation():
        yield "first\n"
        assert second_line_allowed.wait(10)  # the writer waits for the first answer
        yield "second\n"

    batches = line_batches(conversation(), size=8)
    assert next(batches) == ["first\n"]
    second_line_allowed.set()
    assert next(batches) == ["second\n"]
    assert list(batches) == []
    many = [f"q{i}\n" for i in range(100)]
    got = list(line_batches(iter(many), size=8))
    assert [line for batch in got for line in batch] == many and max(map(len, got)) <= 8
