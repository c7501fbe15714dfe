"""Generation time per chat turn on the tiny fixture Llama, through the real chat code:

    .venv/bin/python bench/bench_chat_turn.py                  # transformers and MLX
    .venv/bin/python bench/bench_chat_turn.py --backends transformers --turns 20

Each turn runs what `main.py` runs for a message once the passages are back: the document
keeper pass (greedy, capped at 96 tokens), prompt assembly under the context budget (system +
10 passages + history + message, `fit_prompt`), and the streamed answer. Reported per backend:
median keeper time, assembly time, time to the first answer piece (prompt prefill), decode
tokens/s and the whole generation part of a turn. The tiny model (2 layers, 64 wide) measures
our overhead around the LLM, not a real model's speed. The part outside generation (query
embedding + search) is measured by bench/bench_retrieval.py; its figure is copied in when
bench/results/retrieval.json exists. Results: bench/results/chat_turn.json.
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))
sys.path.insert(0, str(PROJECT_DIR / "tests"))

DEFAULT_TURNS = 10
DEFAULT_ANSWER_TOKENS = 128
DEFAULT_BACKENDS = ("transformers", "mlx")
DEFAULT_OUTPUT = BENCH_DIR / "results" / "chat_turn.json"
RETRIEVAL_RESULTS = BENCH_DIR / "results" / "retrieval.json"
QUESTIONS = [
    "When did I go to Kyoto?", "What did Maria and I plan for Saturday?",
    "O que eu escrevi sobre o projeto Survival Ball?", "Who came to the cinema with me?",
    "And what did she say about the trains?", "Summarise my notes from June 2021.",
]


def make_hits(count: int = 10):
    """Passages shaped like real ones: a note paragraph or a few chat lines, dated, with people."""
    from retrieve_related_content_from_db import Hit

    start = datetime(2021, 6, 1, 9, tzinfo=timezone.utc)
    hits = []
    for i in range(count):
        when = start + timedelta(days=3 * i)
        text = (f"Maria: are we still on for Saturday {i}?\nMe: yes, the Kyoto train at 9.\n"
                "Maria: great, I'll bring the tickets and the matcha.") if i % 2 else (
                f"Kyoto trip, day {i}: temples in the morning, the Survival Ball notes in the evening. "
                "Ação, coração, informação.")
        hits.append(Hit(content=text, source=f"<obsidian>:Trips/Kyoto-{i}" if i % 2 == 0 else "<whatsapp>:Maria",
                        score=0.9 - i / 50, doc_id=f"d{i}", source_kind="notes" if i % 2 == 0 else "messages",
                        people=["Maria"], started_at=when, ended_at=when))
    return hits


def bench_backend(backend: str, folder: Path, turns: int, answer_tokens: int) -> dict:
    """Run `turns` chat turns on one backend; medians of each phase."""
    from formulate_query_for_retrieving_content import formulate_request
    from llm_backend import load_llm
    from main import ChatSession, fit_prompt, resolve_persona, system_prompt

    tic = time.perf_counter()
    llm = load_llm(backend, str(folder))
    load_s = time.perf_counter() - tic
    hits = make_hits()
    session = ChatSession(llm, retriever=None, persona=resolve_persona("assistant"), out=io.StringIO())
    phases: dict[str, list[float]] = {"keeper_ms": [], "prompt_ms": [], "first_piece_ms": [],
                                      "decode_tokens_per_s": [], "generation_ms": []}
    prompt_tokens, cut = [], 0
    llm.complete([{"role": "user", "content": "warm up"}], max_tokens=4)
    for turn in range(turns):
        question = QUESTIONS[turn % len(QUESTIONS)]
        conversation = session.history + [{"role": "user", "content": question}]
        tic = time.perf_counter()
        formulate_request(llm, conversation, date.today())
        keeper_s = time.perf_counter() - tic

        tic = time.perf_counter()
        prompt = fit_prompt(llm, system_prompt(session.persona, date.today()), hits, session.history,
                            question, answer_tokens)
        prompt_s = time.perf_counter() - tic
        prompt_tokens.append(llm.count_tokens(prompt.messages))

        pieces, first = [], None
        tic = time.perf_counter()
        for piece in llm.stream(prompt.messages, prompt.answer_tokens, temperature=0.0):
            if first is None:
                first = time.perf_counter() - tic
            pieces.append(piece)
        answer_s = time.perf_counter() - tic
        text = "".join(pieces)
        # A finish at the length limit means exactly answer_tokens were generated.
        generated = prompt.answer_tokens if llm.last_finish_reason == "length" else llm.count_text_tokens(text)
        cut += llm.last_finish_reason == "length"
        decode_s = max(answer_s - (first or 0.0), 1e-9)
        session.history += [{"role": "user", "content": question}, {"role": "assistant", "content": text}]

        phases["keeper_ms"].append(keeper_s * 1000)
        phases["prompt_ms"].append(prompt_s * 1000)
        phases["first_piece_ms"].append((first or answer_s) * 1000)
        phases["decode_tokens_per_s"].append(max(generated - 1, 0) / decode_s)
        phases["generation_ms"].append((keeper_s + answer_s) * 1000)
    result = {name: round(statistics.median(values), 2) for name, values in phases.items()}
    result.update(backend=backend, load_s=round(load_s, 2), turns=turns, answer_tokens=answer_tokens,
                  prompt_tokens_median=int(statistics.median(prompt_tokens)), context_window=llm.context_window,
                  answers_cut_at_length=cut)
    return result


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Generation time per chat turn on the tiny fixture model.")
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS)
    parser.add_argument("--answer-tokens", type=int, default=DEFAULT_ANSWER_TOKENS)
    parser.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS), choices=DEFAULT_BACKENDS)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tiny_models import build_tiny_llama

    report: dict = {"model": "tiny fixture Llama (2 layers, hidden 64, vocab 400, window 1024)",
                    "machine": platform.machine(), "cpus": os.cpu_count(), "backends": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_llama(Path(tmp) / "tiny-llama")
        for backend in args.backends:
            try:
                figures = bench_backend(backend, folder, args.turns, args.answer_tokens)
            except ImportError as err:
                print(f"{backend}: skipped ({err})")
                continue
            report["backends"].append(figures)
            print(f"{backend:12s} keeper {figures['keeper_ms']:7.1f} ms  prompt {figures['prompt_ms']:5.1f} ms  "
                  f"first piece {figures['first_piece_ms']:6.1f} ms  decode {figures['decode_tokens_per_s']:7.1f} tok/s  "
                  f"generation/turn {figures['generation_ms']:7.1f} ms  (prompt {figures['prompt_tokens_median']} tokens)")
    if RETRIEVAL_RESULTS.is_file():
        turn = json.loads(RETRIEVAL_RESULTS.read_text()).get("turn") or {}
        if "median_ms" in turn:
            report["non_generation_turn_median_ms"] = turn["median_ms"]
            report["non_generation_source"] = "bench/results/retrieval.json (query embedding + search + prompt)"
            print(f"outside generation (bench_retrieval): {turn['median_ms']} ms median per turn")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
