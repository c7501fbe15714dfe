"""The index in PostgreSQL + pgvector: the schema, bulk writes, the forget list, and every
statement ingestion runs (the search module runs its own reads).

Where the server is and how to reach it comes from database.py; what goes into a row, from store_values.py.
Every value goes in as a parameter; identifiers come from this file only.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

import settings
import speaker_vectors
import text_search
from chunking import MTIME_ORIGIN, Chunk
from database import connect, database_url, redact_url
from store_values import (CHUNK_COLUMNS, CHUNK_COPY_TYPES, ForgetList, IndexInfo, chunk_row, no_nul,
                          refuse_another_model)

SCHEMA_VERSION = "1"
# Advisory lock keys (arbitrary constants owned by this project).
SCHEMA_LOCK_KEY = 0x504C4C4D0001
WRITER_LOCK_KEY = 0x504C4C4D0002
HNSW_BUILD_MEMORY = "1GB"
# HNSW graph: links per node (pgvector's default) and the beam each insert searches (pgvector's is
# 64). A distinctive passage among near-duplicates (templated daily notes, small talk) gets few
# links into it from a narrow beam. bench_quality (1,113 e5-small vectors, centred, searched at
# ef_search 400), vector half alone recall@10 / hybrid MRR: 64: 0.86 / 0.79; 96, 128, 256 and 512:
# 0.96 / 0.85 (seed 1: 64: 0.92, 128: 0.96). bench_retrieval at 100k x 1024: build 55 s at 64,
# 129 s at 128, 238 s at 256; a chat turn 56, 69 and 77 ms. An index built with other values is
# rebuilt once by the next ingestion (`Store.vector_index_outdated`).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
# What pgvector uses for an option an index does not name.
PGVECTOR_HNSW_DEFAULTS = {"m": 16, "ef_construction": 64}
# A --rebuild fills this schema, then swaps its tables in: the live index stays whole until then.
REBUILD_SCHEMA = "personal_llm_rebuild"
# The tables a rebuild replaces (anything else, e.g. the forget list, stays as it is).
INDEX_TABLES = ("chunk_speakers", "chunks", "documents", "index_meta")  # a table before the one it refers to
# index_meta key of the mean of all chunk vectors, as a JSON list (see `refresh_centroid`).
CENTROID_KEY = "embedding_centroid"
_UNREAD = object()

# Date filters skip dates from a file's modification time (chunking.MTIME_ORIGIN). Written out
# in the filter SQL and in the partial indexes alike, so the planner can match the two.
REAL_DATE = f"date_origin IS DISTINCT FROM '{MTIME_ORIGIN}'"


def _parse_centroid(value: str | None) -> np.ndarray | None:
    """index_meta's centroid text as a vector (None when missing or unreadable: searches then
    run uncentred, as before the centroid existed)."""
    import json

    try:
        return None if value is None else np.asarray(json.loads(value), dtype=np.float32)
    except (ValueError, TypeError):
        return None


def vector_index_sql(name: str = "chunks_embedding_hnsw") -> str:
    """The statement that creates the chunks' HNSW index `name` (if missing) with this project's graph settings."""
    return (f"CREATE INDEX IF NOT EXISTS {name} ON chunks USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = {int(HNSW_M)}, ef_construction = {int(HNSW_EF_CONSTRUCTION)})")


def graph_settings(reloptions: list[str] | None) -> dict[str, int]:
    """An HNSW index's m and ef_construction from its pg_class.reloptions ("m=16", ...), with
    pgvector's defaults for the ones it does not name."""
    named = dict(option.split("=", 1) for option in reloptions or [] if "=" in option)
    return {key: int(named.get(key, default)) for key, default in PGVECTOR_HNSW_DEFAULTS.items()}


# `to_regclass` of a name in the first schema of the search path only (a rebuild's tables,
# not the live ones behind them); one parameter: the relation's name.
_HERE = "to_regclass(format('%%I.%%I', current_schema(), %s::text))"


class Store:
    """One connection to the index. Use as a context manager, or call `close()`."""

    def __init__(self, url: str, search_path: str | None = None, autocommit: bool = False):
        """Connect to `url`; `search_path` (from another Store's `search_path`) makes this
        connection see the same tables, e.g. a rebuild's. `autocommit` is for readers (a chat, a
        search): each statement is its own transaction, so an idle reader holds no lock that a
        writer's DDL (the rebuild swap, the HNSW build) would wait for."""
        self.url = url
        self.search_path = search_path
        self.conn = connect(url, autocommit)
        self._vector_registered = False
        self._text_languages: tuple[str, ...] | None = None
        self._centroid = _UNREAD
        if search_path:
            self.conn.execute(f"SET search_path TO {search_path}")  # quoted by begin_rebuild
            self.conn.commit()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (rolls back anything uncommitted)."""
        if not self.conn.closed:
            self.conn.close()

    # -- schema

    def register_vector(self) -> None:
        """Let this connection send and read `vector` values as numpy arrays (once the extension exists)."""
        if not self._vector_registered:
            from pgvector.psycopg import register_vector

            register_vector(self.conn)
            self._vector_registered = True

    def _create_extension(self) -> None:
        import psycopg

        with self.conn.cursor() as cur:
            if cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
                return
            try:
                cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.errors.InsufficientPrivilege:
                raise settings.UserError(
                    f"the database user may not create the vector extension at {redact_url(self.url)}; "
                    "run CREATE EXTENSION vector once as a superuser"
                )
            except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile):
                raise settings.UserError(
                    f"pgvector is not installed on the server at {redact_url(self.url)}; install it "
                    "(e.g. use the pgvector/pgvector:pg16 image) or unset DATABASE_URL for the embedded server"
                )

    def _meta(self) -> dict[str, str]:
        """The index_meta rows ({} for a fresh database)."""
        rows = {}
        if self.table_exists("index_meta", commit=False):
            rows = dict(self.conn.execute("SELECT key, value FROM index_meta").fetchall())
        self.conn.commit()
        self._text_languages = text_search.stored_languages(rows)  # what a search's keywords need
        self._centroid = _parse_centroid(rows.get(CENTROID_KEY))
        return rows

    def index_info(self) -> IndexInfo | None:
        """The model and dimension the index was built with, or None for a fresh database."""
        rows = self._meta()
        if "embedding_model" not in rows:
            return None
        return IndexInfo(rows["embedding_model"], int(rows["embedding_dimension"]), rows.get("schema_version", "?"))

    def text_languages(self) -> tuple[str, ...]:
        """The languages whose word stems the index's keyword column holds (text_search.py), as
        the last read of index_meta saw them (`index_info`, `ensure_schema`); read here, without a
        commit of its own (a search calls it inside its transaction), only when none was made."""
        if self._text_languages is None:
            meta = {}
            if self.table_exists("index_meta", commit=False):
                meta = dict(self.conn.execute("SELECT key, value FROM index_meta WHERE key = %s",
                                              (text_search.META_KEY,)).fetchall())
            self._text_languages = text_search.stored_languages(meta)
        return self._text_languages

    def embedding_centroid(self, commit: bool = False) -> np.ndarray | None:
        """The mean of the stored chunk vectors as the last ingestion left it (None before one
        recorded it), read once per connection like `text_languages`: a search calls it inside
        its transaction; `commit` ends the read's own (a writer's connection)."""
        if self._centroid is _UNREAD:
            value = None
            if self.table_exists("index_meta", commit=False):
                row = self.conn.execute("SELECT value FROM index_meta WHERE key = %s", (CENTROID_KEY,)).fetchone()
                value = row[0] if row else None
            self._centroid = _parse_centroid(value)
            if commit:
                self.conn.commit()
        return self._centroid

    def refresh_centroid(self) -> None:
        """Record the mean of all chunk vectors in index_meta and commit (after ingestion
        changed them): one pass over the table."""
        import json

        self.register_vector()
        mean = self.conn.execute("SELECT avg(embedding) FROM chunks").fetchone()[0]
        if mean is None:
            self.conn.execute("DELETE FROM index_meta WHERE key = %s", (CENTROID_KEY,))
        else:
            mean = (mean.to_numpy() if hasattr(mean, "to_numpy") else np.asarray(mean)).astype(np.float32)
            self.conn.execute(
                "INSERT INTO index_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (CENTROID_KEY, json.dumps([round(float(x), 7) for x in mean])))
        self.conn.commit()
        self._centroid = mean

    def ensure_schema(self, model_name: str, dimension: int, model_folder: str | None = None,
                      text_languages: tuple[str, ...] | None = None) -> str | None:
        """Create everything idempotently, in one transaction under a lock; refuse another model.
        Returns a note for the user when the keyword column was rebuilt for other languages.

        `model_folder` is where `model_name` resolved to: two spellings of one model (a trailing
        slash, a relative path, a hub id and its snapshot folder) are one model.
        `text_languages`: the keyword column's stem languages; None reads TEXT_SEARCH_LANGUAGES.
        """
        import psycopg

        languages = text_search.configured_languages() if text_languages is None else tuple(text_languages)
        try:
            with self.conn.transaction():
                with self.conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                    text_search.check_languages(cur, languages)
                    self._create_extension()
                    note = self._create_tables(cur, dimension, languages)
                    rows = dict(cur.execute("SELECT key, value FROM index_meta").fetchall())
                    if "embedding_model" in rows:
                        refuse_another_model(rows, model_name, dimension, model_folder)
                        if model_folder and "embedding_model_folder" not in rows:
                            # An index from before folders were recorded: record it now.
                            cur.execute("INSERT INTO index_meta (key, value) VALUES ('embedding_model_folder', %s)",
                                        (str(model_folder),))
                    else:
                        meta = [("schema_version", SCHEMA_VERSION), ("embedding_model", model_name),
                                ("embedding_dimension", str(dimension))]
                        if model_folder:
                            meta.append(("embedding_model_folder", str(model_folder)))
                        cur.executemany("INSERT INTO index_meta (key, value) VALUES (%s, %s)", meta)
        except psycopg.errors.InsufficientPrivilege as err:
            raise settings.UserError(f"the database user may not create tables ({err.diag.message_primary})")
        self._text_languages = languages
        self.register_vector()
        return note

    def check_model(self, model_name: str, dimension: int, model_folder: str | None = None) -> None:
        """Refuse, with the rebuild message, a model other than the index's (see `ensure_schema`);
        reads only, so a search may call it. A database never ingested into passes."""
        rows = self._meta()
        if "embedding_model" in rows:
            refuse_another_model(rows, model_name, dimension, model_folder)

    @staticmethod
    def _create_tables(cur, dimension: int, text_languages: tuple[str, ...]) -> str | None:
        """Every table and index, with the migrations of older indexes; the keyword column's
        note (`text_search.sync_column`)."""
        from psycopg import sql

        new_chunks_table = cur.execute(f"SELECT {_HERE}", ("chunks",)).fetchone()[0] is None

        cur.execute("CREATE TABLE IF NOT EXISTS index_meta (key text PRIMARY KEY, value text NOT NULL)")
        cur.execute(
            """CREATE TABLE IF NOT EXISTS documents (
                doc_id text PRIMARY KEY, source_kind text NOT NULL, fingerprint text NOT NULL,
                chunk_count integer NOT NULL, paths text[] NOT NULL DEFAULT '{}',
                indexed_at timestamptz NOT NULL DEFAULT now())"""
        )
        _migrate_document_paths(cur)
        cur.execute(
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS chunks (
                id bigserial PRIMARY KEY, doc_id text NOT NULL, source_kind text NOT NULL, source text NOT NULL,
                content_hash text NOT NULL, text_hash text, content text NOT NULL,
                title text, heading text, chat_name text, chat_id text,
                people text[] NOT NULL DEFAULT '{{}}', people_folded text[] NOT NULL DEFAULT '{{}}',
                people_words text[] NOT NULL DEFAULT '{{}}', tags text[] NOT NULL DEFAULT '{{}}',
                started_at timestamptz, ended_at timestamptz, date_origin text,
                metadata jsonb NOT NULL DEFAULT '{{}}', search_text text NOT NULL,
                tsv tsvector GENERATED ALWAYS AS ({tsv}) STORED,
                embedding vector({dim}) NOT NULL,
                UNIQUE (doc_id, content_hash))"""
            ).format(dim=sql.Literal(dimension), tsv=text_search.tsvector_sql(text_languages))
        )
        note = text_search.sync_column(cur, text_languages, new_chunks_table)
        if new_chunks_table:
            # Keep vectors inline: no TOAST lookups during exact scans. Only at creation: the
            # ALTER takes a table lock that would stall a chat searching meanwhile.
            cur.execute("ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE PLAIN")
        speaker_vectors.create_table(cur, dimension)
        cur.execute(vector_index_sql())
        cur.execute("CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv)")
        _migrate_text_hash(cur)
        cur.execute("CREATE INDEX IF NOT EXISTS chunks_text_hash ON chunks (text_hash)")
        _migrate_chunk_filters(cur)
        # What the date and person filters use (retrieve_related_content_from_db._filter_sql):
        # each bound of a date range, real dates only, and the words of people's names.
        cur.execute(f"CREATE INDEX IF NOT EXISTS chunks_started ON chunks (started_at) WHERE {REAL_DATE}")
        cur.execute(f"CREATE INDEX IF NOT EXISTS chunks_ended ON chunks (ended_at) WHERE {REAL_DATE}")
        cur.execute("CREATE INDEX IF NOT EXISTS chunks_people_words ON chunks USING gin (people_words)")
        # A hit's neighbouring pieces (passage_context): a few index rows, not the whole chat or note.
        cur.execute("CREATE INDEX IF NOT EXISTS chunks_doc_time ON chunks (doc_id, started_at, id)")
        return note

    def drop_all(self) -> None:
        """Remove the whole index (tables and meta); the next ensure_schema starts fresh."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            cur.execute(f"DROP TABLE IF EXISTS {', '.join(INDEX_TABLES)}")

    def drop_vector_index(self) -> None:
        """Drop the HNSW index before a large bulk load (rebuilt by `ensure_vector_index`)."""
        from psycopg import sql

        with self.conn.transaction():
            # Qualified: during a rebuild an unqualified name could reach the live index.
            schema = self.conn.execute("SELECT current_schema()").fetchone()[0]
            self.conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(
                sql.Identifier(schema, "chunks_embedding_hnsw")))

    def vector_index_exists(self) -> bool:
        """True when the chunks table in use has its HNSW index."""
        exists = self.conn.execute(f"SELECT {_HERE} IS NOT NULL", ("chunks_embedding_hnsw",)).fetchone()[0]
        self.conn.commit()
        return bool(exists)

    # -- rebuilding beside the live index

    def drop_unfinished_rebuild(self) -> None:
        """Drop what an interrupted --rebuild left, if anything (call under the writer lock)."""
        from psycopg import sql

        with self.conn.transaction():
            found = self.conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (REBUILD_SCHEMA,)).fetchone()[0]
            if found:
                self.conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(REBUILD_SCHEMA)))

    def begin_rebuild(self) -> None:
        """Point this connection at a fresh, empty schema beside the live index (call under the
        writer lock): `ensure_schema` and every write then go there, while searches keep the live
        index until `finish_rebuild` swaps the new tables in."""
        import psycopg
        from psycopg import sql

        self.drop_unfinished_rebuild()
        try:
            with self.conn.transaction():
                self._create_extension()  # in the live schema, where it must outlive the rebuild
                home, vector_home = self.conn.execute(
                    "SELECT current_schema(), (SELECT extnamespace::regnamespace::text FROM pg_extension "
                    "WHERE extname = 'vector')").fetchone()
                self.conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(REBUILD_SCHEMA)))
        except psycopg.errors.InsufficientPrivilege as err:
            raise settings.UserError(
                f"the database user may not create a schema for the rebuild ({err.diag.message_primary}); "
                "grant it CREATE on the database, or remove the index by hand before indexing again")
        # The live schema stays on the path, after the new one: the forget list lives there.
        names = dict.fromkeys([REBUILD_SCHEMA, home, vector_home.strip('"')])
        self.search_path = sql.SQL(", ").join(map(sql.Identifier, names)).as_string(self.conn)
        self.home_schema = home
        self.conn.execute(f"SET search_path TO {self.search_path}")
        self.conn.commit()

    def rebuild_losses(self, doc_id_prefix: str) -> tuple[int, int, int]:
        """During a rebuild: (documents in the live index, documents rebuilt, live documents the
        rebuild lacks), counting doc ids that start with the prefix."""
        from psycopg import sql

        live, new = sql.Identifier(self.home_schema, "documents"), sql.Identifier(REBUILD_SCHEMA, "documents")
        params = {"p": doc_id_prefix, "live": f"{self.home_schema}.documents"}
        if self.conn.execute("SELECT to_regclass(%(live)s)", params).fetchone()[0] is None:
            self.conn.commit()
            return 0, 0, 0  # nothing live to lose
        counts = self.conn.execute(sql.SQL(
            """SELECT (SELECT count(*) FROM {live} WHERE starts_with(doc_id, %(p)s)),
                      (SELECT count(*) FROM {new} WHERE starts_with(doc_id, %(p)s)),
                      (SELECT count(*) FROM {live} l WHERE starts_with(l.doc_id, %(p)s)
                         AND NOT EXISTS (SELECT 1 FROM {new} n WHERE n.doc_id = l.doc_id))""").format(
            live=live, new=new), params).fetchone()
        self.conn.commit()
        return tuple(counts)

    def abandon_rebuild(self) -> None:
        """Drop the rebuild's tables and point this connection back at the live index."""
        self.drop_unfinished_rebuild()
        self._back_to_live()

    def _back_to_live(self) -> None:
        self.conn.execute("RESET search_path")
        self.conn.commit()
        self.search_path = None

    def finish_rebuild(self) -> None:
        """Swap the rebuilt tables in for the live ones in one transaction: a search sees the
        old index or the new one, never neither; a failure before this leaves the old one whole."""
        from psycopg import sql

        home = sql.Identifier(self.home_schema)
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            for table in INDEX_TABLES:
                self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(self.home_schema, table)))
            for table in INDEX_TABLES:
                # Indexes and the id sequence move with their table.
                self.conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    sql.Identifier(REBUILD_SCHEMA, table), home))
            self.conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(REBUILD_SCHEMA)))
        self._back_to_live()

    def ensure_vector_index(self) -> None:
        """(Re)build the HNSW index with enough memory to be fast, then ANALYZE."""
        with self.conn.transaction():
            self.conn.execute(f"SET LOCAL maintenance_work_mem = '{HNSW_BUILD_MEMORY}'")
            self.conn.execute(vector_index_sql())
        self.analyze()

    def vector_index_outdated(self) -> dict[str, tuple[int, int]]:
        """{setting: (the chunks' HNSW index's value, this project's)} for each graph setting
        (HNSW_M, HNSW_EF_CONSTRUCTION) that differs; {} when none does or there is no index."""
        row = self.conn.execute(f"SELECT reloptions FROM pg_class WHERE oid = {_HERE}",
                                ("chunks_embedding_hnsw",)).fetchone()
        self.conn.commit()
        if row is None:
            return {}
        found = graph_settings(row[0])
        wanted = {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
        return {key: (found[key], wanted[key]) for key in wanted if found[key] != wanted[key]}

    def rebuild_vector_index(self) -> None:
        """Build the HNSW index anew with this project's graph settings beside the old one, then
        swap it in, in one transaction: searches keep the old index while the new one builds
        (the build locks out writes only, and this process is the writer)."""
        from psycopg import sql

        with self.conn.transaction():
            schema = self.conn.execute("SELECT current_schema()").fetchone()[0]
            self.conn.execute(f"SET LOCAL maintenance_work_mem = '{HNSW_BUILD_MEMORY}'")
            self.conn.execute(vector_index_sql("chunks_embedding_hnsw_next"))
            self.conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, "chunks_embedding_hnsw")))
            self.conn.execute(sql.SQL("ALTER INDEX {} RENAME TO chunks_embedding_hnsw").format(
                sql.Identifier(schema, "chunks_embedding_hnsw_next")))

    def analyze(self) -> None:
        """Refresh the planner's statistics of the chunks table (after a large change)."""
        self.conn.execute("ANALYZE chunks")
        self.conn.commit()

    # -- locks

    def try_writer_lock(self) -> bool:
        """Take the session-wide single-writer lock without waiting; False if another run holds it."""
        got = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK_KEY,)).fetchone()[0]
        self.conn.commit()
        return bool(got)

    def writer_lock(self) -> None:
        """Wait for the single-writer lock (released when the connection closes)."""
        self.conn.execute("SELECT pg_advisory_lock(%s)", (WRITER_LOCK_KEY,))
        self.conn.commit()

    # -- writes

    def copy_chunks(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Binary-COPY chunks with their vectors, inside the caller's transaction if one is open.

        Chunks whose (doc_id, content_hash) is already stored must be filtered out by the caller.
        """
        if not chunks:
            return
        self.register_vector()
        columns = ", ".join(CHUNK_COLUMNS)
        with self.conn.cursor() as cur:
            with cur.copy(f"COPY chunks ({columns}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(CHUNK_COPY_TYPES)
                for chunk, vector in zip(chunks, vectors, strict=True):
                    copy.write_row(chunk_row(chunk, vector))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes."""
        with self.conn.transaction():
            yield

    def commit(self) -> None:
        """Commit the writes made since the last commit (outside `transaction`)."""
        self.conn.commit()

    def rollback(self) -> None:
        """Drop the writes made since the last commit."""
        self.conn.rollback()

    def stored_hashes(self, doc_id: str) -> set[str]:
        """Content hashes stored for one document."""
        rows = self.conn.execute("SELECT content_hash FROM chunks WHERE doc_id = %s", (doc_id,)).fetchall()
        return {r[0] for r in rows}

    def vectors_by_text(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """text hash -> a stored vector of that text (any document), for those stored: a moved
        note or a re-tagged passage needs no embedding."""
        text_hashes = list(set(text_hashes))
        if not text_hashes:
            return {}
        self.register_vector()
        rows = self.conn.execute(
            "SELECT DISTINCT ON (text_hash) text_hash, embedding FROM chunks WHERE text_hash = ANY(%s)",
            (text_hashes,),
        ).fetchall()
        self.conn.commit()
        return {digest: np.asarray(getattr(vector, "to_numpy", lambda: vector)(), dtype=np.float32)
                for digest, vector in rows}

    def delete_chunks(self, doc_id: str, hashes: Iterable[str]) -> int:
        """Delete the given chunks of one document."""
        hashes = list(hashes)
        if not hashes:
            return 0
        cur = self.conn.execute(
            "DELETE FROM chunks WHERE doc_id = %s AND content_hash = ANY(%s)", (doc_id, hashes)
        )
        return cur.rowcount

    def stored_documents(self, doc_id_prefix: str = "") -> dict[str, tuple[str, tuple[str, ...]]]:
        """doc_id -> (fingerprint, recorded file paths) for documents whose id starts with the prefix."""
        rows = self.conn.execute(
            "SELECT doc_id, fingerprint, paths FROM documents WHERE starts_with(doc_id, %s)",
            (doc_id_prefix,),
        ).fetchall()
        self.conn.commit()
        return {doc_id: (fingerprint, tuple(paths)) for doc_id, fingerprint, paths in rows}

    def record_document(self, doc_id: str, source_kind: str, fingerprint: str, chunk_count: int,
                        paths: Sequence[str] = ()) -> None:
        """Mark a document as completely indexed at `fingerprint`, built from the files `paths`."""
        self.conn.execute(
            """INSERT INTO documents (doc_id, source_kind, fingerprint, chunk_count, paths, indexed_at)
               VALUES (%s, %s, %s, %s, %s, now())
               ON CONFLICT (doc_id) DO UPDATE SET source_kind = EXCLUDED.source_kind,
                 fingerprint = EXCLUDED.fingerprint, chunk_count = EXCLUDED.chunk_count,
                 paths = EXCLUDED.paths, indexed_at = now()""",
            (doc_id, source_kind, fingerprint, chunk_count, [no_nul(p) for p in paths]),
        )

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        """Delete documents and all their chunks; returns the number of chunks deleted."""
        doc_ids = list(doc_ids)
        if not doc_ids:
            return 0
        deleted = self.conn.execute("DELETE FROM chunks WHERE doc_id = ANY(%s)", (doc_ids,)).rowcount
        self.conn.execute("DELETE FROM documents WHERE doc_id = ANY(%s)", (doc_ids,))
        return deleted

    def delete_source(self, doc_id_prefix: str) -> tuple[int, int]:
        """Delete every document whose id starts with the prefix, and its chunks, in the
        caller's transaction; returns (documents, chunks)."""
        chunks = self.conn.execute("DELETE FROM chunks WHERE starts_with(doc_id, %s)", (doc_id_prefix,)).rowcount
        documents = self.conn.execute(
            "DELETE FROM documents WHERE starts_with(doc_id, %s)", (doc_id_prefix,)).rowcount
        return documents, chunks

    # -- the forget list (kept by --rebuild and --prune: forgetting is permanent until --unforget)

    def _ensure_forget_list(self) -> None:
        self.conn.execute("""CREATE TABLE IF NOT EXISTS forget_rules (
            prefix text PRIMARY KEY, forgotten_at timestamptz NOT NULL DEFAULT now())""")
        # The texts forgotten under a rule, and where they were: the same text under another
        # source stays out too, and --unforget knows which documents to read again.
        self.conn.execute("""CREATE TABLE IF NOT EXISTS forget_texts (
            prefix text NOT NULL REFERENCES forget_rules ON DELETE CASCADE,
            text_hash text NOT NULL, doc_id text NOT NULL, PRIMARY KEY (prefix, text_hash, doc_id))""")

    def forget_list(self) -> "ForgetList":
        """The forget rules in force (empty when nothing was ever forgotten)."""
        if not self.table_exists("forget_rules"):
            return ForgetList()
        prefixes = tuple(row[0] for row in self.conn.execute("SELECT prefix FROM forget_rules ORDER BY prefix"))
        texts = dict(self.conn.execute("SELECT DISTINCT ON (text_hash) text_hash, prefix FROM forget_texts").fetchall())
        self.conn.commit()
        return ForgetList(prefixes, texts)

    def forget(self, prefix: str) -> tuple[int, int]:
        """Add the rule `prefix` and delete the chunks it covers: those whose source starts with
        it and those elsewhere holding one of their texts; their documents' rows go too (a later
        run reads them again, minus what is forgotten). Returns (chunks, documents)."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            self._ensure_forget_list()
            self.conn.execute("INSERT INTO forget_rules (prefix) VALUES (%s) ON CONFLICT DO NOTHING", (prefix,))
            if not self.table_exists("chunks", commit=False):
                return 0, 0
            hashes = [row[0] for row in self.conn.execute(
                f"SELECT DISTINCT coalesce(text_hash, {TEXT_HASH_SQL}) FROM chunks WHERE starts_with(source, %s)",
                (prefix,))]
            rows = self.conn.execute(
                f"""DELETE FROM chunks WHERE starts_with(source, %s) OR text_hash = ANY(%s)
                    RETURNING coalesce(text_hash, {TEXT_HASH_SQL}), doc_id""", (prefix, hashes)).fetchall()
            self.record_forgotten(prefix, rows)
            doc_ids = sorted({doc_id for _, doc_id in rows})
            self.conn.execute("DELETE FROM documents WHERE doc_id = ANY(%s)", (doc_ids,))
        return len(rows), len(doc_ids)

    def record_forgotten(self, prefix: str, texts: Iterable[tuple[str, str]]) -> None:
        """Note (text hash, doc id) pairs kept out under the rule `prefix`, in the caller's transaction."""
        self.conn.cursor().executemany(
            "INSERT INTO forget_texts (prefix, text_hash, doc_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            [(prefix, text_hash, doc_id) for text_hash, doc_id in texts])

    def unforget(self, prefix: str) -> int | None:
        """Drop the rule `prefix` (None if there is none); the documents it kept texts out of are
        marked changed, so the next run indexes those texts again. Returns how many."""
        with self.conn.transaction():
            if not self.table_exists("forget_rules", commit=False):
                return None
            doc_ids = [row[0] for row in self.conn.execute(
                "SELECT DISTINCT doc_id FROM forget_texts WHERE prefix = %s", (prefix,))]
            if not self.conn.execute("DELETE FROM forget_rules WHERE prefix = %s", (prefix,)).rowcount:
                return None
            if self.table_exists("documents", commit=False):
                self.conn.execute("UPDATE documents SET fingerprint = '' WHERE doc_id = ANY(%s)", (doc_ids,))
        return len(doc_ids)

    def forget_rules(self) -> list[tuple[str, datetime, int]]:
        """(prefix, when, texts kept out) for every rule, by prefix."""
        if not self.table_exists("forget_rules"):
            return []
        rows = self.conn.execute(
            """SELECT r.prefix, r.forgotten_at, count(DISTINCT t.text_hash) FROM forget_rules r
               LEFT JOIN forget_texts t USING (prefix) GROUP BY r.prefix, r.forgotten_at ORDER BY r.prefix""").fetchall()
        self.conn.commit()
        return rows

    # -- reads

    def table_exists(self, name: str, commit: bool = True) -> bool:
        """True when the table `name` is on the search path (`commit=False`: in a transaction)."""
        exists = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
        if commit:
            self.conn.commit()
        return bool(exists)

    def count_chunks(self) -> int:
        """Number of stored chunks (0 when the schema does not exist yet)."""
        if not self.table_exists("chunks"):
            return 0
        count = self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        self.conn.commit()
        return count

    def is_empty(self) -> bool:
        """True when the chunks table holds no row (without counting them)."""
        empty = self.conn.execute("SELECT NOT EXISTS (SELECT 1 FROM chunks)").fetchone()[0]
        self.conn.commit()
        return bool(empty)

    def iter_chunks(self, source_prefix: str = "") -> Iterator[tuple]:
        """(source, doc_id, started_at, ended_at, content, title, heading, chat_name, people,
        tags, source_kind) of every chunk whose source starts with the prefix, in source order,
        through a server-side cursor (a big index costs no memory); nothing without a schema."""
        if not self.table_exists("chunks"):
            return
        with self.conn.transaction(), self.conn.cursor(name="personal_llm_list") as cur:
            cur.itersize = 500
            cur.execute("""SELECT source, doc_id, started_at, ended_at, content, title, heading, chat_name,
                                  people, tags, source_kind FROM chunks WHERE starts_with(source, %s)
                           ORDER BY source, doc_id, started_at NULLS FIRST, id""", (source_prefix,))
            yield from cur


# Chunk.text_hash in SQL, over the stored text (which is the chunk's text without NULs).
TEXT_HASH_SQL = "left(encode(sha256(convert_to(content, 'UTF8')), 'hex'), 32)"


def _migrate_text_hash(cur) -> None:
    """An index from before text hashes: add the column and fill it from the stored texts, in
    place (one pass over the table, once), so moved notes reuse vectors from the first run."""
    missing = not cur.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(format('%I.%I', current_schema(), 'chunks')) "
        "AND attname = 'text_hash' AND NOT attisdropped").fetchone()
    if missing:
        cur.execute("ALTER TABLE chunks ADD COLUMN text_hash text")
        cur.execute(f"UPDATE chunks SET text_hash = {TEXT_HASH_SQL}")


def _migrate_document_paths(cur) -> None:
    """An index from before paths were arrays has one `path` text of ", "-joined files: split it
    (only after a file extension, so "WhatsApp Chat with Ana, Rui.txt" stays one file) into
    `paths`, in place, inside the caller's schema transaction."""
    legacy = cur.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(format('%I.%I', current_schema(), 'documents')) "
        "AND attname = 'path' AND NOT attisdropped").fetchone()
    if not legacy:
        return
    cur.execute("ALTER TABLE documents ADD COLUMN IF NOT EXISTS paths text[] NOT NULL DEFAULT '{}'")
    cur.execute(
        r"""UPDATE documents SET paths = CASE
              WHEN coalesce(path, '') = '' THEN '{}'
              WHEN source_kind = 'notes' THEN ARRAY[path]  -- a note is always one file
              ELSE regexp_split_to_array(path, '(?<=\.(?:txt|zip|json)), ', 'i') END""")
    cur.execute("ALTER TABLE documents DROP COLUMN path")


def _migrate_chunk_filters(cur) -> None:
    """An index from before the filters could use an index: add `people_words` and
    `date_origin`, fill them from what is stored, give every dated chunk both ends of its span,
    and drop the two indexes no filter could use; in place, inside the schema transaction."""
    from psycopg import sql

    legacy = cur.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(format('%I.%I', current_schema(), 'chunks')) "
        "AND attname = 'people_words' AND NOT attisdropped").fetchone()
    if legacy:
        return
    cur.execute("ALTER TABLE chunks ADD COLUMN IF NOT EXISTS people_words text[] NOT NULL DEFAULT '{}', "
                "ADD COLUMN IF NOT EXISTS date_origin text")
    cur.execute(
        r"""UPDATE chunks SET
              people_words = ARRAY(SELECT DISTINCT w FROM unnest(people_folded) AS p,
                                   regexp_split_to_table(p, '\s+') AS w WHERE w <> '' ORDER BY w),
              date_origin = metadata->>'date_origin',
              started_at = coalesce(started_at, ended_at), ended_at = coalesce(ended_at, started_at)""")
    schema = cur.execute("SELECT current_schema()").fetchone()[0]
    for name in ("chunks_time", "chunks_people"):
        cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, name)))


def open_store(url: str | None = None, data_dir: str | Path | None = None, autocommit: bool = False) -> Store:
    """Connect to the configured database (embedded unless DATABASE_URL is set); `autocommit`
    for a reader (see `Store`)."""
    return Store(database_url(url, data_dir), autocommit=autocommit)

