"""Helpers for the fault tests (tests/test_faults_*.py): run the real scripts as subprocesses
(optionally behind the network guard or in a fresh network namespace), compare whole indexes,
make private databases and a private Hugging Face cache."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg

PROJECT_DIR = Path(__file__).resolve().parent.parent
NETGUARD_DIR = Path(__file__).resolve().parent / "netguard"
# Variables a test process may hold (conftest sets the first two) that the programs must set
# themselves: they are removed from every subprocess environment here.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK",
                     "DISABLE_TELEMETRY")
SCRIPT_TIMEOUT = 300


def script_env(tmp_path: Path, guard: bool = True, **extra: str) -> dict[str, str]:
    """The environment of a script run: no offline variables, the network guard on PYTHONPATH
    (logging to tmp_path/netguard.log and tmp_path/netguard-env.log), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    env.pop("PYTHONPATH", None)
    if guard:
        env["PYTHONPATH"] = str(NETGUARD_DIR)
        env["NETGUARD_LOG"] = str(tmp_path / "netguard.log")
        env["NETGUARD_ENV_LOG"] = str(tmp_path / "netguard-env.log")
    env.update(extra)
    return env


def netguard_log(tmp_path: Path) -> str:
    """What the guard blocked ('' when nothing tried to go out)."""
    log = tmp_path / "netguard.log"
    return log.read_text() if log.exists() else ""


def run_script(script: str, args: list[str], env: dict[str, str], input: str | None = None,
               prefix: tuple[str, ...] = (), timeout: int = SCRIPT_TIMEOUT) -> subprocess.CompletedProcess:
    """Run one of the project's scripts to its end; text output captured."""
    return subprocess.run([*prefix, sys.executable, str(PROJECT_DIR / script), *args], cwd=PROJECT_DIR,
                          env=env, input=input, capture_output=True, text=True, timeout=timeout)


def assert_clean_exit(result: subprocess.CompletedProcess) -> None:
    """Exit 0 and no traceback."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def assert_one_error_line(result: subprocess.CompletedProcess) -> str:
    """Non-zero exit, and stderr is exactly one `error: ...` line (after any notes/warnings)."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert result.stderr.rstrip("\n").splitlines()[-1] == errors[0], result.stderr[-3000:]
    return errors[0]


def index_state(url: str) -> tuple[frozenset, frozenset]:
    """({(doc_id, content_hash)}, {(doc_id, fingerprint, chunk_count)}); asserts no duplicate rows."""
    with psycopg.connect(url) as conn:
        chunks = conn.execute("SELECT doc_id, content_hash FROM chunks").fetchall()
        documents = conn.execute("SELECT doc_id, fingerprint, chunk_count FROM documents").fetchall()
    assert len(chunks) == len(set(chunks)), "duplicate chunks"
    assert len(documents) == len(set(documents)), "duplicate documents"
    return frozenset(chunks), frozenset(documents)


def table_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


@contextmanager
def private_database(server_url: str) -> Iterator[str]:
    """A fresh database on `server_url` for a module-scoped fixture; dropped afterwards."""
    name = f"f_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server_url.replace("/postgres?", f"/{name}?")
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def database_name(url: str) -> str:
    """`postgresql://...@/NAME?host=...` -> NAME."""
    return url.split("@/", 1)[1].split("?", 1)[0]


def hf_cache_with(root: Path, models: dict[str, Path]) -> Path:
    """A Hugging Face home under `root` whose hub cache holds each folder under its hub id
    ({"me/model": folder}), laid out as a download leaves it; returns HF_HOME."""
    home = root / "hf-home"
    for repo_id, folder in models.items():
        repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
        revision = "0" * 40
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        for entry in Path(folder).iterdir():
            target = snapshot / entry.name
            if entry.is_dir():
                shutil.copytree(entry, target, dirs_exist_ok=True)
            elif not target.exists():
                target.symlink_to(entry.resolve())
    return home


def unshare_available() -> bool:
    """True when `unshare -n` can make a fresh network namespace here (root or user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class LiveProcess:
    """A subprocess whose stdout and stderr lines are collected by threads as they come, so a
    test can talk to it (stdin) and wait for what it says."""

    def __init__(self, argv: list[str], env: dict[str, str], timeout: float = SCRIPT_TIMEOUT):
        import threading

        self.timeout = timeout
        self.process = subprocess.Popen(argv, cwd=PROJECT_DIR, env=env, text=True, bufsize=1,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.ended: set[str] = set()
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.lines]
        for thread in self._threads:
            thread.start()

    def _read(self, name: str) -> None:
        for line in getattr(self.process, name):
            with self._changed:
                self.lines[name].append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.ended.add(name)
            self._changed.notify_all()

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, stream: str, text: str, count: int = 1) -> list[str]:
        """Wait until `count` lines of `stream` contain `text`; returns those lines."""
        def matching():
            found = [line for line in self.lines[stream] if text in line]
            return found if len(found) >= count or stream in self.ended else None

        with self._changed:
            found = self._changed.wait_for(matching, timeout=self.timeout)
        assert found is not None and len(found) >= count, (
            f"waited for {count} x {text!r} on {stream}:\n" + "\n".join(self.lines["stderr"][-40:]))
        return found

    def finish(self) -> int:
        """Close stdin and wait for the exit code."""
        self.process.stdin.close()
        code = self.process.wait(timeout=self.timeout)
        for thread in self._threads:
            thread.join(timeout=30)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
