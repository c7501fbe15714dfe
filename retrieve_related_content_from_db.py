"""Top-k retrieval from the index: hybrid vector (HNSW) + full-text search fused by reciprocal
rank in one SQL statement, with date / person / source-kind filters and a per-document cap.
Also a search CLI:

    python retrieve_related_content_from_db.py "what did Maria and I plan for Saturday?"
    python retrieve_related_content_from_db.py "Kyoto trip" --since 2021-06 --person maria --json
    python retrieve_related_content_from_db.py "May" --since 2023-05 --until 2023-05 --all   # every passage
    printf 'query one\\nquery two\\n' | python retrieve_related_content_from_db.py - --json

Hits come back best first. `Hit.score` is the cosine similarity of the passage to the query
(0..1, comparable across modes); in hybrid mode the order follows `Hit.fused_score`, the sum of
1/(60 + rank) over the vector and the text rankings. The request, hit and result types and the
SQL-free steps (fusion, the per-document cap, renderings) are in `search_results`; this module
holds the SQL that reads the index.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

import settings
import text_search
from chunking import MESSAGES, MTIME_ORIGIN, NOTES
from passage_context import with_context
from question_names import named_people, people_by_word, without_names  # noqa: F401
from speaker_vectors import speaker_ranking
# The search's types and SQL-free steps; callers may import them from here as before.
from search_results import (DEFAULT_TOP_K, MAX_CHUNKS_PER_DOCUMENT, MIN_WORD_LENGTH, RRF_K, STOPWORDS,  # noqa: F401
                            Hit, SearchRequest, SearchResult, by_fused_score, date_bound, diversify, diversity_key,
                            embed_queries, filter_names, fit_query, format_hit, fuse_ranking, fuse_rankings,
                            hits_json, join_notes, nothing_close_note, parse_date, result_json, text_query_words)

if TYPE_CHECKING:  # heavy modules load only when a search runs
    from embedding_generator_multilingual import Embedder
    from store import Store

DEFAULT_MODE = "hybrid"
MODES = ("hybrid", "vector")
SOURCE_KINDS = (NOTES, MESSAGES)
# Candidates taken from each ranking before fusion and the diversity cap: enough to refill
# the top-k after capping chatty documents.
MIN_CANDIDATES = 50
CANDIDATES_PER_K = 5
# HNSW returns at most ef_search rows, and a narrow beam misses isolated passages among many
# near-duplicates (templated daily notes, small talk): on the quality bench's 1,061 e5 vectors
# the exact best match was missing from the HNSW top-10 for 25 of 55 questions at 100, 10 at
# 400, none at 1000 (pgvector's default graph). With store.HNSW_EF_CONSTRUCTION 128, the vector
# half alone (78 questions, recall@10): 100: 0.83, 200: 0.91, 400: 0.96. 400 costs 27 ms at
# 100k x 1024 (bench/bench_retrieval.py).
DEFAULT_EF_SEARCH = 400
# pgvector 0.6 filters after the HNSW scan: a filtered subset this small is searched exactly;
# a larger one goes through the index with the widest beam pgvector allows.
EXACT_SEARCH_MAX_ROWS = 20_000
FILTERED_EF_SEARCH = 1000
# The vector half ranks by cos(question - CENTROID_WEIGHT x the mean of all chunk vectors, passage):
# with unit passage vectors that is cos(question, passage) - CENTROID_WEIGHT x (mean . passage) up
# to a constant factor, so generic passages near everything (templated daily notes, small talk)
# stop crowding out the one that answers; the HNSW index serves it as any query. The similarity
# shown (and "nothing close") stays the plain cosine. Weight (bench_quality e5-small hybrid
# recall@10 without / with the keeper's filters; bench_memory MiniLM all, inference): 0: 0.94 /
# 0.94, 0.911, 0.757; 0.25: 0.96 / 0.97, 0.912, 0.762. Before bench_quality counted both facts of
# a piece (one question lower): 0.2: 0.95 / 0.96, 0.912, 0.761; 0.3: 0.96 / 0.96, 0.908, 0.749;
# 0.5: 0.96 / 0.96, 0.910, 0.748. Above 0.25 the inference questions lose.
CENTROID_WEIGHT = 0.25
# A named person's passages (question_names) weigh this much in the fusion.
NAMED_PERSON_WEIGHT = 2.0  # bench_memory: 1 -> 0.815, 2 -> 0.825, 3 -> 0.823 (all questions)
# The named person's own lines re-rank this many candidates per passage asked for, at this weight
# (bench_memory, all questions: depth 1 / 2 / 3 / 5 per k -> 0.909 / 0.911 / 0.909 / 0.905; weight 3: 0.905 at 5).
# Not centred (CENTROID_WEIGHT): centring its question at 0.75 gave bench_memory all 0.912 -> 0.916
# at seed 15 but 0.908 -> 0.906 at seed 16 and 0.916 -> 0.908 at seed 17.
SPEAKER_DEPTH_PER_K, NAMED_SPEAKER_WEIGHT = 2, 2.0
PREFIX_MATCH_LENGTH = 4
# A query word found in more than this share of all chunks is left out of the keyword match.
COMMON_WORD_FRACTION = 0.05
COMMON_WORD_MIN_CHUNKS = 50  # ...and in more than this many (small indexes keep every word)

EMPTY_INDEX_HINT = (
    f"the index is empty; run {settings.ingest_hint()} first "
    "(it reads OBSIDIAN_VAULT_PATH and WHATSAPP_WORKING_PATH)"
)

_HIT_COLUMNS = ("id", "doc_id", "source_kind", "source", "content", "title", "heading", "chat_name",
                "chat_id", "people", "tags", "started_at", "ended_at", "metadata")


class EmptyIndexError(settings.UserError):
    """Nothing has been ingested yet; the message names the ingestion command."""


# ---------------------------------------------------------------- SQL pieces


def _tsquery_text(words: list[str]) -> str:
    """OR of the words; words of PREFIX_MATCH_LENGTH+ letters also match as prefixes
    ("finish" finds "finished"). Words are letters/digits only, so quoting them keeps tsquery
    syntax out of user hands: `_tsquery_text(["kyoto", "spa"]) == "'kyoto':* | 'spa'"`."""
    return " | ".join(f"'{w}':*" if len(w) >= PREFIX_MATCH_LENGTH else f"'{w}'" for w in words)


def common_words_query(store: "Store", words: list[str]):
    """The cursor (sent, not yet read: a pipeline sends it with others) whose rows are those of
    `words` found in more than COMMON_WORD_FRACTION of chunks (and COMMON_WORD_MIN_CHUNKS), from
    the planner's statistics (ANALYZE keeps them; nothing is dropped before the first ANALYZE).
    Such words ("2021", the name of the person half the chats are with) only add noise to a
    keyword match."""
    return store.conn.execute(
        """SELECT e.word FROM pg_stats AS s,
                  unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS e(word, freq)
           WHERE s.schemaname = current_schema() AND s.tablename = 'chunks' AND s.attname = 'tsv'
             AND e.freq > %s AND e.freq * (SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass) > %s
             AND e.word = ANY(%s)""",
        (COMMON_WORD_FRACTION, COMMON_WORD_MIN_CHUNKS, words),
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filter_sql(request: SearchRequest, params: dict):
    """The WHERE condition for the request's filters (None when unfiltered) and what it applies."""
    from psycopg import sql

    from chunking import fold_text
    from store import REAL_DATE

    conditions = []
    applied: dict = {}
    since = date_bound(request.since, end=False)
    until = date_bound(request.until, end=True)
    # The chunk's [started_at, ended_at] span overlaps the requested range (the store keeps both
    # ends of every dated span). Plain column comparisons, so the indexes chunks_started and
    # chunks_ended serve them; a date from a file's modification time is no date here.
    if since is not None:
        params["since"] = since
        conditions.append(sql.SQL("ended_at >= %(since)s"))
        applied["since"] = since.isoformat()
    if until is not None:
        params["until"] = until
        conditions.append(sql.SQL("started_at <= %(until)s"))
        applied["until"] = until.isoformat()
    if since is not None or until is not None:
        conditions.append(sql.SQL(REAL_DATE))
    names = [fold_text(p).strip() for p in request.people]
    names = [" ".join(n.split()) for n in names if n.strip()]
    if names:
        # Whole words inside a participant's name (the GIN index on people_words finds the
        # candidates, LIKE checks the words are together in one name), or the name mentioned in
        # the text (the GIN index on tsv).
        alternatives = []
        for i, name in enumerate(names):
            params[f"name_words_{i}"] = name.split()
            params[f"name_pattern_{i}"] = f"% {_like_escape(name)} %"
            params[f"name_phrase_{i}"] = name
            alternatives.append(sql.SQL(
                "(people_words @> {words}::text[] AND EXISTS (SELECT 1 FROM unnest(people_folded) AS p "
                "WHERE ' ' || p || ' ' LIKE {pattern})) OR tsv @@ phraseto_tsquery('simple', {phrase})").format(
                words=sql.Placeholder(f"name_words_{i}"), pattern=sql.Placeholder(f"name_pattern_{i}"),
                phrase=sql.Placeholder(f"name_phrase_{i}")))
        conditions.append(sql.SQL("({})").format(sql.SQL(" OR ").join(alternatives)))
        applied["people"] = list(request.people)
    if request.source_kind:
        if request.source_kind not in SOURCE_KINDS:
            raise settings.UserError(f"source kind {request.source_kind!r} is not one of {', '.join(SOURCE_KINDS)}")
        params["source_kind"] = request.source_kind
        conditions.append(sql.SQL("source_kind = %(source_kind)s"))
        applied["source_kind"] = request.source_kind
    if not conditions:
        return None, applied
    return sql.SQL(" AND ").join(conditions), applied


def _search_sql(where, mode: str, exact: bool, with_text: bool, text_languages: tuple[str, ...] = ()):
    """One statement: vector candidates, text candidates (their words also stemmed in
    `text_languages`, the index's), fused by reciprocal rank."""
    from psycopg import sql

    where_clause = sql.SQL("WHERE {}").format(where) if where is not None else sql.SQL("")
    if exact:
        # A small filtered subset: exact distances over it (a CTE cannot use the HNSW index).
        vector_cte = sql.SQL("subset_rows AS MATERIALIZED (SELECT id, embedding FROM chunks {where}),\n").format(
            where=where_clause)
        vector_source = sql.SQL("subset_rows")
    else:
        vector_cte = sql.SQL("")
        vector_source = sql.SQL("chunks {where}").format(where=where_clause)
    parts = [vector_cte, sql.SQL(
        """vector_hits AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank FROM (
        SELECT id, embedding <=> %(q)s AS distance FROM {source}
        ORDER BY embedding <=> %(q)s LIMIT %(n)s) AS nearest)""").format(source=vector_source)]
    if mode == "hybrid" and with_text:
        text_where = sql.SQL("AND {}").format(where) if where is not None else sql.SQL("")
        parts.append(sql.SQL(
            """,
text_hits AS (
    SELECT id, row_number() OVER (ORDER BY text_score DESC, distance, id) AS rank FROM (
        SELECT id, ts_rank_cd(tsv, {tsquery}) AS text_score,
               embedding <=> %(q)s AS distance FROM chunks
        WHERE tsv @@ {tsquery} {where}
        -- equal keyword scores: the semantically closer passage first
        ORDER BY text_score DESC, distance, id LIMIT %(n)s) AS matched),
fused AS (
    SELECT coalesce(v.id, t.id) AS id, v.rank AS vector_rank, t.rank AS text_rank,
           coalesce(1.0 / ({rrf} + v.rank), 0) + coalesce(1.0 / ({rrf} + t.rank), 0) AS fused_score
    FROM vector_hits AS v FULL OUTER JOIN text_hits AS t ON v.id = t.id)""").format(
            where=text_where, rrf=sql.Literal(RRF_K), tsquery=text_search.tsquery_sql(text_languages)))
    else:
        parts.append(sql.SQL(
            """,
fused AS (SELECT id, rank AS vector_rank, NULL::bigint AS text_rank,
                 1.0 / ({rrf} + rank) AS fused_score FROM vector_hits)""").format(rrf=sql.Literal(RRF_K)))
    columns = sql.SQL(", ").join(sql.SQL("c.") + sql.Identifier(c) for c in _HIT_COLUMNS)
    return sql.SQL(
        """WITH {ctes}
SELECT {columns}, 1 - (c.embedding <=> %(shown)s) AS similarity,
       f.fused_score, f.vector_rank, f.text_rank
FROM fused AS f JOIN chunks AS c ON c.id = f.id
ORDER BY f.fused_score DESC, f.vector_rank NULLS LAST, c.id""").format(
        ctes=sql.SQL("").join(parts), columns=columns)


def _count_at_most(store: "Store", where, params: dict, limit: int):
    """The cursor of a count of the rows `where` picks, stopping at `limit` (sent, not read)."""
    from psycopg import sql

    query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM chunks WHERE {} LIMIT %(count_limit)s) AS s").format(where)
    return store.conn.execute(query, {**params, "count_limit": limit})


def _row_to_hit(row, mode: str) -> Hit:
    """A result row (the _HIT_COLUMNS, then similarity, fused score and the two ranks) as a Hit."""
    values = dict(zip(_HIT_COLUMNS, row[: len(_HIT_COLUMNS)]))
    similarity, fused, vector_rank, text_rank = row[len(_HIT_COLUMNS):]
    hit = Hit(
        text=values["content"], source=values["source"], score=float(similarity),
        doc_id=values["doc_id"], source_kind=values["source_kind"], title=values["title"],
        heading=values["heading"], chat_name=values["chat_name"], chat_id=values["chat_id"],
        people=list(values["people"] or []), tags=list(values["tags"] or []),
        started_at=values["started_at"], ended_at=values["ended_at"], metadata=values["metadata"] or {},
        fused_score=float(fused) if mode == "hybrid" else None,
        vector_rank=vector_rank, text_rank=text_rank, chunk_id=values["id"],
    )
    if hit.metadata.get("date_origin") == MTIME_ORIGIN:
        # When the file was last touched is no date of its content: the prompt, the sources
        # and the period summaries see an undated passage, /sources shows it as a last resort.
        hit.modified_at, hit.started_at, hit.ended_at = hit.started_at, None, None
    return hit


# ---------------------------------------------------------------- search


def check_index(store: "Store", embedder: "Embedder") -> None:
    """Raise EmptyIndexError for a database never ingested into, and the store's rebuild
    message when the index was built with another model."""
    info = store.index_info()
    if info is None:
        raise EmptyIndexError(EMPTY_INDEX_HINT)
    folder = getattr(embedder, "folder", None)
    expect = getattr(embedder, "expect_dimension", None)
    if expect is None:  # an embedder that knows its size without loading anything
        if (info.model, info.dimension) != (embedder.name, embedder.dimension):
            store.check_model(embedder.name, embedder.dimension, folder)
    else:
        # Checked without loading the model: the index's own model (same name, or the same
        # folder however spelt) passes; its real size is checked when it loads.
        if info.model != embedder.name:
            try:
                store.check_model(embedder.name, info.dimension, folder)
            except settings.UserError:
                store.check_model(embedder.name, embedder.dimension, folder)  # the message names its real size
        expect(info.dimension)
    store.register_vector()


@dataclasses.dataclass
class _Statement:
    """One search statement on its way to the server (`_run_all` sends it in two steps)."""
    params: dict
    where: object
    applied: dict
    mode: str
    words: list[str]
    cursors: tuple = ()


def _statement(vector, request: SearchRequest, k: int, mode: str, use_filters: bool) -> _Statement:
    """The statement for one query (its filters, its words for the keyword half), not yet sent."""
    import numpy as np

    params: dict = {"q": np.asarray(vector, dtype=np.float32), "n": max(MIN_CANDIDATES, CANDIDATES_PER_K * k)}
    where, applied = _filter_sql(request, params) if use_filters else (None, {})
    words = text_query_words(request.query) if mode == "hybrid" else []
    return _Statement(params, where, applied, mode, words)


def _run_all(store: "Store", statements: list[_Statement], explain: bool = False) -> list:
    """Each statement's rows (the plan text with `explain`), in two round trips for them all:
    the lookups a statement's shape depends on (its common words, the size of its filtered
    subset), then the statements, each after its HNSW beam width (pipelined: sent together)."""
    conn = store.conn
    # Off autocommit, all in a transaction block of their own (a search leaves none open).
    with contextlib.nullcontext() if conn.autocommit else conn.transaction():
        languages = store.text_languages()  # the index's keyword stems: read once per connection
        centroid = store.embedding_centroid()  # likewise
        for s in statements:
            s.params["shown"] = s.params["q"]
            if centroid is not None and centroid.shape == s.params["q"].shape:
                s.params["q"] = s.params["q"] - CENTROID_WEIGHT * centroid
        if any(s.words or s.where is not None for s in statements):
            with conn.pipeline():
                for s in statements:
                    s.cursors = (common_words_query(store, s.words) if s.words else None,
                                 _count_at_most(store, s.where, s.params, EXACT_SEARCH_MAX_ROWS + 1)
                                 if s.where is not None else None)
        _send_statements(store, statements, explain, languages)
    rows = [s.cursors[0].fetchall() for s in statements]
    return ["\n".join(r[0] for r in plan) for plan in rows] if explain else rows


def _send_statements(store: "Store", statements: list[_Statement], explain: bool,
                     languages: tuple[str, ...]) -> None:
    """Each statement's final shape from its lookups (and the index's stem `languages`), and
    the statements sent in one pipeline."""
    from psycopg import sql

    conn = store.conn
    with conn.pipeline():
        for s in statements:
            common, counted = s.cursors or (None, None)
            if common is not None:
                dropped = {r[0] for r in common.fetchall()}
                s.words = [w for w in s.words if w not in dropped]
            s.params["tsq"] = _tsquery_text(s.words)
            s.params["stem_words"] = " | ".join(s.words)
            exact = counted is not None and counted.fetchone()[0] <= EXACT_SEARCH_MAX_ROWS
            ef_search = max(DEFAULT_EF_SEARCH if s.where is None else FILTERED_EF_SEARCH, s.params["n"])
            statement = _search_sql(s.where, s.mode, exact, with_text=bool(s.words), text_languages=languages)
            # Session-wide: every search statement sets its own just before it runs.
            conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(min(ef_search, 1000)),))
            s.cursors = (conn.execute(sql.SQL("EXPLAIN ") + statement if explain else statement, s.params),)


def search(store: "Store", embedder: "Embedder", request: SearchRequest, k: int = DEFAULT_TOP_K,
           mode: str = DEFAULT_MODE) -> SearchResult:
    """The top-`k` chunks for `request`, best first (see the module docstring for the scores);
    the request's sub-queries are embedded in the same batch and fused in (`search_vector`).

    A filtered search that finds nothing is repeated without filters (`fell_back`, `note`); a
    question too long for the embedder is cut, and one with no close passage still gets the
    nearest ones, each with a note. Raises EmptyIndexError when nothing was ingested,
    UserError for a model mismatch."""
    if mode not in MODES:
        raise settings.UserError(f"search mode {mode!r} is not one of {', '.join(MODES)}")
    check_index(store, embedder)
    return search_embedded(store, embedder, [request], k, mode)[0]


def search_embedded(store: "Store", embedder: "Embedder", requests: list[SearchRequest], k: int = DEFAULT_TOP_K,
                    mode: str = DEFAULT_MODE) -> list[SearchResult]:
    """`search` for several requests, their questions and sub-queries (and those without the
    names they name, `without_names`) embedded in one batch (the index already checked:
    `check_index`); one result per request, in order."""
    texts, layouts, cut_notes, by_word = [], [], [], people_by_word(store)
    for request in requests:
        fitted = [fit_query(embedder, text) for text in (request.query, *request.sub_queries)]
        cut_notes.append(fitted[0][1])  # a cut sub-query is the keeper's business, not the user's
        queries = [text for text, _ in fitted]
        name_free = [without_names(text, named_people(store, text, by_word)) for text in queries]
        layouts.append((len(texts), len(queries), [text is not None for text in name_free]))
        texts.extend(queries + [text for text in name_free if text is not None])
    vectors = embed_queries(embedder, texts)
    results = []
    for request, (first, count, has_name_free), cut_note in zip(requests, layouts, cut_notes):
        extra = iter(vectors[first + count:])
        name_free_vectors = [next(extra) if has else None for has in has_name_free]
        result = search_vector(store, vectors[first], request, k, mode, sub_vectors=vectors[first + 1:first + count],
                               name_free_vectors=name_free_vectors)
        result.note = join_notes(cut_note, result.note,
                                 nothing_close_note(result.hits, getattr(embedder, "close_score", None)))
        results.append(result)
    return results


def search_vector(store: "Store", vector, request: SearchRequest, k: int = DEFAULT_TOP_K,
                  mode: str = DEFAULT_MODE, sub_vectors=(), name_free_vectors=()) -> SearchResult:
    """`search` with the query already embedded (benchmarks, tests with chosen vectors).
    `sub_vectors`: the embedded `request.sub_queries`; each is ranked under the same filters
    (or none, after a fallback) and fused with the question's ranking by reciprocal rank.
    `name_free_vectors`: for the question and each sub-query, its embedding `without_names` (or
    None); it ranks the passages of the people it names or filters by (missing: its own does)."""
    name_free = list(name_free_vectors) + [None] * (1 + len(sub_vectors) - len(name_free_vectors))
    hits, applied = _ranking(store, vector, request, k, mode, use_filters=True, name_free_vector=name_free[0])
    fell_back, note = False, None
    if not hits and applied:
        what = " and ".join(filter_names(applied))
        note = f"no passages matched the {what} filter; showing unfiltered results"
        fell_back = True
        hits, applied = _ranking(store, vector, request, k, mode, use_filters=False, name_free_vector=name_free[0])
    if not hits:
        raise EmptyIndexError(EMPTY_INDEX_HINT)
    if len(sub_vectors):
        rankings = [hits]
        for query, sub_vector, sub_name_free in zip(request.sub_queries, sub_vectors, name_free[1:]):
            sub_request = dataclasses.replace(request, query=query, sub_queries=[])
            rankings.append(_ranking(store, sub_vector, sub_request, k, mode, use_filters=not fell_back,
                                     name_free_vector=sub_name_free)[0])
        hits = fuse_rankings(rankings)
    hits = with_context(store, diversify(hits, len(hits)), k)
    return SearchResult(hits=hits, request=request, filters_applied=applied, fell_back=fell_back, note=note)


def _ranking(store: "Store", vector, request: SearchRequest, k: int, mode: str,
             use_filters: bool, name_free_vector=None) -> tuple[list[Hit], dict]:
    """(candidates best first, the filters applied) for one query: the SQL's fused vector and
    keyword rankings, then in hybrid mode the passages of the people it names fused in as a
    third list, ranked by `name_free_vector` where given (their statement runs alongside, see
    "names as signals"), then the candidates they speak in, by their own lines (speaker_vectors).
    Under a people filter, that vector ranks the question's own statement, whose candidates the
    filtered people's own lines re-rank alike."""
    filtered = use_filters and request.people and name_free_vector is not None  # bench_memory: 0.857 -> 0.875
    statements = [_statement(name_free_vector if filtered else vector, request, k, mode, use_filters)]
    applied = statements[0].applied
    names = named_people(store, request.query) if mode == "hybrid" and not request.people else []
    if names:
        # Only the person's passages, under the same filters as the question.
        person_request = dataclasses.replace(request, people=names) if applied else SearchRequest(
            request.query, people=names)
        person_vector = vector if name_free_vector is None else name_free_vector
        statements.append(_statement(person_vector, person_request, k, "vector", use_filters=True))
    rows = _run_all(store, statements)
    hits = [_row_to_hit(row, mode) for row in rows[0]]
    # Whose own lines re-rank the candidates: the people named, or filtered by (their index names).
    speakers = names or (named_people(store, " ".join(request.people)) if filtered and mode == "hybrid" else [])
    if hits and speakers:
        fused = {hit.chunk_id: hit for hit in hits}
        if names:
            fuse_ranking(fused, [_row_to_hit(row, "hybrid") for row in rows[1]], NAMED_PERSON_WEIGHT)
        if name_free_vector is not None:  # a question of nothing but names asks nothing of what they said
            spoken = speaker_ranking(store, name_free_vector, list(fused.values()), speakers, SPEAKER_DEPTH_PER_K * k)
            fuse_ranking(fused, spoken, NAMED_SPEAKER_WEIGHT)
        hits = by_fused_score(fused.values())
    return hits, applied


def window_passages(store: "Store", request: SearchRequest, vector=None) -> list[Hit]:
    """Every chunk that matches the request's filters (dates, people, source kind), oldest
    first, with no top-k: what a question about a whole period has to read. `request.query` is
    not used to select; with `vector` (the embedded query) each hit's `score` is its cosine
    similarity, else 0.0. A request without any filter is refused (it would be the whole index)."""
    import numpy as np
    from psycopg import sql

    params: dict = {}
    where, applied = _filter_sql(request, params)
    if where is None:
        raise settings.UserError("reading every passage needs a window: give --since/--until, --person or --source")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _HIT_COLUMNS)
    similarity = sql.SQL("0.0::float8")
    if vector is not None:
        store.register_vector()
        params["q"] = np.asarray(vector, dtype=np.float32)
        similarity = sql.SQL("1 - (embedding <=> %(q)s)")
    statement = sql.SQL(
        "SELECT {columns}, {similarity}, NULL::float8, NULL::bigint, NULL::bigint FROM chunks WHERE {where} "
        # Undated rows cannot pass a date filter; the id keeps equal times in ingestion order.
        "ORDER BY coalesce(started_at, ended_at), id").format(columns=columns, similarity=similarity, where=where)
    rows = store.conn.execute(statement, params).fetchall()
    store.conn.commit()
    return [_row_to_hit(row, "vector") for row in rows]


def explain_search(store: "Store", vector, request: SearchRequest, k: int = DEFAULT_TOP_K,
                   mode: str = DEFAULT_MODE) -> str:
    """The query plan of the statement `search` would run (to check the HNSW index is used)."""
    store.register_vector()
    return _run_all(store, [_statement(vector, request, k, mode, use_filters=True)], explain=True)[0]


def applied_filters(request: SearchRequest) -> dict:
    """The filters a request applies, as `SearchResult.filters_applied` shows them."""
    return _filter_sql(request, {})[1]


def main(argv: list[str] | None = None) -> int:
    """The search CLI (see the module docstring); its flags and loop are in `search_cli`."""
    from search_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    settings.run_cli(main)
