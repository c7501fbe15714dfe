"""Clear failures: the database going away in the middle of a chat, a database that refuses
writes (read-only, or its disk full) during ingestion, and a model folder that is not there.
Each is one line for the user, never a traceback; where the program stops, a non-zero exit;
the index stays as the last complete run left it.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import psycopg
import pytest

from faults_support import (LiveProcess, assert_one_error_line, database_name, index_state,
                            run_script, script_env)

DOWN_WARNING = "the database is not reachable"


def write_vault(root: Path, notes: int = 3) -> Path:
    vault = root / "vault"
    (vault / "Home").mkdir(parents=True, exist_ok=True)
    for i in range(notes):
        (vault / "Home" / f"Note {i}.md").write_text(f"# Note {i}\nThe zebrafish aquarium, part {i}, needs cleaning.\n")
    return vault


def ingest_in_process(vault: Path, database_url: str, model: str) -> None:
    import create_and_persist_embeddings as ingestion

    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert ingestion.main(["--obsidian", str(vault), "--database-url", database_url,
                               "--embedding-model", model, "--quiet"]) == 0


def admin(pg_server: str, statement: str, params: tuple = ()) -> None:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(statement, params)


def terminate_connections(pg_server: str, name: str) -> None:
    admin(pg_server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


# ---------------------------------------------------------------- database down mid-chat


def test_database_down_mid_chat_is_one_warning_and_the_chat_answers_again_once_it_is_back(
        tmp_path, pg_server, database_url, embedding_model_path, tiny_llama_dir):
    ingest_in_process(write_vault(tmp_path), database_url, embedding_model_path)
    name = database_name(database_url)
    chat = LiveProcess([sys.executable, "main.py", "--database-url", database_url, "--embedding-model",
                        embedding_model_path, "--backend", "transformers", "--model", str(tiny_llama_dir),
                        "--max-tokens", "4", "--temperature", "0"], script_env(tmp_path))
    try:
        chat.send("When is the aquarium cleaned?")
        chat.wait_for("stdout", "sources: ", 1)

        # The database goes away: live connections are cut and new ones refused.
        admin(pg_server, f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        terminate_connections(pg_server, name)
        chat.send("And the garden?")
        chat.wait_for("stderr", DOWN_WARNING, 1)
        chat.send("Still there?")  # the reconnect attempt fails as cleanly
        chat.wait_for("stderr", DOWN_WARNING, 2)

        admin(pg_server, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        chat.send("When is the aquarium cleaned?")
        chat.wait_for("stdout", "sources: ", 2)
        code = chat.finish()
    finally:
        admin(pg_server, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        chat.close()
    stderr = "\n".join(chat.lines["stderr"])
    assert code == 0, stderr
    assert "Traceback" not in stderr
    warnings = [line for line in chat.lines["stderr"] if DOWN_WARNING in line]
    assert len(warnings) == 2 and all(line.startswith("warning: ") for line in warnings), warnings
    assert sum(line.startswith("sources: ") for line in chat.lines["stdout"]) == 2  # no answer while down


# ---------------------------------------------------------------- writes refused during ingestion


def test_a_read_only_database_stops_ingestion_with_one_error_and_the_index_intact(
        tmp_path, pg_server, database_url, embedding_model_path):
    vault = write_vault(tmp_path)
    ingest_in_process(vault, database_url, embedding_model_path)
    before = index_state(database_url)
    name = database_name(database_url)
    admin(pg_server, f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    try:
        (vault / "Home" / "Note 1.md").write_text("# Note 1\nRewritten: the aquarium moved to the hall.\n")
        (vault / "Home" / "New.md").write_text("# New\nA new note about tapirs.\n")
        done = run_script("create_and_persist_embeddings.py",
                          ["--obsidian", str(vault), "--database-url", database_url,
                           "--embedding-model", embedding_model_path, "--quiet"], script_env(tmp_path))
    finally:
        admin(pg_server, f"ALTER DATABASE {name} RESET default_transaction_read_only")
    assert "read-only" in assert_one_error_line(done)
    assert index_state(database_url) == before


def _mount_tmpfs(target: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(target)],
                          capture_output=True)
    return done.returncode == 0


@contextmanager
def database_on_a_small_disk(pg_server: str):
    """A database whose tables live on a 24 MB tmpfs (a tablespace); yields (url, mount point).
    Skips where a tmpfs cannot be mounted (not root, or a container without the capability)."""
    # Under /tmp itself: the server's OS user must reach it, and pytest's folders are private.
    point = Path("/tmp") / f"pllm-small-disk-{uuid.uuid4().hex[:8]}"
    if not _mount_tmpfs(point, "24m"):
        point.rmdir() if point.exists() else None
        pytest.skip("cannot mount a tmpfs here (needs root)")
    space, name = f"ts_{uuid.uuid4().hex[:8]}", f"f_{uuid.uuid4().hex[:12]}"
    pgdata = Path(pg_server.split("host=", 1)[1].split("&", 1)[0])
    owner = pgdata.stat()
    os.chown(point, owner.st_uid, owner.st_gid)  # the server's OS user owns the tablespace folder
    try:
        admin(pg_server, f"CREATE TABLESPACE {space} LOCATION '{point}'")
        admin(pg_server, f"CREATE DATABASE {name} TABLESPACE {space}")
        yield pg_server.replace("/postgres?", f"/{name}?"), point
    finally:
        admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin(pg_server, f"DROP TABLESPACE IF EXISTS {space}")
        subprocess.run(["umount", str(point)], capture_output=True)
        point.rmdir()


def test_a_full_disk_stops_ingestion_with_one_error_and_the_index_intact(tmp_path, pg_server, embedding_model_path):
    with database_on_a_small_disk(pg_server) as (url, disk):
        vault = write_vault(tmp_path)
        ingest_in_process(vault, url, embedding_model_path)
        before = index_state(url)
        # Fill the disk but for a few pages, then add a note far bigger than that.
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "ballast").write_bytes(b"\0" * max(0, free - 64 * 1024))
        (vault / "Home" / "Long.md").write_text(
            "# Long\n" + "\n\n".join(f"## Part {i}\n" + f"Paragraph {i} about the garden plan. " * 30
                                     for i in range(200)))
        done = run_script("create_and_persist_embeddings.py",
                          ["--obsidian", str(vault), "--database-url", url, "--embedding-model",
                           embedding_model_path, "--quiet"], script_env(tmp_path))
        (disk / "ballast").unlink()
        assert "disk is full" in assert_one_error_line(done)
        assert index_state(url) == before


# ---------------------------------------------------------------- missing model folders


@pytest.mark.parametrize("script, flag", [
    ("main.py", "--model"),
    ("main.py", "--embedding-model"),
    ("create_and_persist_embeddings.py", "--embedding-model"),
    ("retrieve_related_content_from_db.py", "--embedding-model"),
])
def test_a_missing_model_folder_is_one_error_line(tmp_path, database_url, embedding_model_path, tiny_llama_dir,
                                                  script, flag):
    ingest_in_process(write_vault(tmp_path), database_url, embedding_model_path)
    missing = str(tmp_path / "models" / "not-there")
    args = {"main.py": ["--backend", "transformers", "--model", str(tiny_llama_dir), "--embedding-model",
                        embedding_model_path],
            "create_and_persist_embeddings.py": ["--obsidian", str(tmp_path / "vault"), "--embedding-model",
                                                 embedding_model_path],
            "retrieve_related_content_from_db.py": ["aquarium", "--embedding-model", embedding_model_path]}[script]
    args[args.index(flag) + 1] = missing
    done = run_script(script, [*args, "--database-url", database_url], script_env(tmp_path), input="hello\n")
    error = assert_one_error_line(done)
    assert done.returncode == 1
    assert missing in error and "does not exist" in error, error
