"""personal_llm: chat in the terminal with a local LLM that answers from your own notes and
messages, and shows where each answer came from.

    python main.py                          # the REPL (PERSONA below; --persona overrides)
    echo "when did I go to Kyoto?" | python main.py    # one answer per input line, plain text

Each message: the document keeper turns the conversation into a search request, the top
passages are retrieved, and the persona answers from them, streamed, citing them as [1], [2],
followed by its sources. A question about a whole period ("what did I do last summer?", or
`/summary 2023-05 Maria`) reads every passage of the window instead (period_summary.py).

This file holds the personas and the REPL; the conversation is chat_session.py, what one answer
sends the model is chat_prompt.py, and the store and the models behind them chat_resources.py.
"""
from __future__ import annotations

# Who the assistant is. Edit this line: a name from PERSONAS below, or any description
# ("You are a cheerful travel buddy who ..."). `--persona` and the PERSONA setting override it.
PERSONA = "assistant"

PERSONAS = {
    "assistant": (
        "You are a helpful, precise personal assistant. You answer briefly and clearly, and you "
        "point to the note or conversation an answer comes from."
    ),
    "philosopher": (
        "You are a calm, thoughtful philosopher and a friend of the user. You help them reflect on "
        "their ideas, choices and experiences, draw connections across the years, and now and then "
        "ask one good question back."
    ),
    "psychotherapist": (
        "You are a warm, attentive psychotherapist. You listen carefully, reflect feelings back, "
        "notice patterns in what the user has lived and written, and ask gentle open questions. "
        "You never diagnose and you never judge."
    ),
}

GREETINGS = {
    "assistant": "Hello! Ask me anything about your notes and messages.",
    "philosopher": "Welcome back. What has been on your mind lately?",
    "psychotherapist": "Hello, I'm glad you're here. How are you feeling today?",
}
DEFAULT_GREETING = "Hello! Ask me anything about your notes and messages."

import argparse
import os
import sys
from datetime import date
from typing import TYPE_CHECKING, Callable, TextIO

import settings
from chat_resources import BackgroundModels, DatabaseDown, ModelLoadFailed, StoreRetriever
from chat_session import DEFAULT_TEMPERATURE, ChatSession, Persona, Personas, empty_index_note

if TYPE_CHECKING:
    from llm_backend import ChatModel

HISTORY_FILE = "chat_history"  # readline history, in the data folder
HISTORY_LENGTH = 1000
PROMPT_CACHE_FOLDER = "prompt_cache"  # --prompt-cache, in the data folder


# ---------------------------------------------------------------- persona


def personas() -> Personas:
    """The named personas above, as the chat's /persona command knows them."""
    return Personas(PERSONAS, GREETINGS, DEFAULT_GREETING)


def persona_from(value: str) -> Persona:
    """A named persona (`"philosopher"`, any case) or free text as a custom persona."""
    return personas().get(value)


def persona_typo_warning(value: str) -> str | None:
    """A warning when a one-word persona is not a named one but looks like a typo of one:
    `"philosofer"` -> "... did you mean philosopher?"; None for names and descriptions."""
    return personas().typo_warning(value)


def resolve_persona(flag_value: str | None = None) -> Persona:
    """--persona, else the PERSONA setting (environment, .env), else the PERSONA constant."""
    return persona_from(settings.get("PERSONA", flag_value) or PERSONA)


# ---------------------------------------------------------------- the REPL


def setup_readline(history_path) -> Callable[[], None]:
    """Line editing and a private history file; returns the function that saves it."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline: plain input still works
        return lambda: None
    try:
        readline.read_history_file(history_path)
    except (OSError, ValueError):
        pass
    readline.set_history_length(HISTORY_LENGTH)

    def save() -> None:
        try:
            history_path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history_path)
            os.chmod(history_path, 0o600)  # what you asked is private
        except OSError:
            pass

    return save


def run_repl(session: ChatSession, stdin: TextIO, interactive: bool) -> int:
    """Read messages until exit/quit/Ctrl-D (or end of input), answering each."""
    if interactive:
        session._print(session.persona.greeting)
        session._print("(/help for commands)", muted=True)
    prompt = "\nyou> " if interactive else ""
    while True:
        try:
            line = input(prompt) if interactive else stdin.readline()
        except EOFError:
            break
        except KeyboardInterrupt:  # at the prompt: drop the line, stay
            session._print()
            continue
        if not interactive and line == "":
            break
        line = line.strip()
        if not line:
            continue
        if line.lower() in ("exit", "quit"):
            break
        if line.startswith("/"):
            try:
                if not session.command(line):
                    break
            except KeyboardInterrupt:  # e.g. during /summary's reading
                session._print("\n[interrupted]", muted=True)
            continue
        try:
            session.ask(line)
        except KeyboardInterrupt:  # during the keeper or the search
            session._print("\n[interrupted]", muted=True)
        except ModelLoadFailed:
            raise  # nothing can be answered: one error line, and the chat ends
        except settings.UserError as err:  # this turn cannot be answered; the chat goes on
            session._status(f"error: {err}")
    if interactive:
        session._print()
    return 0


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Chat with a local LLM that answers from your notes and messages.")
    parser.add_argument("--persona", help=f"{', '.join(PERSONAS)} or any description (PERSONA)")
    parser.add_argument("--backend", help="auto, mlx or transformers (LLM_BACKEND)")
    parser.add_argument("--model", help="LLM hub id or local folder (LLM_MODEL)")
    parser.add_argument("--max-tokens", type=int, help="most tokens in one answer (LLM_MAX_TOKENS, default 512)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"sampling temperature of answers; 0 is greedy (default {DEFAULT_TEMPERATURE})")
    parser.add_argument("-k", type=int, help="passages retrieved per message (RETRIEVAL_TOP_K, default 10)")
    parser.add_argument("--database-url", help="PostgreSQL URL (DATABASE_URL); unset: the embedded server")
    parser.add_argument("--data-dir", help="data folder (PERSONAL_LLM_DATA_DIR)")
    parser.add_argument("--embedding-model", help="hub id or folder (EMBEDDING_MODEL); the one used to ingest")
    parser.add_argument("--prompt-cache", action="store_true",
                        help="keep the system prompts' KV cache in the data folder, loaded at start")
    return parser


def fetch_chat_models(args: argparse.Namespace, embedder: bool, llm: bool) -> None:
    """Download whichever of the chat's two models is missing, before either loads; the hub is
    switched off only once both are on disk (the embedder being cached must not stop the LLM's
    first download)."""
    models = []
    if embedder:
        models.append((settings.get("EMBEDDING_MODEL", args.embedding_model), "EMBEDDING_MODEL", "embedding model"))
    if llm:
        backend = settings.llm_backend_name(args.backend)
        models.append((settings.llm_model_name(backend, args.model), "LLM_MODEL", "model"))
    if models:
        settings.fetch_models(models)


def main(argv: list[str] | None = None, *, llm: "ChatModel | None" = None, retriever=None,
         stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the chat. `llm`, `retriever` and the streams can be injected (tests)."""
    args = setup_arg_parser().parse_args(argv)
    persona = resolve_persona(args.persona)
    typo = persona_typo_warning(settings.get("PERSONA", args.persona) or PERSONA)
    max_tokens = settings.get_int("LLM_MAX_TOKENS", args.max_tokens)
    k = settings.get_int("RETRIEVAL_TOP_K", args.k)
    max_batches = settings.get_int("SUMMARY_MAX_BATCHES")
    if max_batches is None or max_batches < 1:
        raise settings.UserError(f"SUMMARY_MAX_BATCHES={max_batches} must be at least 1")
    if max_tokens is None or max_tokens < 1:
        raise settings.UserError(f"--max-tokens / LLM_MAX_TOKENS {max_tokens} must be at least 1")
    if k is None or k < 1:
        raise settings.UserError(f"-k / RETRIEVAL_TOP_K {k} must be at least 1")
    stdin = stdin or sys.stdin
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    interactive = stdin is sys.stdin and stdin.isatty()
    if typo:
        print(f"warning: {typo}", file=stderr, flush=True)

    empty_index_hint = empty_index_note()
    # The store first (fast, fails early); the empty-index hint comes before any model loads
    # (on a fresh machine it is the first thing to do). Both models are downloaded, if missing,
    # before either loads; an embedded database is created only once they are on disk, so a run
    # that cannot get its models writes nothing. The models then load in the background, so the
    # greeting and the prompt come at once (the first message waits for them).
    if retriever is None:
        import database
        import store as store_module
        from embedding_generator_multilingual import load_embedder
        from retrieve_related_content_from_db import EmptyIndexError, check_index

        external = settings.get("DATABASE_URL", args.database_url)
        if external:
            store = store_module.Store(external, autocommit=True)
            empty = store.count_chunks() == 0
        else:
            empty = not database.embedded_database_exists(settings.data_dir(args.data_dir))
        if empty:
            print(empty_index_hint, file=stderr, flush=True)
        fetch_chat_models(args, embedder=True, llm=llm is None)
        url = external or database.database_url(None, args.data_dir)
        if not external:
            store = store_module.Store(url, autocommit=True)
            if not empty and store.count_chunks() == 0:
                print(empty_index_hint, file=stderr, flush=True)
        embedder = load_embedder(args.embedding_model)
        retriever = StoreRetriever(url, embedder, store=store)
        try:
            check_index(store, embedder)  # another model's index is an error, not a bad answer
        except EmptyIndexError:
            pass  # told above, and the chat still runs (ingestion may happen meanwhile)
    else:
        count_chunks = getattr(retriever, "count_chunks", None)
        try:
            if count_chunks is not None and count_chunks() == 0:
                print(empty_index_hint, file=stderr, flush=True)
        except DatabaseDown as err:
            print(f"warning: {err}", file=stderr, flush=True)
        fetch_chat_models(args, embedder=False, llm=llm is None)
    def restore_prompt_caches(model: "ChatModel") -> None:
        from llm_cache import restore_system_prompt_caches

        session.llm = model  # its system prompts are neutralised for this model's tokenizer
        note = restore_system_prompt_caches(model, session.system_messages(date.today()),
                                            settings.data_dir(args.data_dir) / PROMPT_CACHE_FOLDER)
        print(f"note: {note}", file=stderr, flush=True)

    models = None
    if llm is None:
        backend = settings.llm_backend_name(args.backend)

        def load() -> "ChatModel":
            from llm_backend import load_llm

            return load_llm(backend, args.model)

        models = BackgroundModels(load, getattr(retriever, "embedder", None), in_thread=backend != "mlx",
                                  after=restore_prompt_caches if args.prompt_cache else None)
    session = ChatSession(llm, retriever, persona, personas=personas(), k=k, max_tokens=max_tokens,
                          temperature=max(0.0, args.temperature), out=stdout, err=stderr, max_batches=max_batches,
                          dim=stdout.isatty() and not os.environ.get("NO_COLOR"), models=models)
    if models is not None:
        models.start()  # after the session exists: restoring prompt caches needs its system prompts
    elif args.prompt_cache:
        restore_prompt_caches(llm)
    save_history = lambda: None  # noqa: E731
    if interactive:
        save_history = setup_readline(settings.data_dir(args.data_dir) / HISTORY_FILE)
    try:
        return run_repl(session, stdin, interactive)
    finally:
        save_history()


if __name__ == "__main__":
    settings.run_cli(main)
