"""Filtered search speed with and without the indexes that serve the filters, at 100,000 chunks
x 384 dims, in a throw-away embedded PostgreSQL under /tmp:

    .venv/bin/python bench/bench_filters.py              # about a minute
    .venv/bin/python bench/bench_filters.py --rows 20000 # quick check

For a one-month date window and for one person, times the whole hybrid `search_vector` call
(count of the filtered subset, exact search over it, keyword half, fusion) with the indexes
chunks_started / chunks_ended / chunks_people_words in place, then with them dropped (every
filter a sequential scan). Results: bench/results/filters.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

from bench_retrieval import BATCH, VOCABULARY, clustered_vectors, make_chunks, word  # noqa: E402
from scratch_db import embedded_database, scratch_folder  # noqa: E402

DEFAULT_ROWS = 100_000
DEFAULT_DIM = 384
DEFAULT_QUERIES = 30
DEFAULT_OUTPUT = BENCH_DIR / "results" / "filters.json"
FILTER_INDEXES = {
    "chunks_started": "CREATE INDEX chunks_started ON chunks (started_at) WHERE {real}",
    "chunks_ended": "CREATE INDEX chunks_ended ON chunks (ended_at) WHERE {real}",
    "chunks_people_words": "CREATE INDEX chunks_people_words ON chunks USING gin (people_words)",
}


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM)
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES, help="timed searches per filter and setting")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    import retrieve_related_content_from_db as retrieval
    import store as store_module

    rng = np.random.default_rng(args.seed)
    with embedded_database(scratch_folder("pllm-bench")) as url:
        db = store_module.Store(url)
        db.ensure_schema("bench-filters", args.dim)
        db.drop_vector_index()  # filtered subsets this small are searched exactly; loads 10x faster
        words = [word(i) for i in range(VOCABULARY)]
        centres = rng.standard_normal((max(1, args.rows // 100), args.dim), dtype=np.float32)
        for start in range(0, args.rows, BATCH):
            count = min(BATCH, args.rows - start)
            with db.transaction():
                db.copy_chunks(make_chunks(rng, start, count, words),
                               clustered_vectors(rng, count, args.dim, centres))
        db.conn.execute("ANALYZE chunks")
        db.conn.commit()
        month = (datetime(2019, 3, 1, tzinfo=timezone.utc), datetime(2019, 3, 31, tzinfo=timezone.utc))
        filters = {
            "one month": lambda q: retrieval.SearchRequest(q, since=month[0], until=month[1]),
            "one person": lambda q: retrieval.SearchRequest(q, people=["Person 7"]),
        }
        queries = clustered_vectors(rng, args.queries, args.dim, centres)
        texts = [f"{words[i]} {words[i + 1]}" for i in rng.integers(100, 5000, size=args.queries)]

        def median_ms(make_request) -> tuple[float, int]:
            times, hits = [], 0
            for vector, text in zip(queries, texts):
                start = time.perf_counter()
                result = retrieval.search_vector(db, vector, make_request(text), k=10)
                times.append((time.perf_counter() - start) * 1000)
                hits = max(hits, len(result.hits))
            return round(statistics.median(times[2:] or times), 1), hits

        report = {"rows": args.rows, "dim": args.dim, "queries": args.queries, "filters": {}}
        for name, make_request in filters.items():
            with_ms, hits = median_ms(make_request)
            report["filters"][name] = {"with_indexes_median_ms": with_ms, "hits": hits}
        with db.transaction():
            for index in FILTER_INDEXES:
                db.conn.execute(f"DROP INDEX {index}")
        for name, make_request in filters.items():
            report["filters"][name]["without_indexes_median_ms"] = median_ms(make_request)[0]
        with db.transaction():
            for statement in FILTER_INDEXES.values():
                db.conn.execute(statement.format(real=store_module.REAL_DATE))
        db.close()
    for name, figures in report["filters"].items():
        print(f"{name}: {figures['with_indexes_median_ms']} ms with the filter indexes, "
              f"{figures['without_indexes_median_ms']} ms without ({figures['hits']} hits)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
