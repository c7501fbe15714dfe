"""Index the Obsidian vault and the WhatsApp history: re-run after every new export.

    python create_and_persist_embeddings.py                       # sources from .env / environment
    python create_and_persist_embeddings.py --obsidian ~/vault --whatsapp ~/wa --json
    python create_and_persist_embeddings.py --list --source-prefix "<whatsapp>:Maria"
    python create_and_persist_embeddings.py --forget "<whatsapp>:Maria"

Incremental by content: a document (note or chat) whose fingerprint is stored is skipped
without chunking; a changed one embeds only chunks whose content hash is not stored and
deletes its stale chunks; documents gone from a source given on this run are deleted. Sources
left off the command line keep their chunks (only --prune SOURCE or --rebuild removes them).
--rebuild fills an empty schema beside the live index and swaps its tables in with one
transaction at the end: until then searches use the old index, and a failed or killed rebuild
leaves it whole (the next run drops the leftovers).

Streaming, and why a kill at any moment leaves a whole index: see ingest_pipeline.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import settings
import speaker_vectors
import text_search
from chunking import Chunk, Document, json_fields, span_text
from ingest_pipeline import SOURCE_FLAGS, SOURCE_SETTINGS, SOURCES, Pipeline, Progress, Stopped, Summary, looks_lost

if TYPE_CHECKING:  # heavy modules load only when a run needs them
    from embedding_generator_multilingual import Embedder
    from store import Store

# Chunks handed to the model in one call: the model sorts them by length, so a larger group
# wastes less on padding; also the largest piece of one document in flight.
DEFAULT_EMBED_GROUP = 128
# Queue depth, in items (an item is at most one embed group of one document).
DEFAULT_QUEUE_ITEMS = 64
# Commit at the first document boundary after this many written chunks or seconds.
DEFAULT_COMMIT_CHUNKS = 256
DEFAULT_COMMIT_SECONDS = 5.0
# ANALYZE after a run that changed more than this fraction of the rows.
ANALYZE_FRACTION = 0.10
LOCK_WAIT_MESSAGE = "another ingestion is running; waiting for it to finish"
NOTHING_CONFIGURED = (
    "nothing to index: set OBSIDIAN_VAULT_PATH and/or WHATSAPP_WORKING_PATH (environment or .env, "
    "see .env.example), or pass --obsidian PATH / --whatsapp PATH"
)
# In the data folder: what the WhatsApp exports held at the last complete read, so unchanged
# exports are not parsed again (whatsapp_to_embeddings.iter_documents).
WHATSAPP_CACHE_FOLDER = "cache"
SPEAKERS_BAR = "whatsapp, per speaker:"  # its progress bar: "... chunks embedded"


def note(message: str) -> None:
    """One `note: ...` line on stderr."""
    print(f"note: {message}", file=sys.stderr)


# ---------------------------------------------------------------- opening the index


def acquire_writer_lock(store: "Store", wait: bool = True, say: Callable[[str], None] = note) -> None:
    """Become the only writer: take the advisory lock, waiting (with a message) unless `wait` is off."""
    if store.try_writer_lock():
        return
    if not wait:
        raise settings.UserError(
            "another ingestion is running on this index; let it finish, or drop --no-wait to wait for it"
        )
    say(LOCK_WAIT_MESSAGE)
    store.writer_lock()


def open_index(store: "Store", embedder: "Embedder", rebuild: bool = False, wait: bool = True,
               say: Callable[[str], None] = note, text_languages: tuple[str, ...] | None = None) -> None:
    """Lock, and create or check the schema for `embedder`'s model.

    `rebuild`: the schema is created empty beside the live index, which searches keep using
    until `finish_index` swaps the new one in; what an interrupted rebuild left is dropped first.
    `text_languages`: the keyword search's stem languages (None: TEXT_SEARCH_LANGUAGES).
    """
    acquire_writer_lock(store, wait, say)
    store.drop_unfinished_rebuild()
    if rebuild:
        store.begin_rebuild()
    elif store.table_exists("chunks") and not store.vector_index_exists():
        # A bulk load was interrupted before its index build: build it now with enough memory
        # (ensure_schema would build it with the server's small default).
        store.ensure_vector_index()
    folder = getattr(embedder, "folder", None)
    info = None if rebuild else store.index_info()  # a rebuild's new index takes the model's own size
    if info is not None:
        # The index's own model (same name, or same folder however spelt) has the index's
        # dimension: no need to load it to learn that. Its real size is checked when it loads.
        try:
            rebuilt_keywords = store.ensure_schema(embedder.name, info.dimension, folder, text_languages)
        except settings.UserError:
            pass  # another model: the refusal below names its real dimension
        else:
            expect = getattr(embedder, "expect_dimension", None)
            if expect is not None:
                expect(info.dimension)
            if rebuilt_keywords:
                say(rebuilt_keywords)
            return
    store.ensure_schema(embedder.name, embedder.dimension, folder, text_languages)


def finish_index(store: "Store", sources: Iterable[str] = (), prune: Iterable[str] = ()) -> None:
    """End of a run: a rebuild's new index replaces the live one, in one transaction, unless a
    source of it lost what `looks_lost` calls a mistake (named in `prune`: however much)."""
    if not store.search_path:
        return
    for name in sources:
        if name in prune:
            continue
        live, rebuilt, missing = store.rebuild_losses(f"{name}:")
        if looks_lost(live, rebuilt, missing):
            store.abandon_rebuild()
            raise settings.UserError(
                f"the rebuild was not swapped in: {name} gave {rebuilt} documents and {missing} of the {live} "
                "in the index are missing (a cloud folder not synced yet or a drive not mounted looks like this); "
                f"the old index is kept whole. If they were really removed, re-run with --rebuild --prune {name} "
                f"beside {SOURCE_FLAGS[name]} PATH")
    store.finish_rebuild()


def prune_sources(store: "Store", names: Iterable[str]) -> tuple[int, int]:
    """Delete every document and chunk of the named sources; returns (documents, chunks)."""
    documents = chunks = 0
    with store.transaction():
        for name in names:
            deleted = store.delete_source(f"{name}:")
            documents, chunks = documents + deleted[0], chunks + deleted[1]
    return documents, chunks


def ingest(store: "Store", embedder, sources: dict[str, Iterable[Document]], prune: Iterable[str] = (),
           progress: Progress | None = None, embed_group: int = DEFAULT_EMBED_GROUP,
           queue_items: int = DEFAULT_QUEUE_ITEMS, commit_chunks: int = DEFAULT_COMMIT_CHUNKS,
           commit_seconds: float = DEFAULT_COMMIT_SECONDS, say: Callable[[str], None] = note) -> Summary:
    """Bring the index in line with `sources` ({"obsidian": documents, ...}); returns a Summary.

    The store must be open with its schema in place (`open_index`). Each given source's
    vanished documents are deleted; sources not given are left alone unless named in `prune`.
    Documents are chunked in this thread while the model encodes in another: parsers must count
    tokens with `parser_token_counter(embedder)`, never the model's own tokenizer.
    """
    from store import Store

    started = time.monotonic()
    progress = progress or Progress(enabled=False)
    summary = Summary(sources=list(sources), pruned=sorted(set(prune)))
    # --prune SOURCE beside SOURCE's path: read it, and let it delete however much vanished.
    # Alone: remove everything stored from SOURCE.
    wiped = [name for name in summary.pruned if name not in sources]
    if wiped:
        pruned_docs, pruned_chunks = prune_sources(store, wiped)
        summary.documents_deleted += pruned_docs
        summary.chunks_deleted += pruned_chunks
    # Into an empty table, COPY without the HNSW index and build it once at the end: much
    # faster than growing the graph row by row.
    bulk = bool(sources) and store.is_empty()
    if bulk:
        store.drop_vector_index()

    pipeline = Pipeline(store, embedder, progress, summary, embed_group, queue_items, commit_chunks, commit_seconds)
    pipeline.allow_mass_deletion = set(summary.pruned) & set(sources)
    pipeline.forget_list = store.forget_list()
    # A rebuild's reads see the new tables; reads must hold no locks that DDL or the writer could wait on.
    reader = Store(store.url, store.search_path, autocommit=True)
    failed = True
    try:
        try:
            pipeline.start()
            for name, documents in sources.items():
                pipeline.feed_source(name, documents, reader)
            failed = False
        except Stopped:
            failed = False  # a worker failed: finish() re-raises its error
        finally:
            pipeline.finish(failed)
            reader.close()
        if embedder is not None:
            began = time.perf_counter()
            summary.speaker_vectors = speaker_vectors.fill_missing(
                store, embedder, partial(progress.advanced, SPEAKERS_BAR) if progress.enabled else None)
            summary.embed_seconds += time.perf_counter() - began
    finally:
        progress.close()

    summary.chunks_total = store.count_chunks()
    written = summary.chunks_embedded + summary.chunks_reused
    rows_before = summary.chunks_total - written + summary.chunks_deleted
    began = time.perf_counter()
    if bulk or not store.vector_index_exists():
        store.ensure_vector_index()  # also ANALYZEs
        summary.vector_index_rebuilt = True
    elif outdated := store.vector_index_outdated():
        # An index from an older release: its graph finds fewer distinctive passages (store.HNSW_*).
        changes = ", ".join(f"{key} {found} -> {wanted}" for key, (found, wanted) in outdated.items())
        say(f"rebuilding the vector index once with this release's graph (HNSW {changes}); searches go on meanwhile")
        store.rebuild_vector_index()
        summary.vector_index_rebuilt = True
    elif written + summary.chunks_deleted > ANALYZE_FRACTION * max(rows_before, 1):
        store.analyze()
    if written or summary.chunks_deleted or store.embedding_centroid(commit=True) is None:
        store.refresh_centroid()  # what searches centre their vectors on (retrieval.CENTROID_WEIGHT)
    summary.index_seconds = round(time.perf_counter() - began, 3)
    summary.embed_seconds = round(summary.embed_seconds, 3)
    summary.seconds = round(time.monotonic() - started, 3)
    if summary.chunks_embedded and summary.seconds:
        summary.chunks_per_second = round(summary.chunks_embedded / summary.seconds, 2)
    return summary


# ---------------------------------------------------------------- sources from settings


def configured_sources(args: argparse.Namespace, say: Callable[[str], None] = note) -> dict[str, Path]:
    """{source: path} for each source whose setting or flag is set; a missing path is an error."""
    paths: dict[str, Path] = {}
    for name in SOURCES:
        setting = SOURCE_SETTINGS[name]
        flag_value = getattr(args, name)
        if name in args.prune and not flag_value:
            continue  # pruned whole on this run, so not read from the settings either
        value = settings.get(setting, flag_value)
        if not value:
            say(f"{name} skipped: {setting} is not set (pass {SOURCE_FLAGS[name]} PATH or set it in .env)")
            continue
        path = Path(value).expanduser()
        if not path.exists():
            raise settings.UserError(
                f"{setting} {path} does not exist; fix {SOURCE_FLAGS[name]} or {setting} "
                "(environment or .env), or unset it to skip this source"
            )
        if name == "obsidian" and not path.is_dir():
            raise settings.UserError(
                f"{setting} {path} is not a folder; point {SOURCE_FLAGS[name]} or {setting} at the vault "
                "folder (the one holding .obsidian/), not at a note"
            )
        paths[name] = path
    if "whatsapp" in paths:
        contacts_path(args)  # checked now: nothing may be dropped before every argument is known good
    return paths


def contacts_path(args: argparse.Namespace) -> Path | None:
    """The Google Contacts CSV in force (--contacts / WHATSAPP_CONTACTS), or None; a missing file is an error."""
    contacts = settings.get("WHATSAPP_CONTACTS", args.contacts)
    path = Path(contacts).expanduser() if contacts else None
    if path is not None and not path.is_file():
        raise settings.UserError(
            f"WHATSAPP_CONTACTS {path} does not exist; fix --contacts or WHATSAPP_CONTACTS, "
            "or unset it to use contacts.csv beside the export"
        )
    return path


def build_sources(paths: dict[str, Path], args: argparse.Namespace, embedder,
                  warn: Callable[[str], None] = settings.warn) -> dict[str, Iterable[Document]]:
    """The document iterators of the configured sources, budgeted in `embedder`'s tokens."""
    sources: dict[str, Iterable[Document]] = {}
    budget = embedder.passage_token_budget
    count_tokens = embedder.count_tokens  # thread-safe: its own tokenizer copy
    if "obsidian" in paths:
        import obsidian_to_embeddings

        # The preview script's parser: what it shows excluded is what ingestion keeps out.
        exclude = obsidian_to_embeddings.exclude_globs(args.exclude)
        sources["obsidian"] = obsidian_to_embeddings.iter_documents(
            paths["obsidian"], count_tokens, obsidian_to_embeddings.note_budget(budget), exclude=tuple(exclude),
            warn=warn)
    if "whatsapp" in paths:
        import whatsapp_to_embeddings

        sources["whatsapp"] = whatsapp_to_embeddings.iter_documents(
            paths["whatsapp"], count_tokens, budget, contacts=contacts_path(args),
            date_order=settings.get("WHATSAPP_DATE_ORDER", args.date_order), warn=warn,
            cache_dir=settings.data_dir(getattr(args, "data_dir", None)) / WHATSAPP_CACHE_FOLDER,
        )
    return sources


# ---------------------------------------------------------------- --list and --forget


def list_index(store: "Store", source_prefix: str = "", as_json: bool = False, out=None) -> int:
    """Print every stored chunk (source, doc id, time span, text), one per line; returns the count.

    Streams through a server-side cursor, so a big index costs no memory.
    """
    out = out or sys.stdout
    count = 0
    rows = store.iter_chunks(source_prefix)
    for source, doc_id, started, ended, content, title, heading, chat, people, tags, kind in rows:
        count += 1
        if as_json:
            chunk = Chunk(content, source, doc_id, kind, title=title, heading=heading, chat_name=chat,
                          people=people, tags=tags, started_at=started, ended_at=ended)
            shown = ("source", "doc_id", "source_kind", "started_at", "ended_at", "title", "heading",
                     "chat_name", "people", "tags")
            record = {**json_fields(chunk, shown), "text": content}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            one_line = content.replace("\\", "\\\\").replace("\n", "\\n")
            # Other people's text goes to the terminal: no escape sequences in it.
            line = f"{source}\t{doc_id}\t{span_text(started, ended, minutes=True) or '-'}\t{one_line}"
            out.write(settings.terminal_safe(line) + "\n")
    return count


def forget(store: "Store", source_prefix: str) -> tuple[int, int]:
    """Forget for good: add `source_prefix` to the forget list and delete the chunks it covers
    (see `Store.forget`); later runs keep them out while the source still holds them.
    Returns (chunks, documents)."""
    if not source_prefix:
        raise settings.UserError("--forget needs a non-empty source prefix, e.g. \"<whatsapp>:Maria\"; "
                                 "use --rebuild to empty the whole index")
    return store.forget(source_prefix)


def unforget(store: "Store", source_prefix: str) -> int:
    """Take `source_prefix` off the forget list; returns how many documents the next run reads again."""
    documents = store.unforget(source_prefix)
    if documents is None:
        raise settings.UserError(f"{source_prefix!r} is not on the forget list; "
                                 "--list --forgotten shows what is (give the prefix exactly)")
    return documents


def list_forgotten(store: "Store", as_json: bool = False, out=None) -> int:
    """Print the forget list, one rule per line (prefix, when, texts kept out); returns the count."""
    out = out or sys.stdout
    rules = store.forget_rules()
    for prefix, when, texts in rules:
        if as_json:
            out.write(json.dumps({"prefix": prefix, "forgotten_at": when.isoformat(), "texts": texts},
                                 ensure_ascii=False) + "\n")
        else:
            out.write(f"{prefix}\t{when.astimezone():%Y-%m-%d %H:%M}\t{texts} passages kept out\n")
    return len(rules)


# ---------------------------------------------------------------- command line


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Index the Obsidian vault and WhatsApp history (incremental: re-run after every export)."
    )
    parser.add_argument("--obsidian", metavar="PATH", help="Obsidian vault folder (OBSIDIAN_VAULT_PATH)")
    parser.add_argument("--whatsapp", metavar="PATH",
                        help="folder or file with result.json and/or .txt/.zip exports (WHATSAPP_WORKING_PATH)")
    parser.add_argument("--contacts", metavar="FILE", help="Google Contacts CSV (WHATSAPP_CONTACTS)")
    parser.add_argument("--exclude", metavar="GLOB", action="append", default=[],
                        help="vault paths to keep out, comma-separated and/or repeated (OBSIDIAN_EXCLUDE)")
    parser.add_argument("--date-order", choices=("auto", "dayfirst", "monthfirst"),
                        help="date order of WhatsApp .txt exports (WHATSAPP_DATE_ORDER)")
    parser.add_argument("--text-search-languages", metavar="LANGS",
                        help="comma-separated languages whose word stems keyword search matches, or none "
                             "(TEXT_SEARCH_LANGUAGES)")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the whole index anew beside the old one, swapped in at the end (a failed "
                             "rebuild leaves the old one whole); also the fix after changing EMBEDDING_MODEL")
    parser.add_argument("--prune", metavar="SOURCE", action="append", default=[], choices=SOURCES,
                        help="delete everything indexed from SOURCE (obsidian or whatsapp), repeatable; beside "
                             "SOURCE's path (--obsidian/--whatsapp): delete whatever vanished from it, "
                             "however much (a source that lost most of its documents is otherwise kept)")
    parser.add_argument("--forget", metavar="SOURCE_PREFIX",
                        help='delete the chunks whose source starts with this, e.g. "<whatsapp>:Maria", and keep '
                             'them out of later runs too (a forget list, undone by --unforget), and stop')
    parser.add_argument("--unforget", metavar="SOURCE_PREFIX",
                        help="take a prefix off the forget list (--list --forgotten shows it); the next run "
                             "indexes its passages again, and stop")
    parser.add_argument("--forgotten", action="store_true",
                        help="with --list: print the forget list instead of the passages")
    parser.add_argument("--list", action="store_true",
                        help="print what the index holds, one chunk per line (source, document, time span, text)")
    parser.add_argument("--source-prefix", default="", metavar="PREFIX",
                        help='with --list: only sources starting with this, e.g. "<obsidian>:Journal/"')
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON object (with --list: one JSON object per chunk)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes (warnings and errors stay)")
    parser.add_argument("--no-wait", action="store_true",
                        help="exit with an error instead of waiting when another ingestion is running")
    parser.add_argument("--database-url", help="PostgreSQL URL (DATABASE_URL); unset: the embedded server")
    parser.add_argument("--data-dir", help="data folder of the embedded server (PERSONAL_LLM_DATA_DIR)")
    parser.add_argument("--embedding-model", help="hub id or folder (EMBEDDING_MODEL)")
    parser.add_argument("--device", help="cpu, cuda or mps (EMBEDDING_DEVICE)")
    parser.add_argument("--batch-size", type=int, help="texts per embedding batch (EMBEDDING_BATCH_SIZE)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    say = (lambda message: None) if args.quiet else note
    import database

    try:
        return run(args, say)
    except Exception as err:
        if not database.is_database_error(err):
            raise
        # Every write is in a transaction that rolled back: the index is as the last commit left it.
        raise settings.UserError(
            f"{database.database_error_message(err)}; the index was left as the last completed "
            "documents left it. Fix the database (space, permissions, server) and re-run to finish."
        ) from None


def run(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """The work behind `main`, once the arguments are parsed."""
    from store import open_store

    if args.list and args.forgotten:
        with open_store(args.database_url, args.data_dir) as db:
            count = list_forgotten(db, as_json=args.json)
        if not count and not args.json:
            say("nothing is on the forget list")
        return 0
    if args.unforget is not None:
        with open_store(args.database_url, args.data_dir) as db:
            acquire_writer_lock(db, not args.no_wait, say)
            documents = unforget(db, args.unforget)
        if args.json:
            print(json.dumps({"unforgotten": args.unforget, "documents_to_read_again": documents}))
        else:
            print(f"{args.unforget!r} is off the forget list; the next ingestion reads {documents} documents again")
        return 0
    if args.list:
        with open_store(args.database_url, args.data_dir) as db:
            count = list_index(db, args.source_prefix, as_json=args.json)
        if not count and not args.json:
            say("nothing stored" + (f" under {args.source_prefix!r}" if args.source_prefix else ""))
        return 0
    if args.forget is not None:
        with open_store(args.database_url, args.data_dir) as db:
            acquire_writer_lock(db, not args.no_wait, say)
            chunks, documents = forget(db, args.forget)
        if args.json:
            print(json.dumps({"forgotten_chunks": chunks, "forgotten_documents": documents}))
        else:
            print(f"forgot {chunks} chunks of {documents} documents under {args.forget!r}")
        say("later runs keep them out too, while the export or vault still holds them; "
            f'--unforget "{args.forget}" lets them back')
        return 0

    paths = configured_sources(args, say)
    if not paths and not args.prune and not args.rebuild:
        raise settings.UserError(NOTHING_CONFIGURED)

    if paths:
        # Download the embedder (if missing) before the database is created or touched: a run
        # that cannot get its model leaves the data folder as it was. Loading it comes later.
        settings.fetch_models([(settings.get("EMBEDDING_MODEL", args.embedding_model), "EMBEDDING_MODEL",
                                "embedding model")])
    with open_store(args.database_url, args.data_dir) as db:
        if not paths:  # only pruning or wiping: no model needed
            acquire_writer_lock(db, not args.no_wait, say)
            summary = Summary(pruned=sorted(set(args.prune)), rebuilt=args.rebuild)
            if args.rebuild:
                db.drop_all()
            elif db.index_info() is not None:
                summary = ingest(db, None, {}, prune=args.prune)
            summary.chunks_total = db.count_chunks()
        else:
            from embedding_generator_multilingual import load_embedder

            text_languages = text_search.configured_languages(args.text_search_languages)
            with db.conn.transaction(), db.conn.cursor() as cur:
                # A misspelt language fails now, not after the model has loaded for a new index.
                text_search.check_languages(cur, text_languages)
            embedder = load_embedder(args.embedding_model, args.device, args.batch_size)
            open_index(db, embedder, rebuild=args.rebuild, wait=not args.no_wait, say=say,
                       text_languages=text_languages)
            progress = Progress(enabled=not args.quiet and sys.stderr.isatty())
            sources = build_sources(paths, args, embedder, warn=progress.warn)
            summary = ingest(db, embedder, sources, prune=args.prune, progress=progress, say=say)
            finish_index(db, sources, args.prune)
            summary.rebuilt = args.rebuild
    if args.json:
        print(json.dumps(asdict(summary)))
    elif not args.quiet:
        print(summary.line())
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
