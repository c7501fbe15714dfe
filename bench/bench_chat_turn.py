"""Generation per chat turn on the tiny fixture Llama, through the real chat code, with and
without the prompt caches, in one run:

    .venv/bin/python bench/bench_chat_turn.py                  # transformers and MLX, 3 turns
    .venv/bin/python bench/bench_chat_turn.py --backends transformers --turns 6
    .venv/bin/python bench/bench_chat_turn.py --repeats 3 --llama3-tokenizer FOLDER   # README's figures
    .venv/bin/python bench/bench_chat_turn.py --backends transformers --found-again 5   # follow-ups

A scripted conversation; each turn runs what `main.py` runs for a message once the passages are
back: the document keeper pass (greedy, capped at 96 tokens), prompt assembly under the context
budget (system + history with the passages each earlier message carried + this message's new
passages + message, `fit_prompt`) and the streamed answer (greedy).
Printed per turn and pass: `prompt tokens processed on turn N: P of T` (T the prompt's length,
P what the model had to process: T without the caches), time to the first answer piece and
decode tokens/s; then whether the greedy answers were the same with and without the caches.
The tiny model (2 layers, 64 wide) measures our code around the LLM and the share of each prompt
that is re-processed, not an 8B model's speed. With `--llama3-tokenizer` (a folder holding Llama 3's
tokenizer.json) the same conversation is also counted in Llama 3's tokens, with short and with
e5-size passages, and turned into prefill times at prefill speeds cited from a public Mac benchmark. The part outside generation (query embedding +
search) is measured by bench/bench_retrieval.py; its figure is copied in when
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

DEFAULT_TURNS = 3
DEFAULT_ANSWER_TOKENS = 128
DEFAULT_BACKENDS = ("transformers", "mlx")
DEFAULT_OUTPUT = BENCH_DIR / "results" / "chat_turn.json"
RETRIEVAL_RESULTS = BENCH_DIR / "results" / "retrieval.json"
QUESTIONS = [  # a conversation: each follow-up leans on the one before
    "When did I go to Kyoto?", "And what did Maria and I plan for Saturday there?",
    "What did she say about the trains?", "O que eu escrevi sobre o projeto Survival Ball?",
    "Who came to the cinema with me?", "Summarise my notes from June 2021.",
]
TODAY = date(2024, 5, 6)  # fixed: the system prompts hold today's date
CONTEXT_WINDOW = 8192  # Llama 3's: the conversation is kept whole, as it would be there


def make_hits(count: int = 10, first: int = 0, repeat: int = 1):
    """Passages shaped like real ones: a note paragraph or a few chat lines, dated, with people;
    `repeat` makes each one that many times longer (12: about the 507-token passages of e5)."""
    from retrieve_related_content_from_db import Hit

    start = datetime(2021, 6, 1, 9, tzinfo=timezone.utc)
    hits = []
    for i in range(first, first + count):
        when = start + timedelta(days=3 * i)
        text = (f"Maria: are we still on for Saturday {i}?\nMe: yes, the Kyoto train at 9.\n"
                "Maria: great, I'll bring the tickets and the matcha.") if i % 2 else (
                f"Kyoto trip, day {i}: temples in the morning, the Survival Ball notes in the evening. "
                "Ação, coração, informação.")
        text = "\n".join([text] * repeat)
        hits.append(Hit(text=text, source=f"<obsidian>:Trips/Kyoto-{i}" if i % 2 == 0 else "<whatsapp>:Maria",
                        score=0.9 - i / 50, doc_id=f"d{i}", source_kind="notes" if i % 2 == 0 else "messages",
                        people=["Maria"], started_at=when, ended_at=when))
    return hits


class TurnRetriever:
    """Other passages for every message (the worst case for a cache: nothing repeats), or with
    `found_again` the previous message's best few first and then new ones (a follow-up question)."""

    def __init__(self, repeat: int = 1, found_again: int = 0):
        self.repeat, self.found_again, self.calls = repeat, found_again, 0
        self.last: list = []

    def __call__(self, request, k):
        from retrieve_related_content_from_db import SearchResult

        self.calls += 1
        again = self.last[:self.found_again]
        self.last = again + make_hits(k - len(again), first=k * self.calls, repeat=self.repeat)
        return SearchResult(hits=list(self.last), request=request, filters_applied={})


def widen_context(folder: Path, window: int) -> None:
    """Give the tiny model a longer context window (RoPE has no trained limit to break)."""
    for name, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        path = folder / name
        config = json.loads(path.read_text())
        config[key] = window
        path.write_text(json.dumps(config, indent=2))


class Timed:
    """Wraps the model's `stream` to time each pass: first piece, decode rate, tokens processed."""

    def __init__(self, llm):
        self.llm = llm
        self.passes: list[dict] = []

    def __getattr__(self, name):
        return getattr(self.llm, name)

    def stream(self, messages, max_tokens, temperature=0.0, top_p=1.0):
        pieces, first = [], None
        tic = time.perf_counter()
        for piece in self.llm.stream(messages, max_tokens, temperature, top_p):
            if first is None:
                first = time.perf_counter() - tic
            pieces.append(piece)
            yield piece
        total = time.perf_counter() - tic
        first = total if first is None else first
        text = "".join(pieces)
        # A finish at the length limit means exactly max_tokens were generated.
        generated = max_tokens if self.llm.last_finish_reason == "length" else self.llm.count_text_tokens(text)
        self.passes.append({"processed": self.llm.last_prompt_processed, "prompt": self.llm.last_prompt_tokens,
                            "first_piece_ms": round(first * 1000, 2),
                            "decode_tokens_per_s": round(max(generated - 1, 0) / max(total - first, 1e-9), 1),
                            "text": text})

    def complete(self, messages, max_tokens, temperature=0.0):
        return "".join(self.stream(messages, max_tokens, temperature))


def run_conversation(llm, turns: int, answer_tokens: int, cached: bool, repeat: int = 1,
                     found_again: int = 0) -> list[dict]:
    """The scripted conversation on `llm`, caches on or off; per turn its keeper and answer passes."""
    from main import ChatSession, resolve_persona

    llm.use_prompt_cache = cached
    llm.reset_cache()
    timed = Timed(llm)
    session = ChatSession(timed, TurnRetriever(repeat, found_again), persona=resolve_persona("assistant"),
                          max_tokens=answer_tokens, temperature=0.0, out=io.StringIO(), err=io.StringIO(),
                          today=TODAY)
    results = []
    for turn in range(turns):
        timed.passes.clear()
        session.ask(QUESTIONS[turn % len(QUESTIONS)])
        keeper, answer = timed.passes  # the keeper's pass, then the answer's
        results.append({"turn": turn + 1, "keeper": keeper, "answer": answer})
    return results


def bench_backend(backend: str, folder: Path, turns: int, answer_tokens: int, repeats: int = 1,
                  found_again: int = 0) -> dict:
    """The conversation without, then with, the prompt caches, on one backend."""
    from llm_backend import load_llm

    tic = time.perf_counter()
    llm = load_llm(backend, str(folder))
    load_s = time.perf_counter() - tic
    llm.complete([{"role": "user", "content": "warm up"}], max_tokens=4)
    result = {"backend": backend, "load_s": round(load_s, 2), "dtype": str(getattr(llm, "dtype", "")),
              "answer_tokens": answer_tokens, "found_again": found_again}
    for label, cached in (("without_cache", False), ("with_cache", True)):
        runs = [run_conversation(llm, turns, answer_tokens, cached, found_again=found_again) for _ in range(repeats)]
        result[label] = runs[0]
        for number, turn in enumerate(result[label]):  # timings: the median over the repeats
            for name in ("keeper", "answer"):
                for figure in ("first_piece_ms", "decode_tokens_per_s"):
                    turn[name][figure] = round(statistics.median(run[number][name][figure] for run in runs), 1)
        print(f"{backend} {label.replace('_', ' ')}:")
        for turn in result[label]:
            for name in ("keeper", "answer"):
                figures = turn[name]
                print(f"  {name:6s} prompt tokens processed on turn {turn['turn']}: "
                      f"{figures['processed']} of {figures['prompt']}   first piece {figures['first_piece_ms']:7.1f} ms"
                      f"   decode {figures['decode_tokens_per_s']:7.1f} tok/s")
    for label in ("without_cache", "with_cache"):
        if len(result[label]) > 1:
            second = result[label][1]
            processed = second["keeper"]["processed"] + second["answer"]["processed"]
            total = second["keeper"]["prompt"] + second["answer"]["prompt"]
            result[f"turn2_share_{label}"] = round(processed / total, 3)
            print(f"  turn 2 {label.replace('_', ' ')}: keeper + answer processed {processed} of {total} "
                  f"prompt tokens ({processed / total:.0%}); answer alone {second['answer']['processed']} of "
                  f"{second['answer']['prompt']} ({second['answer']['processed'] / second['answer']['prompt']:.0%})")
    same = all(a[name]["text"] == b[name]["text"] for a, b in zip(result["without_cache"], result["with_cache"])
               for name in ("keeper", "answer"))
    result["greedy_outputs_identical"] = same
    print(f"{backend}: greedy keeper and answer texts with and without the caches "
          f"{'identical' if same else 'DIFFER'}")
    for turns_list in (result["without_cache"], result["with_cache"]):
        for turn in turns_list:
            for name in ("keeper", "answer"):
                turn[name].pop("text")
    return result


class TokenCountingModel:
    """Llama 3's tokenizer and template with a cache that only counts: prompt tokens processed on
    each turn as Llama 3 8B would process them, and fixed answers (no weights needed)."""

    KEEPER_REPLY = '{"query": "Kyoto trip plans with Maria", "since": null, "until": null, "people": ["Maria"], "source": null}'
    ANSWER = ("You went to Kyoto in June 2021 [1]. Maria planned the Saturday train at 9 and said she would bring "
              "the tickets and the matcha [2]; your note from that day describes the temples in the morning [3]. ")

    def __new__(cls, folder: Path):
        from transformers import AutoTokenizer

        from llm_backend import ChatModel
        from tiny_models import CHAT_TEMPLATE

        class Counting(ChatModel):
            def _new_cache(self):
                return []

            def _cache_length(self, cache):
                return len(cache)

            def _trim_cache(self, cache, keep):
                del cache[keep:]
                return True

            def _stream_pieces(self, slot, new_ids, max_tokens, temperature, top_p):
                keeper = "document keeper" in self._last_system
                reply = cls.KEEPER_REPLY if keeper else cls.ANSWER * 4
                ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"][:max_tokens]
                fed = list(new_ids) + ids[:-1]  # the last answer token is never fed back
                slot.cache.extend(fed)
                slot.tokens.extend(fed)
                yield self.tokenizer.decode(ids)
                return "stop" if len(ids) < max_tokens else "length"

            def stream(self, messages, max_tokens, temperature=0.0, top_p=1.0):
                self._last_system = messages[0]["content"] if messages else ""
                return super().stream(messages, max_tokens, temperature, top_p)

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        tokenizer.chat_template = CHAT_TEMPLATE  # Llama 3 Instruct's layout
        return Counting(tokenizer, CONTEXT_WINDOW, name="Llama 3 tokenizer")


# Cited, not measured: llama.cpp llama-bench, Llama 3 8B Q4_K_M, pp512 / tg512 tokens/s (May 2024),
# github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference README.
CITED_MAC_SPEEDS = {"M1 Max 32-core GPU": (408.23, 35.73), "M3 Max 40-core GPU": (693.32, 48.97),
                    "M2 Ultra 76-core GPU": (994.04, 78.81)}


def llama3_estimates(folder: Path, turns: int, answer_tokens: int) -> dict:
    """Prompt tokens processed per turn with Llama 3's tokenizer, short and full-size passages,
    and the time to first token they imply at the cited Mac prefill speeds."""
    model = TokenCountingModel(folder)
    result = {}
    for label, repeat in (("short passages", 1), ("e5-size passages (~500 tokens)", 12)):
        runs = {name: run_conversation(model, turns, answer_tokens, cached, repeat)
                for name, cached in (("without_cache", False), ("with_cache", True))}
        print(f"Llama 3 tokenizer, {label}:")
        for turn_plain, turn_cached in zip(runs["without_cache"], runs["with_cache"]):
            processed = turn_cached["keeper"]["processed"] + turn_cached["answer"]["processed"]
            total = turn_plain["keeper"]["prompt"] + turn_plain["answer"]["prompt"]
            line = (f"  prompt tokens processed on turn {turn_cached['turn']}: {processed} of {total} "
                    f"(keeper {turn_cached['keeper']['processed']} of {turn_cached['keeper']['prompt']}, "
                    f"answer {turn_cached['answer']['processed']} of {turn_cached['answer']['prompt']})")
            estimates = {mac: (round(total / pp, 2), round(processed / pp, 2)) for mac, (pp, _) in CITED_MAC_SPEEDS.items()}
            print(line + "; prefill s without/with cache: " +
                  ", ".join(f"{mac} {a}/{b}" for mac, (a, b) in estimates.items()))
            result.setdefault(label, []).append({"turn": turn_cached["turn"], "processed": processed, "prompt": total,
                                                 "keeper": [turn_cached["keeper"]["processed"], turn_cached["keeper"]["prompt"]],
                                                 "answer": [turn_cached["answer"]["processed"], turn_cached["answer"]["prompt"]],
                                                 "prefill_s_without_with": estimates})
    return result


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Generation time per chat turn on the tiny fixture model.")
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS)
    parser.add_argument("--answer-tokens", type=int, default=DEFAULT_ANSWER_TOKENS)
    parser.add_argument("--backends", nargs="*", default=list(DEFAULT_BACKENDS), choices=DEFAULT_BACKENDS,
                        help="none: only the Llama 3 token counts")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--repeats", type=int, default=1, help="conversations per setting; timings are their median")
    parser.add_argument("--found-again", type=int, default=0, metavar="N",
                        help="from turn 2 on, the previous turn's best N passages are found again (default 0: "
                             "all passages new, the worst case for the caches)")
    parser.add_argument("--llama3-tokenizer", type=Path,
                        help="folder with Llama 3's tokenizer.json: also count Llama 3 8B's prompt tokens "
                             "per turn and estimate its time to first token on Macs from cited speeds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tiny_models import build_tiny_llama

    report: dict = {"model": f"tiny fixture Llama (2 layers, hidden 64, vocab 400, window {CONTEXT_WINDOW})",
                    "machine": platform.machine(), "cpus": os.cpu_count(), "backends": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_llama(Path(tmp) / "tiny-llama")
        widen_context(folder, CONTEXT_WINDOW)
        for backend in args.backends:
            try:
                figures = bench_backend(backend, folder, args.turns, args.answer_tokens, args.repeats,
                                        args.found_again)
            except ImportError as err:
                print(f"{backend}: skipped ({err})")
                continue
            report["backends"].append(figures)
        if args.llama3_tokenizer:
            report["llama3_estimates"] = llama3_estimates(args.llama3_tokenizer, args.turns, args.answer_tokens)
            report["llama3_speeds_cited"] = {"source": "github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference "
                                             "(llama.cpp, Llama 3 8B Q4_K_M, pp512/tg512 tokens/s)",
                                             "speeds": CITED_MAC_SPEEDS}
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
