"""Names as signals: the people of the index a question names ("When did Aisha adopt a cat?")
and the question without their names. Their passages join the search's reciprocal rank fusion
as a third list (retrieve_related_content_from_db._ranking), ranked by the question without
their name, and then by what they said themselves (speaker_vectors).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chunking import MESSAGES, fold_text
from search_results import MIN_WORD_LENGTH, STOPWORDS, text_query_words

if TYPE_CHECKING:
    from store import Store

MAX_NAMED_PEOPLE = 4  # a query names at most this many people

# A named person's name is in every passage of their chat, so the keyword half drops it as a
# common word: their passages are ranked by vector distance to the question without it instead.
_people_cache: dict[tuple, dict[str, list[str]]] = {}


def people_by_word(store: "Store") -> dict[str, list[str]]:
    """{folded word of a name: the folded names with it} over every chat participant and
    speaker of the index ("aisha" -> ["aisha"], "silva" -> ["maria silva"]). Read once per
    state of the documents table (the scan of every chunk's people runs after ingestion only)."""
    state = store.conn.execute("SELECT count(*), max(indexed_at) FROM documents").fetchone()
    key = (store.url, *state)
    if key not in _people_cache:
        rows = store.conn.execute(
            "SELECT DISTINCT p FROM chunks, unnest(people_folded) AS p WHERE source_kind = %s", (MESSAGES,)).fetchall()
        by_word: dict[str, list[str]] = {}
        for (name,) in rows:
            for word in re.findall(r"[^\W_]+", name):
                if len(word) > MIN_WORD_LENGTH and word not in STOPWORDS:
                    by_word.setdefault(word, []).append(name)
        _people_cache.clear()  # one index per process in practice: keep only the newest state
        _people_cache[key] = by_word
    return _people_cache[key]


def named_people(store: "Store", query: str, by_word: dict[str, list[str]] | None = None) -> list[str]:
    """The index's people the query names by a word of their name, as folded full names (`by_word`:
    `people_by_word`, read once by a caller that names many queries)."""
    by_word = people_by_word(store) if by_word is None else by_word
    names: list[str] = []
    for word in text_query_words(query):
        for name in by_word.get(word, ()):
            if name not in names:
                names.append(name)
    return names[:MAX_NAMED_PEOPLE]


def without_names(query: str, names: list[str]) -> str | None:
    """The query without the words of `names` (folded full names, `named_people`), or None when
    it names none of them or is nothing but names: "What milestone did Leila reach?" ->
    "What milestone did reach?". Every passage of a person's chat carries their name (header,
    speaker labels), so ranking them by a query with the name favours the ones where they
    talk most (often small talk); without it they rank by what is asked (bench_memory)."""
    words = {word for name in names for word in re.findall(r"[^\W_]+", name)
             if len(word) > MIN_WORD_LENGTH and word not in STOPWORDS}  # the words named_people matches
    if not words:
        return None
    # A name word goes with a possessive 's after it ("Leila's").
    kept = " ".join(re.sub(r"[^\W_]+(?:['’]s\b)?", lambda m: "" if fold_text(re.split(r"['’]", m.group())[0])
                           in words else m.group(), query).split())
    return None if kept == " ".join(query.split()) or not re.search(r"[^\W_]", kept) else kept
