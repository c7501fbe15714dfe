"""Run every benchmark in turn (`make bench`); each prints its own table and writes
bench/results/<name>.json. Pass `--quick` for small sizes while developing.

    .venv/bin/python bench/run_all.py [--quick]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# name -> (full-size arguments, quick arguments)
BENCHES = {
    "bench_ingestion.py": ([], ["--notes", "60"]),
    "bench_retrieval.py": ([], ["--rows", "10000"]),
    "bench_filters.py": ([], ["--rows", "10000", "--queries", "10"]),
    "bench_text_search.py": ([], ["--chunks", "2000"]),
    "bench_quality.py": ([], []),
    "bench_memory.py": ([], ["--chats", "3"]),
    "bench_chat_turn.py": ([], ["--turns", "3"]),
    "bench_chat_start.py": ([], ["--runs", "1"]),
    "bench_period_summary.py": ([], ["--days", "7", "--wall-days", "1"]),
    "bench_obsidian.py": ([], ["200"]),
    "bench_whatsapp.py": ([], ["10000"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run all benchmarks.")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    failed = []
    for script, (full, quick) in BENCHES.items():
        print(f"\n## {script}\n", flush=True)
        result = subprocess.run([sys.executable, str(BENCH_DIR / script), *(quick if args.quick else full)])
        if result.returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed or missed a target: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
