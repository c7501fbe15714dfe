"""Runs with nothing to chunk or embed load no model library: an unchanged re-run, --list,
--forget, --prune, every --help and the preview scripts' argument errors import neither torch
nor transformers nor sentence_transformers (what made an unchanged re-run take 11-13 s and
1 GB). Checked on whole processes with `python -X importtime`, the way a user runs them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import settings
from conftest import PROJECT_DIR

MODEL_LIBRARIES = ("torch", "transformers", "sentence_transformers")
TIMEOUT = 300


def run_traced(script: str, args: list[str], input: str | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run one of our scripts as a user would; returns the result and the model libraries it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(PROJECT_DIR / script), *args],
                          cwd=PROJECT_DIR, input=input, capture_output=True, text=True, timeout=TIMEOUT)
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    # The script's own stderr without the import trace, for messages in assertions.
    done.stderr = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    return done, imported & set(MODEL_LIBRARIES)


def write_sources(root: Path) -> tuple[Path, Path]:
    vault = root / "vault"
    (vault / "Trips").mkdir(parents=True)
    (vault / "Trips" / "Kyoto.md").write_text("# Kyoto\n\nTemples, trains and matcha with Maria in June.\n")
    (vault / "Recipes.md").write_text("# Bread\n\nFlour, water, salt and a long night in the fridge.\n")
    whatsapp = root / "whatsapp"
    whatsapp.mkdir()
    (whatsapp / "WhatsApp Chat with Maria.txt").write_text(
        "26/06/2021, 10:15 - Maria: Are we still on for the cinema?\n"
        "26/06/2021, 10:17 - Rui: Yes, at eight\n", encoding="utf-8")
    return vault, whatsapp


def ingest_args(vault: Path, whatsapp: Path, database_url: str, model: str) -> list[str]:
    return ["--obsidian", str(vault), "--whatsapp", str(whatsapp), "--database-url", database_url,
            "--embedding-model", model, "--json", "--quiet"]


def summary_of(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_unchanged_rerun_imports_no_model_library(tmp_path, database_url, embedding_model_path):
    vault, whatsapp = write_sources(tmp_path)
    first, loaded = run_traced("create_and_persist_embeddings.py",
                               ingest_args(vault, whatsapp, database_url, embedding_model_path))
    assert summary_of(first)["chunks_embedded"] >= 3
    assert "torch" in loaded  # the trace sees the model when there is work for it

    # The same model spelt another way is recognised without loading it.
    again, loaded = run_traced("create_and_persist_embeddings.py",
                               ingest_args(vault, whatsapp, database_url, embedding_model_path + "/"))
    summary = summary_of(again)
    assert (summary["chunks_embedded"], summary["documents_changed"], summary["documents_unchanged"]) == (0, 0, 3)
    assert loaded == set(), f"an unchanged re-run imported {sorted(loaded)}"

    # A changed note whose chunks are all stored already: tokenizer yes, model no.
    note = vault / "Recipes.md"
    stat = note.stat()
    note.write_text(note.read_text() + "\n\n")
    os.utime(note, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the note's date (its mtime) stays
    edited, loaded = run_traced("create_and_persist_embeddings.py",
                                ingest_args(vault, whatsapp, database_url, embedding_model_path))
    summary = summary_of(edited)
    assert (summary["documents_changed"], summary["chunks_embedded"]) == (1, 0)
    assert "transformers" in loaded and "sentence_transformers" not in loaded


def test_list_forget_and_prune_import_no_model_library(tmp_path, database_url, embedding_model_path):
    vault, whatsapp = write_sources(tmp_path)
    summary_of(run_traced("create_and_persist_embeddings.py",
                          ingest_args(vault, whatsapp, database_url, embedding_model_path))[0])
    base = ["--database-url", database_url]
    for args in (["--list"], ["--list", "--json", "--source-prefix", "<obsidian>:"],
                 ["--forget", "<obsidian>:Recipes"], ["--prune", "whatsapp", "--quiet"]):
        done, loaded = run_traced("create_and_persist_embeddings.py", base + args)
        assert done.returncode == 0, (args, done.stderr)
        assert loaded == set(), f"{args} imported {sorted(loaded)}"
    listed, _ = run_traced("create_and_persist_embeddings.py", base + ["--list"])
    assert "Kyoto" in listed.stdout and "Recipes" not in listed.stdout and "cinema" not in listed.stdout


SCRIPTS = ["create_and_persist_embeddings.py", "obsidian_to_embeddings.py", "whatsapp_to_embeddings.py",
           "embedding_generator_multilingual.py", "retrieve_related_content_from_db.py", "main.py",
           "formulate_query_for_retrieving_content.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_imports_no_model_library(script):
    done, loaded = run_traced(script, ["--help"])
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
    assert loaded == set(), f"{script} --help imported {sorted(loaded)}"


@pytest.mark.parametrize("script, args, message", [
    ("obsidian_to_embeddings.py", ["--obsidian", "/nonexistent/vault"], "is not a folder"),
    ("whatsapp_to_embeddings.py", ["--whatsapp", "/nonexistent/exports"], "does not exist"),
    ("whatsapp_to_embeddings.py", ["--whatsapp", "/", "--date-order", "sideways"], "invalid choice"),
])
def test_preview_argument_errors_import_no_model_library(script, args, message):
    done, loaded = run_traced(script, args)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert loaded == set(), f"{script} {args} imported {sorted(loaded)}"


# ---------------------------------------------------------------- the embedder, unloaded


def test_the_budget_needs_no_model_and_equals_the_loaded_models(embedding_model_path):
    check = (
        f"import sys; sys.path.insert(0, {str(PROJECT_DIR)!r})\n"
        "from embedding_generator_multilingual import Embedder\n"
        f"e = Embedder({embedding_model_path!r}, device='cpu')\n"
        "print(e.passage_token_budget, e.max_seq_length)\n"
        f"print(sorted(m for m in {MODEL_LIBRARIES!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["254 256", "[]"]


@pytest.mark.parametrize("which", ["packaged", "multilingual"])
def test_lazy_counts_and_budget_match_the_loaded_model(which, request):
    from embedding_generator_multilingual import Embedder

    folder = request.getfixturevalue("embedding_model_path" if which == "packaged" else "multilingual_model_path")
    lazy = Embedder(folder, device="cpu")
    texts = ["Vamos ao cinema amanhã às 20h", "hello " * 300, "Ação, São Paulo, café, 東京", "  two\n\nlines  "]
    budget, counts = lazy.passage_token_budget, [lazy.count_tokens(t) for t in texts]
    assert lazy._model is None  # counting loaded the tokenizer only
    tokenizer = lazy.model.tokenizer
    def real(text):
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])
    assert counts == [real(t) for t in texts]
    prefix = real(lazy.passage_prefix) if lazy.passage_prefix else 0
    assert budget == lazy.model.max_seq_length - prefix - 2


def test_a_model_whose_size_changed_under_the_index_is_one_error(embedding_model_path):
    from embedding_generator_multilingual import Embedder

    embedder = Embedder(embedding_model_path, device="cpu")
    embedder.expect_dimension(768)  # what an index built before the folder was replaced says
    with pytest.raises(settings.UserError, match=r"the index holds 768-dim vectors but the model in .* gives 384; "
                                                 r"re-run ingestion with --rebuild"):
        embedder.embed_passages(["x"])


# ---------------------------------------------------------------- the chat


def test_the_first_message_waits_for_models_loading_in_the_background():
    import io

    import main as chat
    from chat_fakes import FakeLLM, FakeRetriever

    release = threading.Event()
    llm = FakeLLM(["a calm answer"])

    def slow_load():
        release.wait()  # until the session has said it is waiting
        return llm

    class Releasing(io.StringIO):
        def write(self, text):
            if "loading the models" in text:
                release.set()
            return super().write(text)

    err = Releasing()
    models = chat.BackgroundModels(slow_load).start()
    session = chat.ChatSession(None, FakeRetriever([]), chat.resolve_persona("assistant"), out=io.StringIO(),
                               err=err, keeper=lambda llm, history, today: chat_request("hello"), models=models)
    assert not models.ready()
    turn = session.ask("hello")
    assert turn.answer == "a calm answer" and session.llm is llm
    assert "(loading the models; the first answer waits for them)" in err.getvalue()


def chat_request(query):
    from retrieve_related_content_from_db import SearchRequest

    return SearchRequest(query)


def test_a_model_that_fails_to_load_in_the_background_ends_the_chat_with_one_line(tmp_path, database_url,
                                                                                   embedding_model_path):
    broken = tmp_path / "broken-llm"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    done, _ = run_traced("main.py", ["--database-url", database_url, "--embedding-model", embedding_model_path,
                                     "--backend", "transformers", "--model", str(broken)],
                         input="hello\nsecond message\n")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"model folder {broken} could not be loaded" in errors[0], done.stderr
    # The empty-index hint came first, before anything loaded.
    assert done.stderr.index("the index is empty") < done.stderr.index("error: ")
