"""Keyword search with word stems (text_search.py), on a real embedded PostgreSQL: a word finds
its other forms in the index's languages, a change of languages rebuilds the keyword column in
place without losing or re-embedding a row, and a bad language name is refused before anything
changes."""
from __future__ import annotations

import numpy as np
import pytest

import retrieve_related_content_from_db as retrieval
import settings
import store
import text_search
from retrieve_related_content_from_db import SearchRequest
from test_retrieval import DIM, FakeEmbedder, at_cosine, fill, note, sources

# The vector side is the same for every chunk: only the keyword side can pick one.
MOVING = note("Moving", "Moving\nSigned the lease; the moving truck is booked for the 3rd.")
BILLING = note("Billing", "Billing\nThe invoices go out on the first working day.")
PORTUGUESE = note("Viagens", "Viagens\nAs viagens de trem pelo interior foram lindas.")


def keyword_hit(db: store.Store, question: str) -> list[str]:
    """The sources the keyword side matched for `question` (text_rank set), best first."""
    result = retrieval.search(db, FakeEmbedder(), SearchRequest(question), k=3)
    return [hit.source for hit in result.hits if hit.text_rank is not None]


def filled(url: str, languages) -> store.Store:
    db = store.Store(url)
    db.ensure_schema(FakeEmbedder.name, DIM, text_languages=languages)
    fill(db, [MOVING, BILLING, PORTUGUESE], [at_cosine(0.5, spread=i) for i in range(3)])
    return db


def test_a_word_finds_its_other_forms_with_english_stems(database_url):
    with filled(database_url, ("english",)) as db:
        assert keyword_hit(db, "When is the move happening?") == [MOVING.source]
        assert db.text_languages() == ("english",)


def test_without_stems_only_the_words_and_their_prefixes_match(database_url):
    with filled(database_url, ()) as db:
        assert keyword_hit(db, "When is the move happening?") == []
        assert keyword_hit(db, "When did the movers come?") == []
        assert keyword_hit(db, "foi lindo") == []
        assert keyword_hit(db, "the invoice") == [BILLING.source]  # "invoice" is a prefix of "invoices"


def test_a_change_of_languages_rebuilds_the_column_in_place(database_url):
    with filled(database_url, ()) as db:
        ids = sorted(row[0] for row in db.conn.execute("SELECT id FROM chunks").fetchall())
        db.conn.commit()
        rebuilt = db.ensure_schema(FakeEmbedder.name, DIM, text_languages=("english", "portuguese"))
        assert rebuilt is not None and "english, portuguese" in rebuilt and "TEXT_SEARCH_LANGUAGES" in rebuilt
        assert sorted(row[0] for row in db.conn.execute("SELECT id FROM chunks").fetchall()) == ids
        db.conn.commit()
        assert db.ensure_schema(FakeEmbedder.name, DIM, text_languages=("english", "portuguese")) is None
    with store.Store(database_url) as reader:  # another connection reads the index's own languages
        assert reader.text_languages() == ("english", "portuguese")
        assert keyword_hit(reader, "foi lindo") == [PORTUGUESE.source]  # "lindas"
        assert keyword_hit(reader, "moved") == [MOVING.source]


def test_an_index_from_before_stems_gets_them_at_the_next_ingestion(database_url):
    with filled(database_url, ()) as db:
        # What an older version left: the exact-words column and no record of languages.
        db.conn.execute("DELETE FROM index_meta WHERE key = %s", (text_search.META_KEY,))
        db.conn.commit()
        note_text = db.ensure_schema(FakeEmbedder.name, DIM, text_languages=("english",))
        assert note_text is not None and "before: none" in note_text
        assert keyword_hit(db, "the move") == [MOVING.source]


def test_an_unknown_language_is_refused_before_anything_changes(database_url):
    with filled(database_url, ("english",)) as db:
        with pytest.raises(settings.UserError, match="TEXT_SEARCH_LANGUAGES: 'klingon' is not .*portuguese"):
            db.ensure_schema(FakeEmbedder.name, DIM, text_languages=("english", "klingon"))
    with store.Store(database_url) as reader:
        assert reader.text_languages() == ("english",)
        assert keyword_hit(reader, "the move") == [MOVING.source]
        assert reader.count_chunks() == 3


def test_the_setting_is_read_as_a_list_of_names(monkeypatch):
    monkeypatch.setenv("TEXT_SEARCH_LANGUAGES", " English, portuguese ,english,")
    assert text_search.configured_languages() == ("english", "portuguese")
    monkeypatch.setenv("TEXT_SEARCH_LANGUAGES", "none")
    assert text_search.configured_languages() == ()
    assert text_search.configured_languages("german") == ("german",)  # the flag wins
    monkeypatch.delenv("TEXT_SEARCH_LANGUAGES")
    assert text_search.configured_languages() == tuple(settings.SETTINGS["TEXT_SEARCH_LANGUAGES"][0].split(","))


def test_stem_words_are_query_parameters_not_sql(database_url):
    # A question full of tsquery syntax and quotes reaches the server as data only.
    with filled(database_url, ("english",)) as db:
        result = retrieval.search(db, FakeEmbedder(), SearchRequest("move' | !x & (y) <-> z:*"), k=3)
        assert MOVING.source in sources(result)
        assert np.isfinite([hit.score for hit in result.hits]).all()
