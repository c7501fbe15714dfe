"""Kill and resume, and concurrency, on the real ingestion CLI with the real parsers, model and
database.

A small wrapper (HOOK below) runs `create_and_persist_embeddings.py` unchanged, except that it
pauses at one chosen moment (the n-th document parsed, the n-th embedding call, just after the
n-th COPY while its transaction is open, or before the vector index build) and says so on
stderr. The test then sends SIGKILL, or lets it go on. So each kill lands exactly in the phase
it names, whatever the machine's speed. (Slow: about two minutes, some twenty CLI runs.)
"""
from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psycopg
import pytest

from faults_support import (PROJECT_DIR, assert_clean_exit, assert_one_error_line, database_name, index_state,
                            private_database, run_script, script_env)

SMALL_NOTES = 160
BIG_NOTE_SECTIONS = 6
# One chunk per session (messages an hour or more apart): more than one embedding group (128),
# so the chat is written in several COPYs.
CHAT_SESSIONS = 180
PAUSED = "FAULT-PAUSED"
WAIT_SECONDS = 240

HOOK = textwrap.dedent('''
    """Run the ingestion CLI, pausing once at FAULT_POINT (parse, embed, write, index)."""
    import os, runpy, sys, time
    sys.path.insert(0, {project!r})
    import embedding_generator_multilingual, obsidian_to_embeddings, store

    POINT, NTH = os.environ["FAULT_POINT"], int(os.environ.get("FAULT_NTH", "1"))
    RESUME = os.environ.get("FAULT_RESUME_FILE")
    calls = [0]

    def pause(label):
        print("{paused} " + label, file=sys.stderr, flush=True)
        while not (RESUME and os.path.exists(RESUME)):
            time.sleep(0.05)

    def counted(label):
        calls[0] += 1
        if calls[0] == NTH:
            pause(label)

    if POINT == "parse":
        documents = obsidian_to_embeddings.iter_documents
        def iter_documents(*args, **kwargs):
            for document in documents(*args, **kwargs):
                counted("parse " + document.doc_id)
                yield document
        obsidian_to_embeddings.iter_documents = iter_documents
    elif POINT == "embed":
        embed = embedding_generator_multilingual.Embedder.embed_passages
        def embed_passages(self, texts):
            counted("embed %d texts" % len(texts))
            return embed(self, texts)
        embedding_generator_multilingual.Embedder.embed_passages = embed_passages
    elif POINT == "write":
        copy = store.Store.copy_chunks
        def copy_chunks(self, chunks, vectors):
            written = copy(self, chunks, vectors)
            counted("write %s" % chunks[0].doc_id)
            return written
        store.Store.copy_chunks = copy_chunks
    elif POINT == "index":
        build = store.Store.ensure_vector_index
        def ensure_vector_index(self):
            counted("index")
            return build(self)
        store.Store.ensure_vector_index = ensure_vector_index

    sys.argv = [{script!r}, *sys.argv[1:]]
    runpy.run_path({script!r}, run_name="__main__")
''')


# ---------------------------------------------------------------- corpus and runs


def section(j: int, edit: int = 0) -> str:
    """About 150 tokens of prose for section `j` of the big note."""
    words = " ".join(["the garden plan for the week"] * 20)
    return f"## Part {j}\n\nSection {j}, version {edit}: {words}.\n"


def chat_export(edit: str = "") -> str:
    messages = {f"m{k}": {"from_me": k % 2 == 0, "timestamp": 1624702500 + k * 3 * 3600,
                          "data": f"Message {k} about the lemur sanctuary{edit}", "sender": None,
                          "media": False, "meta": False} for k in range(CHAT_SESSIONS)}
    return json.dumps({"111@s.whatsapp.net": {"name": "Maria Silva", "messages": messages}})


def write_corpus(root: Path) -> tuple[Path, Path]:
    """SMALL_NOTES one-chunk notes, a note of a few chunks, a chat of CHAT_SESSIONS chunks."""
    vault = root / "vault"
    for i in range(SMALL_NOTES):
        folder = vault / f"F{i % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note {i:03d}.md").write_text(f"# Note {i}\n\nShort note number {i} about subject {i * 13 % 50}.\n")
    (vault / "Big.md").write_text("# Big\n\n" + "\n".join(section(j) for j in range(BIG_NOTE_SECTIONS)))
    whatsapp = root / "whatsapp"
    whatsapp.mkdir(parents=True)
    (whatsapp / "result.json").write_text(chat_export())
    return vault, whatsapp


def edit_corpus(vault: Path, whatsapp: Path) -> list[str]:
    """Change every message of the chat, two sections of the big note and three small notes;
    returns their doc ids."""
    (whatsapp / "result.json").write_text(chat_export(edit=", edited"))
    big = "\n".join(section(j, edit=1 if j in (1, 4) else 0) for j in range(BIG_NOTE_SECTIONS))
    (vault / "Big.md").write_text("# Big\n\n" + big)
    edited = ["whatsapp:111@s.whatsapp.net", "obsidian:Big.md"]
    for i in (3, 50, 120):
        path = vault / f"F{i % 8}" / f"note {i:03d}.md"
        path.write_text(path.read_text() + "An added line, so the note changed.\n")
        edited.append(f"obsidian:F{i % 8}/note {i:03d}.md")
    return edited


def cli_args(corpus: tuple[Path, Path], database_url: str, model: str) -> list[str]:
    return ["--obsidian", str(corpus[0]), "--whatsapp", str(corpus[1]), "--database-url", database_url,
            "--embedding-model", model, "--json"]


class Hooked:
    """The ingestion CLI under HOOK, stderr read line by line in a thread."""

    def __init__(self, tmp_path: Path, args: list[str], point: str, nth: int = 1, name: str = "run"):
        hook = tmp_path / "fault_hook.py"
        hook.write_text(HOOK.format(project=str(PROJECT_DIR), paused=PAUSED,
                                    script=str(PROJECT_DIR / "create_and_persist_embeddings.py")))
        self.resume_file = tmp_path / f"resume-{name}"
        env = script_env(tmp_path, FAULT_POINT=point, FAULT_NTH=str(nth), FAULT_RESUME_FILE=str(self.resume_file))
        self.process = subprocess.Popen([sys.executable, str(hook), *args], cwd=PROJECT_DIR, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr: list[str] = []
        self.ended = False
        self.stdout = ""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.stderr.append(line)
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait_for(self, text: str) -> str:
        """The first stderr line (so far or to come) containing `text`; fails if the process ends first."""
        def found():
            return next((line for line in self.stderr if text in line), None) or (self.ended and "")

        with self._changed:
            line = self._changed.wait_for(found, timeout=WAIT_SECONDS)
        if line is None:
            pytest.fail(f"no {text!r} within {WAIT_SECONDS} s:\n{''.join(self.stderr)}")
        if not line:
            pytest.fail(f"ended (exit {self.process.wait()}) before {text!r}:\n{''.join(self.stderr)}")
        return line

    def paused(self) -> bool:
        with self._changed:
            return any(PAUSED in line for line in self.stderr)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def resume(self) -> subprocess.CompletedProcess:
        """Let it go on, and wait for its end."""
        self.resume_file.write_text("")
        self.stdout = self.process.stdout.read()
        code = self.process.wait(timeout=WAIT_SECONDS)
        self._reader.join(timeout=60)
        return subprocess.CompletedProcess(self.process.args, code, self.stdout, "".join(self.stderr))

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    return write_corpus(tmp_path_factory.mktemp("crash-corpus"))


@pytest.fixture(scope="module")
def reference(pg_server, corpus, embedding_model_path, tmp_path_factory):
    """The index of one uninterrupted run of the corpus."""
    tmp = tmp_path_factory.mktemp("reference")
    with private_database(pg_server) as url:
        done = run_script("create_and_persist_embeddings.py", cli_args(corpus, url, embedding_model_path),
                          script_env(tmp))
        assert_clean_exit(done)
        state = index_state(url)
    chunks, documents = state
    assert len(documents) == SMALL_NOTES + 2 and len(chunks) >= SMALL_NOTES + CHAT_SESSIONS
    return state


def committed_is_consistent(url: str, reference) -> tuple[frozenset, frozenset]:
    """What a killed run left: a subset of the reference, each recorded document whole, and no
    chunk of an unrecorded document."""
    chunks, documents = index_state(url)
    assert documents <= reference[1]
    done = {doc_id for doc_id, _, _ in documents}
    assert {doc_id for doc_id, _ in chunks} <= done, "chunks of a document that was not recorded as done"
    for doc_id in done:
        assert {c for c in chunks if c[0] == doc_id} == {c for c in reference[0] if c[0] == doc_id}, doc_id
    return chunks, documents


def wait_until(condition) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def has_vector_index(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass('chunks_embedding_hnsw') IS NOT NULL").fetchone()[0]


# ---------------------------------------------------------------- kill and resume


@pytest.mark.parametrize("point, nth", [
    ("parse", 150),  # the 150th document read: earlier ones committed or in flight
    ("embed", 3),  # inside the third call to the model
    ("write", 140),  # a COPY sent, its transaction still open
    ("index", 1),  # everything committed, the vector index not built yet
])
def test_sigkill_at_each_phase_then_rerun_gives_the_uninterrupted_index(
        tmp_path, database_url, corpus, reference, embedding_model_path, point, nth):
    victim = Hooked(tmp_path, cli_args(corpus, database_url, embedding_model_path), point, nth)
    try:
        victim.wait_for(PAUSED)
        if point in ("parse", "write"):  # the other threads go on until the first commit
            wait_until(lambda: index_state(database_url)[1])
        if point == "write":
            # Another connection sees only whole documents, never the open transaction's rows.
            committed_is_consistent(database_url, reference)
        victim.kill()
    finally:
        victim.close()
    assert victim.process.returncode == -signal.SIGKILL

    chunks, documents = committed_is_consistent(database_url, reference)
    if point == "index":
        assert (chunks, documents) == reference and not has_vector_index(database_url)
    elif point in ("parse", "write"):
        assert 0 < len(documents) < len(reference[1]), (point, len(documents))

    again = run_script("create_and_persist_embeddings.py", cli_args(corpus, database_url, embedding_model_path),
                       script_env(tmp_path))
    assert_clean_exit(again)
    assert index_state(database_url) == reference
    assert has_vector_index(database_url)
    # Only the work the kill lost was redone.
    assert json.loads(again.stdout)["chunks_embedded"] == len(reference[0]) - len(chunks)


@pytest.mark.parametrize("point, nth", [
    ("write", 140),  # a COPY into the new index sent, its transaction open
    ("index", 1),  # the new index complete and committed, not yet swapped in
])
def test_sigkill_during_a_rebuild_leaves_the_old_index_whole_and_the_next_rebuild_swaps_in(
        tmp_path, database_url, corpus, reference, embedding_model_path, point, nth):
    args = cli_args(corpus, database_url, embedding_model_path)
    assert_clean_exit(run_script("create_and_persist_embeddings.py", args, script_env(tmp_path)))
    victim = Hooked(tmp_path, ["--rebuild", *args], point, nth)
    try:
        victim.wait_for(PAUSED)
        # Meanwhile, searches read the old index, whole.
        assert index_state(database_url) == reference and has_vector_index(database_url)
        victim.kill()
    finally:
        victim.close()
    assert victim.process.returncode == -signal.SIGKILL
    assert index_state(database_url) == reference and has_vector_index(database_url)

    again = run_script("create_and_persist_embeddings.py", ["--rebuild", *args], script_env(tmp_path))
    assert_clean_exit(again)
    assert json.loads(again.stdout)["rebuilt"] and index_state(database_url) == reference
    assert has_vector_index(database_url)
    with psycopg.connect(database_url) as conn:  # the killed rebuild's leftovers are gone
        assert conn.execute("SELECT to_regnamespace('personal_llm_rebuild')").fetchone()[0] is None


def test_connections_cut_mid_run_end_it_with_one_error_and_a_rerun_completes_the_index(
        tmp_path, pg_server, database_url, corpus, reference, embedding_model_path):
    args = cli_args(corpus, database_url, embedding_model_path)
    victim = Hooked(tmp_path, args, "write", 140)
    try:
        victim.wait_for(PAUSED)
        with psycopg.connect(pg_server, autocommit=True) as admin:  # e.g. the server restarted
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (database_name(database_url),))
        result = victim.resume()
    finally:
        victim.close()
    assert "connection" in assert_one_error_line(result)
    committed_is_consistent(database_url, reference)
    again = run_script("create_and_persist_embeddings.py", args, script_env(tmp_path))
    assert_clean_exit(again)
    assert index_state(database_url) == reference


# ---------------------------------------------------------------- concurrency


def test_two_runs_started_together_one_waits_and_the_index_is_that_of_one_run(
        tmp_path, database_url, corpus, reference, embedding_model_path):
    args = cli_args(corpus, database_url, embedding_model_path)
    # Both pause in their first embedding call until released: the lock holder reaches it,
    # the other must be waiting for the lock by then.
    runs = [Hooked(tmp_path, args, "embed", 1, name=name) for name in ("a", "b")]
    try:
        events: queue.Queue = queue.Queue()
        for run in runs:
            threading.Thread(target=lambda r=run: events.put((r, r.wait_for(PAUSED))), daemon=True).start()
        first, _ = events.get(timeout=WAIT_SECONDS)
        second = runs[1] if first is runs[0] else runs[0]
        second.wait_for("another ingestion is running; waiting for it to finish")
        assert not second.paused()  # the waiting run did not get to embed anything
        results = {run: run.resume() for run in (first, second)}
    finally:
        for run in runs:
            run.close()
    for result in results.values():
        assert_clean_exit(result)
    assert index_state(database_url) == reference  # also: no duplicate rows
    assert json.loads(results[first].stdout)["chunks_embedded"] == len(reference[0])
    assert json.loads(results[second].stdout)["chunks_embedded"] == 0


def test_a_reader_sees_each_document_old_or_new_never_half_while_it_is_reindexed(
        tmp_path, database_url, embedding_model_path):
    corpus = write_corpus(tmp_path / "corpus")
    args = cli_args(corpus, database_url, embedding_model_path)
    assert_clean_exit(run_script("create_and_persist_embeddings.py", args, script_env(tmp_path)))
    old = hashes_by_document(database_url)
    edited = edit_corpus(*corpus)

    seen: list[dict] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def read_in_a_loop() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                while not stop.is_set():
                    seen.append(hashes_by_document(database_url, edited, conn))
        except BaseException as err:
            errors.append(err)

    # The four edited notes come first, one COPY each; the edited chat then takes two COPYs:
    # pause after its first, mid-document, with the transaction open.
    writer = Hooked(tmp_path, args, "write", 5)
    reader = threading.Thread(target=read_in_a_loop)
    try:
        assert "write whatsapp:" in writer.wait_for(PAUSED)
        reader.start()
        while len(seen) < 20 and reader.is_alive():
            threading.Event().wait(0.05)
        during_pause = len(seen)
        result = writer.resume()
    finally:
        stop.set()
        writer.close()
        if reader.is_alive():
            reader.join(timeout=60)
    assert_clean_exit(result)
    assert not errors, errors
    new = hashes_by_document(database_url)
    assert during_pause >= 20 and len(seen) > during_pause
    for doc_id in edited:
        assert old[doc_id] != new[doc_id], doc_id
        versions = [snapshot.get(doc_id, frozenset()) for snapshot in seen]
        mixed = [v for v in versions if v not in (old[doc_id], new[doc_id])]
        assert not mixed, f"{doc_id}: {len(mixed)} half-written views"
    # The first views came while the chat's first COPY sat uncommitted: invisible.
    assert seen[0]["whatsapp:111@s.whatsapp.net"] == old["whatsapp:111@s.whatsapp.net"]


def hashes_by_document(url: str, doc_ids: list[str] | None = None, conn=None) -> dict[str, frozenset]:
    """doc_id -> frozenset of its chunk hashes, read in one statement (one snapshot)."""
    query = "SELECT doc_id, array_agg(content_hash) FROM chunks"
    params: tuple = ()
    if doc_ids is not None:
        query += " WHERE doc_id = ANY(%s)"
        params = (doc_ids,)
    query += " GROUP BY doc_id"
    if conn is not None:
        return {doc_id: frozenset(hashes) for doc_id, hashes in conn.execute(query, params).fetchall()}
    with psycopg.connect(url) as own:
        return {doc_id: frozenset(hashes) for doc_id, hashes in own.execute(query, params).fetchall()}
