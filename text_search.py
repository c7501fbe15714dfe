"""Keyword search's word stems: besides each chunk's exact words, its `tsv` column holds their
stems in the PostgreSQL text search languages of TEXT_SEARCH_LANGUAGES, so "move" finds a note
titled "Moving" (bench/bench_quality.py, multilingual-e5-small, hybrid recall@10: exact words
0.945, with English stems 0.964; bench/bench_memory.py unchanged at 0.911).

The index records its languages in index_meta; ingestion with other languages rebuilds the
column in place (`sync_column`), and a search stems the question's words in the index's own
languages (`tsquery_sql`).
"""
from __future__ import annotations

import settings

SETTING = "TEXT_SEARCH_LANGUAGES"
META_KEY = "text_search_languages"
NO_STEMS = "none"


def configured_languages(flag_value: object = None) -> tuple[str, ...]:
    """TEXT_SEARCH_LANGUAGES as a tuple of lower-case names, in order, once each; () for "none"."""
    names = [name.strip().lower() for name in (settings.get(SETTING, flag_value) or "").split(",")]
    names = [name for name in dict.fromkeys(names) if name]
    return () if names in ([], [NO_STEMS]) else tuple(names)


def stored_languages(meta: dict[str, str]) -> tuple[str, ...]:
    """The languages an index's keyword column was built with (an index from before stems: none)."""
    return tuple(name for name in meta.get(META_KEY, "").split(",") if name)


def check_languages(cur, languages: tuple[str, ...]) -> None:
    """Raise a UserError naming the setting, the bad name and the server's languages, for a name
    that is not one of the server's text search configurations."""
    known = {row[0] for row in cur.execute("SELECT cfgname FROM pg_ts_config").fetchall()} - {"simple"}
    for name in languages:
        if name not in known:
            raise settings.UserError(
                f"{SETTING}: {name!r} is not a text search language of this PostgreSQL; use a comma-separated "
                f"list of {', '.join(sorted(known))}, or {NO_STEMS}")


def tsvector_sql(languages: tuple[str, ...]):
    """The `tsv` column's expression: the exact words, then their stems in each language."""
    from psycopg import sql

    parts = [sql.SQL("to_tsvector('simple', search_text)")]
    parts += [sql.SQL("to_tsvector({}::regconfig, search_text)").format(sql.Literal(name)) for name in languages]
    return sql.SQL(" || ").join(parts)


def tsquery_sql(languages: tuple[str, ...]):
    """The keyword query: %(tsq)s (the words, prefixes included) OR %(stem_words)s (the same
    words, `|`-joined) stemmed in each language of the index."""
    from psycopg import sql

    parts = [sql.SQL("to_tsquery('simple', %(tsq)s)")]
    parts += [sql.SQL("to_tsquery({}::regconfig, %(stem_words)s)").format(sql.Literal(name)) for name in languages]
    return sql.SQL("({})").format(sql.SQL(" || ").join(parts))


def sync_column(cur, languages: tuple[str, ...], new_table: bool) -> str | None:
    """Make the chunks table's keyword column hold `languages`' stems, inside the caller's
    schema transaction: a new table (created with `tsvector_sql(languages)`) only records them;
    an index built with others has its column rebuilt in place (every row rewritten, once).
    Returns a note for the user then."""
    from psycopg import sql

    meta = dict(cur.execute("SELECT key, value FROM index_meta").fetchall())
    before = languages if new_table else stored_languages(meta)
    note = None
    if before != languages:
        cur.execute("ALTER TABLE chunks DROP COLUMN tsv")  # its GIN index goes with it
        cur.execute(sql.SQL("ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS ({}) STORED").format(
            tsvector_sql(languages)))
        cur.execute("CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv)")
        note = (f"keyword index rebuilt with the word stems of {', '.join(languages) or NO_STEMS} "
                f"({SETTING}; before: {', '.join(before) or NO_STEMS})")
    if meta.get(META_KEY) != ",".join(languages):
        cur.execute("INSERT INTO index_meta (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (META_KEY, ",".join(languages)))
    return note
