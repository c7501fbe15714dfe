"""Hostile and broken input, through the real ingestion CLI and the real parsers: the run
finishes, every bad file is named in a warning, every good file is findable, no traceback.
SQL injection strings in notes, chat names, search queries and CLI filters are plain text.
"""
from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import psycopg
import pytest

import hostile_corpus
from faults_support import (assert_clean_exit, index_state, netguard_log, run_script, script_env,
                            table_exists)

INJECTION = "Robert'); DROP TABLE chunks;--"
MORE_INJECTIONS = ["'; DROP TABLE documents; SELECT '", "$$; DROP TABLE index_meta; $$", "1' OR '1'='1",
                   "x' OR 1=1; TRUNCATE chunks; --"]
TABLES = ("chunk_speakers", "chunks", "documents", "index_meta", "forget_rules", "forget_texts")  # the last two: after a --forget


def listed(database_url: str, env: dict) -> list[dict]:
    """Every stored chunk, through `--list --json`."""
    done = run_script("create_and_persist_embeddings.py", ["--list", "--json", "--database-url", database_url], env)
    assert_clean_exit(done)
    return [json.loads(line) for line in done.stdout.splitlines()]


def source_of(good_key: str) -> str:
    """hostile_corpus's key of a good file -> the `source` its chunks carry."""
    if good_key.startswith("<"):
        return good_key
    return "<obsidian>:" + good_key[:-3]


# ---------------------------------------------------------------- hostile corpus


def test_hostile_corpus_finishes_names_every_bad_file_and_indexes_every_good_one(
        tmp_path, database_url, embedding_model_path):
    vault, whatsapp, good, bad = hostile_corpus.build(tmp_path / "corpus")
    env = script_env(tmp_path)
    args = ["--obsidian", str(vault), "--whatsapp", str(whatsapp), "--database-url", database_url,
            "--embedding-model", embedding_model_path, "--json", "--quiet"]
    done = run_script("create_and_persist_embeddings.py", args, env)
    assert_clean_exit(done)
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    for name in bad:
        assert any(name in line for line in warnings), f"no warning names {name!r}:\n" + "\n".join(warnings)
    # Nothing but warnings and the model's loading bar on stderr.
    others = [line for line in done.stderr.splitlines() if line and not line.startswith("warning: ")
              and "Loading weights" not in line]
    assert not others, others

    chunks = listed(database_url, env)
    for key, phrase in good.items():
        texts = [c["text"] for c in chunks if c["source"] == source_of(key)]
        assert texts, f"{key!r} is not in the index"
        assert any(phrase in text for text in texts), f"{phrase!r} of {key!r} is not in the index"
    # Skipped files left nothing behind, and nothing went out.
    sources = {c["source"] for c in chunks}
    for skipped in ("<obsidian>:Bad/junk", "<obsidian>:Bad/nul bytes"):
        assert skipped not in sources
    assert netguard_log(tmp_path) == ""

    # Bad files do not make every later run redo work.
    before = index_state(database_url)
    again = run_script("create_and_persist_embeddings.py", args, env)
    assert_clean_exit(again)
    summary = json.loads(again.stdout)
    assert summary["chunks_embedded"] == 0 and summary["chunks_deleted"] == 0, summary
    assert index_state(database_url) == before


# ---------------------------------------------------------------- SQL injection


@pytest.fixture
def injected_index(tmp_path, database_url, embedding_model_path):
    """An index whose note names, note text, chat name and messages are injection strings."""
    vault = tmp_path / "vault"
    (vault / "Notes").mkdir(parents=True)
    (vault / "Notes" / f"{INJECTION}.md").write_text(f"{INJECTION} likes quokka sandwiches.\n")
    (vault / "Notes" / "Others.md").write_text("\n\n".join(f"Also stored: {s}" for s in MORE_INJECTIONS) + "\n")
    (vault / "Notes" / "Plain.md").write_text("The zebrafish aquarium needs cleaning on Fridays.\n")
    whatsapp = tmp_path / "whatsapp"
    whatsapp.mkdir()
    chat = {"999@s.whatsapp.net": {"name": INJECTION, "messages": {
        "m1": {"from_me": False, "timestamp": 1624702500, "data": f"Meet at the okapi house. {MORE_INJECTIONS[0]}",
               "sender": None, "media": False, "meta": False}}}}
    (whatsapp / "result.json").write_text(json.dumps(chat))
    env = script_env(tmp_path)
    done = run_script("create_and_persist_embeddings.py",
                      ["--obsidian", str(vault), "--whatsapp", str(whatsapp), "--database-url", database_url,
                       "--embedding-model", embedding_model_path, "--quiet"], env)
    assert_clean_exit(done)
    return env


def call(main, argv: list[str], stdin: str = "") -> tuple[list, str]:
    """Run a script's main() in this process (the model is cached here); (JSON lines, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), mock.patch("sys.stdin", io.StringIO(stdin)):
        assert main(argv) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_injection_strings_are_stored_and_searched_as_plain_text(database_url, injected_index, embedding_model_path):
    import create_and_persist_embeddings as ingestion
    import retrieve_related_content_from_db as retrieval

    chunks, _ = call(ingestion.main, ["--list", "--json", "--database-url", database_url])
    by_source = {c["source"]: c for c in chunks}
    assert f"{INJECTION} likes quokka sandwiches." in by_source[f"<obsidian>:Notes/{INJECTION}"]["text"]
    for injection in MORE_INJECTIONS:
        assert injection in by_source["<obsidian>:Notes/Others"]["text"]
    chat = by_source[f"<whatsapp>:{INJECTION}"]
    assert chat["chat_name"] == INJECTION and INJECTION in chat["people"]
    before = index_state(database_url)
    common = ["--database-url", database_url, "--embedding-model", embedding_model_path, "--json"]

    # Queries, one per line on stdin.
    queries = [INJECTION, *MORE_INJECTIONS, "%", "_"]
    results, _ = call(retrieval.main, ["-", *common], "\n".join(queries) + "\n")
    assert len(results) == len(queries)
    assert results[0][0]["source"] == f"<obsidian>:Notes/{INJECTION}"  # its own words rank it first

    # A person filter equal to the injected chat name finds exactly what holds that name: the
    # chat (a participant) and the note that mentions it.
    (hits,), _ = call(retrieval.main, ["okapi", "--person", INJECTION, *common])
    assert {h["source"] for h in hits} == {f"<whatsapp>:{INJECTION}", f"<obsidian>:Notes/{INJECTION}"}, hits

    # LIKE wildcards in a filter match themselves only: nothing, so the search says it fell back.
    for wildcard in ("%", "_"):
        _, err = call(retrieval.main, ["okapi", "--person", wildcard, *common])
        assert "note:" in err, err

    # Source prefixes of --list and --forget.
    listing = lambda prefix: call(ingestion.main, ["--list", "--json", "--database-url", database_url,  # noqa: E731
                                                   "--source-prefix", prefix])[0]
    assert {c["source"] for c in listing(f"<whatsapp>:{INJECTION}")} == {f"<whatsapp>:{INJECTION}"}
    assert listing("%") == [] and listing("_") == [] and listing("'; DROP TABLE chunks;--") == []
    forgot, _ = call(ingestion.main, ["--forget", "x'); DROP TABLE documents;--", "--json", "--database-url",
                                      database_url])
    assert forgot == [{"forgotten_chunks": 0, "forgotten_documents": 0}]

    assert all(table_exists(database_url, table) for table in TABLES)
    assert index_state(database_url) == before
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == len(TABLES)
