"""What the keyword column's word stems (text_search.py, TEXT_SEARCH_LANGUAGES) cost, per set of
languages, in a throw-away embedded PostgreSQL under /tmp:

    .venv/bin/python bench/bench_text_search.py [--chunks 20000]

For each set: the binary COPY of the same generated note chunks (~170 words each, random
384-dim vectors) into the real chunks table, rows/s; the keyword column's size and its GIN
index's; the median of 200 whole hybrid searches (vector + keywords, fused); and the in-place
rebuild a change of languages makes (`ensure_schema` with other languages on the full table).
Recall is bench_quality.py's and bench_memory.py's to tell. Results: bench/results/text_search.json.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))
sys.path.insert(0, str(BENCH_DIR))

import settings  # noqa: E402
from corpus import paragraph_block, sentence  # noqa: E402
from scratch_db import embedded_database, scratch_folder  # noqa: E402

DIM = 384
QUERIES = 200
DEFAULT_OUTPUT = BENCH_DIR / "results" / "text_search.json"
LANGUAGE_SETS = ((), ("english",), ("english", "portuguese"))


def generated_chunks(count: int, seed: int):
    """`count` note chunks of ~170 generated words each, and as many random unit vectors."""
    from chunking import NOTES, Chunk

    rng = random.Random(seed)
    chunks = [Chunk(text=f"Note {i}\n{paragraph_block(rng, 170)}", source=f"<obsidian>:Note {i}",
                    doc_id=f"obsidian:Note {i}.md", source_kind=NOTES, title=f"Note {i}") for i in range(count)]
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sizes(db) -> dict:
    """MiB of the keyword column (all rows) and of its GIN index."""
    column, index = db.conn.execute(
        "SELECT sum(pg_column_size(tsv)), pg_relation_size('chunks_tsv') FROM chunks").fetchone()
    db.conn.commit()
    return {"tsv_mib": round(column / 2**20, 1), "gin_mib": round(index / 2**20, 1)}


def search_ms(db, queries: list[str], vectors) -> float:
    """Median ms of one whole hybrid search (as the chat runs it after embedding the question)."""
    import retrieve_related_content_from_db as retrieval

    for query, vector in zip(queries[:10], vectors):  # warm: plans, caches
        retrieval.search_vector(db, vector, retrieval.SearchRequest(query), k=10, mode="hybrid")
    times = []
    for query, vector in zip(queries, vectors):
        start = time.perf_counter()
        retrieval.search_vector(db, vector, retrieval.SearchRequest(query), k=10, mode="hybrid")
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    settings.mark_offline()
    import store as store_module

    chunks, vectors = generated_chunks(args.chunks, args.seed)
    rng = random.Random(args.seed + 1)
    queries = [sentence(rng, 5, 10) for _ in range(QUERIES)]
    query_vectors = np.random.default_rng(args.seed + 1).standard_normal((QUERIES, DIM)).astype(np.float32)
    rows = []
    with embedded_database(scratch_folder("pllm-text-search")) as url, store_module.Store(url) as db:
        for languages in LANGUAGE_SETS:
            db.drop_all()
            db.ensure_schema("bench-text-search", DIM, text_languages=languages)
            db.drop_vector_index()  # as a bulk load does: HNSW built once, after the rows
            start = time.perf_counter()
            with db.transaction():
                db.copy_chunks(chunks, vectors)
            copy_s = time.perf_counter() - start
            db.ensure_vector_index()
            db.conn.execute("ANALYZE chunks")
            db.conn.commit()
            rows.append({"languages": ",".join(languages) or "none", "copy_rows_per_s": round(len(chunks) / copy_s),
                         **sizes(db), "search_ms_p50": search_ms(db, queries, query_vectors)})
        start = time.perf_counter()  # the table now holds the last set; back to the default's
        db.ensure_schema("bench-text-search", DIM, text_languages=("english",))
        rebuild_s = round(time.perf_counter() - start, 1)
    report = {"chunks": len(chunks), "rows": rows, "rebuild_seconds": rebuild_s,
              "rebuild": f"{rows[-1]['languages']} -> english"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(chunks)} generated note chunks, {DIM}-dim vectors")
    print("| stems of | COPY rows/s | keyword column | its GIN index | hybrid search p50 |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['languages']} | {row['copy_rows_per_s']:,} | {row['tsv_mib']} MiB | {row['gin_mib']} MiB | "
              f"{row['search_ms_p50']} ms |")
    print(f"changing the languages ({report['rebuild']}) rebuilt the column in place in {rebuild_s} s")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
