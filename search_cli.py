"""The search CLI behind `python retrieve_related_content_from_db.py` (its flags, checks and
output loop; the search itself is in that module):

    python retrieve_related_content_from_db.py "Kyoto trip" --since 2021-06 --person maria --json
    python retrieve_related_content_from_db.py - -k 10 --json < questions.txt   # JSON Lines out

With "-", questions are read from stdin and answered in batches: each batch's questions are
embedded together (one model call), then searched one by one, one JSON line each, in order,
flushed per batch. A batch is whatever stdin has ready, up to QUERY_BATCH lines, so a program
that writes one question and waits for its answer gets it at once.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Iterable, Iterator

import settings
from retrieve_related_content_from_db import (DEFAULT_MODE, EMPTY_INDEX_HINT, MODES, SOURCE_KINDS, EmptyIndexError,
                                              applied_filters, check_index, search_embedded, window_passages)
from search_results import DEFAULT_TOP_K, SearchRequest, format_hit, hits_json, parse_date, result_json

if TYPE_CHECKING:
    from embedding_generator_multilingual import Embedder
    from store import Store

# Questions embedded in one model call (bench/bench_retrieval.py --throughput measures it).
QUERY_BATCH = 32


def line_batches(stream: Iterable[str], size: int = QUERY_BATCH) -> Iterator[list[str]]:
    """The stream's lines in batches of at most `size`: the next line (waiting for it), then
    whichever lines have already arrived. A thread reads ahead, so a pipe full of questions
    gives full batches and a conversation on stdin one line at a time."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            for line in stream:
                lines.put(line)
        finally:
            lines.put(None)  # the end, also after a read error

    threading.Thread(target=read, daemon=True, name="stdin-reader").start()
    while True:
        line = lines.get()
        if line is None:
            return
        batch = [line]
        while len(batch) < size:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                yield batch
                return
            batch.append(line)
        yield batch


def _print_window(store: "Store", embedder: "Embedder", request: SearchRequest, as_json: bool) -> None:
    """The --all output: every passage of the window, oldest first."""
    hits = window_passages(store, request, embedder.embed_query(request.query))
    if as_json:
        print(json.dumps(hits_json(hits, applied_filters(request)), ensure_ascii=False), flush=True)
        return
    print(f"{len(hits)} passage{'' if len(hits) == 1 else 's'} in the window, oldest first")
    for number, hit in enumerate(hits, 1):
        print(format_hit(number, hit))


def setup_arg_parser() -> argparse.ArgumentParser:
    """The search CLI's flags."""
    parser = argparse.ArgumentParser(
        description="Search your indexed notes and messages (hybrid vector + keyword search).")
    parser.add_argument("query", help='what to look for; "-" reads one query per line from stdin (JSON Lines out)')
    parser.add_argument("-k", type=int, default=None, help=f"number of passages (RETRIEVAL_TOP_K, default {DEFAULT_TOP_K})")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON array of hits (source, content, score, metadata, applied filters)")
    parser.add_argument("--since", help="only passages from this date on: YYYY, YYYY-MM or YYYY-MM-DD")
    parser.add_argument("--until", help="only passages up to this date (inclusive): YYYY, YYYY-MM or YYYY-MM-DD")
    parser.add_argument("--person", action="append", default=[], help="only passages with/about this person (repeatable)")
    parser.add_argument("--source", choices=SOURCE_KINDS, help="only notes or only messages")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="hybrid (default) or vector only")
    parser.add_argument("--all", action="store_true",
                        help="every passage of the window (--since/--until, --person, --source) in time order, "
                             "no top-k; the score is each passage's similarity to the query")
    parser.add_argument("--database-url", help="PostgreSQL URL (DATABASE_URL); unset: the embedded server")
    parser.add_argument("--data-dir", help="data folder of the embedded server (PERSONAL_LLM_DATA_DIR)")
    parser.add_argument("--embedding-model", help="hub id or folder (EMBEDDING_MODEL); must be the one used to ingest")
    return parser


def _parse_cli_date(text: str | None, flag: str, end: bool) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_date(text, end=end)
    except ValueError:
        raise settings.UserError(f"{flag} {text!r} is not a date; use YYYY, YYYY-MM or YYYY-MM-DD")


def main(argv: list[str] | None = None) -> int:
    """Run the search CLI; returns the exit code (errors are settings.UserError)."""
    args = setup_arg_parser().parse_args(argv)
    # Before torch loads: idle OpenMP threads sleep instead of spinning. A busy machine (two
    # cores shared) otherwise spends the cores on spinning threads while their partners wait
    # for one: a batch of 32 questions took 15-34 ms each, 7-8 ms sleeping (load average 3);
    # the same threads do the same sums, so the vectors do not change.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import psycopg

    from embedding_generator_multilingual import load_embedder
    from database import first_error_line
    from store import open_store

    k = settings.get_int("RETRIEVAL_TOP_K", args.k)
    if k is None or k < 1:
        raise settings.UserError(f"-k {k} must be at least 1")
    since = _parse_cli_date(args.since, "--since", end=False)
    until = _parse_cli_date(args.until, "--until", end=True)
    if since and until and since > until:
        raise settings.UserError(f"--since {args.since} is after --until {args.until}")
    if args.all and (args.k is not None or args.query == "-"):
        raise settings.UserError("--all prints every passage of the window: it takes one query and no -k")
    if args.all and not (since or until or args.person or args.source):
        raise settings.UserError("--all needs a window: add --since/--until (YYYY, YYYY-MM or YYYY-MM-DD), "
                                 "--person or --source")
    if args.query == "-":
        batches = line_batches(sys.stdin)
    else:
        if not args.query.strip():
            raise settings.UserError('the query is empty; pass some words, or "-" to read queries from stdin')
        batches = iter([[args.query]])
    try:
        with open_store(args.database_url, args.data_dir, autocommit=True) as store:
            if store.index_info() is None:
                raise EmptyIndexError(EMPTY_INDEX_HINT)
            embedder = load_embedder(args.embedding_model)
            check_index(store, embedder)
            for batch in batches:
                requests = [SearchRequest(query, since=since, until=until, people=args.person,
                                          source_kind=args.source)
                            for query in (line.strip() for line in batch) if query]
                if args.all:
                    for request in requests:
                        _print_window(store, embedder, request, args.json)
                    continue
                for result in search_embedded(store, embedder, requests, k=k, mode=args.mode):
                    _print_result(result, as_json=args.json or args.query == "-")
                sys.stdout.flush()
    except psycopg.Error as err:
        raise settings.UserError(f"database error during search ({first_error_line(err)}); "
                                 "check DATABASE_URL and the server log")
    return 0


def _print_result(result, as_json: bool) -> None:
    """One search's output: its note on stderr, then a JSON line or the terminal listing."""
    if result.note:
        print(f"note: {result.note}", file=sys.stderr)
    if as_json:
        print(json.dumps(result_json(result), ensure_ascii=False))
        return
    if result.filters_applied:
        shown = ", ".join(f"{key}={value}" for key, value in result.filters_applied.items())
        print(f"filters: {shown}")
    for rank, hit in enumerate(result.hits, 1):
        print(format_hit(rank, hit))
