"""A first run with a network: both models missing from a fresh Hugging Face cache are each
downloaded once (with a progress bar) from a local stand-in for the hub, the hub is switched
off only after both are on disk, and each way a download can fail is one line with the fix."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

import settings
from faults_support import assert_clean_exit, assert_one_error_line, netguard_log, run_script, script_env
from hub_standin import HubStandIn

EMBEDDER_ID = "acme/minilm"
LLM_ID = "acme/tiny-llama"


@pytest.fixture
def hub(embedding_model_path, tiny_llama_dir):
    server = HubStandIn({EMBEDDER_ID: Path(embedding_model_path), LLM_ID: Path(tiny_llama_dir)},
                        gated=("meta-llama/Meta-Llama-3-8B-Instruct",))
    yield server
    server.close()


def first_run_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    """No offline variables, a fresh HF_HOME, the hub at `endpoint`, the network guard on."""
    env = script_env(tmp_path, HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=endpoint)
    env.pop("DATABASE_URL", None)
    return env


def chat_args(data_dir: Path, model: str = LLM_ID) -> list[str]:
    return ["--data-dir", str(data_dir), "--embedding-model", EMBEDDER_ID, "--backend", "transformers",
            "--model", model, "--max-tokens", "4", "--temperature", "0"]


def files_in(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def test_one_ingestion_and_one_chat_download_each_model_once(tmp_path, hub, database_url, embedding_model_path,
                                                             tiny_llama_dir):
    env = first_run_env(tmp_path, hub.url)
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "Aquarium.md").write_text("# Aquarium\nThe zebrafish aquarium needs cleaning on Fridays.\n")
    ingested = run_script("create_and_persist_embeddings.py",
                          ["--obsidian", str(vault), "--database-url", database_url, "--embedding-model", EMBEDDER_ID,
                           "--quiet"], env)
    assert_clean_exit(ingested)
    assert f"downloading {EMBEDDER_ID} once" in ingested.stderr
    assert "Fetching" in ingested.stderr  # the hub library's progress bar
    assert hub.downloads == {EMBEDDER_ID: files_in(Path(embedding_model_path))}

    # The embedder is now cached: finding it must not close the hub before the LLM's download.
    chat = ["--database-url", database_url, *chat_args(tmp_path / "data")[2:]]
    first = run_script("main.py", chat, env, input="zebrafish\n")
    assert_clean_exit(first)
    assert f"downloading {LLM_ID} once" in first.stderr and f"downloading {EMBEDDER_ID}" not in first.stderr
    assert hub.downloads == {EMBEDDER_ID: files_in(Path(embedding_model_path)),
                             LLM_ID: files_in(Path(tiny_llama_dir))}
    assert "<obsidian>:Aquarium" in first.stdout

    again = run_script("main.py", chat, env, input="zebrafish\n")
    assert_clean_exit(again)
    assert "downloading" not in again.stderr
    assert sum(hub.downloads.values()) == files_in(Path(embedding_model_path)) + files_in(Path(tiny_llama_dir))
    assert netguard_log(tmp_path) == ""
    # Every program switched the hub off itself once its models were on disk.
    for report in (tmp_path / "netguard-env.log").read_text().splitlines():
        assert "HF_HUB_OFFLINE=1" in report.split(), report


def test_a_misspelt_hub_id_is_not_found_names_the_setting_and_writes_nothing(tmp_path, hub):
    data_dir = tmp_path / "data"
    result = run_script("main.py", chat_args(data_dir, model="acme/tiny-lama"), first_run_env(tmp_path, hub.url),
                        input="hi\n")
    error = assert_one_error_line(result)
    assert "acme/tiny-lama was not found on the hub" in error and "LLM_MODEL" in error
    assert not (data_dir / "pg").exists()  # no database created by a run that could not get its models


def test_an_ingestion_that_cannot_get_its_model_creates_no_database(tmp_path, hub):
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "Note.md").write_text("# Note\nSomething worth finding.\n")
    data_dir = tmp_path / "data"
    result = run_script("create_and_persist_embeddings.py",
                        ["--obsidian", str(vault), "--data-dir", str(data_dir), "--embedding-model", "acme/minlm"],
                        first_run_env(tmp_path, hub.url))
    error = assert_one_error_line(result)
    assert "acme/minlm was not found on the hub" in error and "EMBEDDING_MODEL" in error
    assert not (data_dir / "pg").exists()


def test_a_gated_model_says_to_accept_the_licence_or_use_the_mlx_copy(tmp_path, hub):
    result = run_script("main.py", chat_args(tmp_path / "data", model="meta-llama/Meta-Llama-3-8B-Instruct"),
                        first_run_env(tmp_path, hub.url), input="hi\n")
    error = assert_one_error_line(result)
    assert "is gated" in error and "hf auth login" in error and "mlx-community/" in error


def test_no_network_says_so(tmp_path, hub):
    endpoint = hub.url
    hub.close()  # nothing listens there any more: a refused connection, like a machine offline
    result = run_script("main.py", chat_args(tmp_path / "data"), first_run_env(tmp_path, endpoint), input="hi\n")
    error = assert_one_error_line(result)
    assert f"embedding model {EMBEDDER_ID} is not on this machine and the hub is unreachable" in error
    assert "EMBEDDING_MODEL" in error


def test_a_full_disk_is_told_apart_even_when_wrapped():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as disk:
            raise RuntimeError("download failed") from disk
    except RuntimeError as wrapped:
        message = settings.download_failure(LLM_ID, "LLM_MODEL", "model", wrapped)
    assert "did not fit on disk" in message and "HF_HOME" in message
