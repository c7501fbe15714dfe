"""Offline guarantee: ingestion, the search CLI and a scripted chat work with the network
blocked, switch the Hugging Face libraries offline by themselves, and our code holds no
network client at all.

Two independent proofs: (1) a guard loaded into every subprocess (tests/netguard) fails and
logs any connect, datagram or DNS lookup to a non-local address: the log must stay empty;
(2) where `unshare -n` works, the same runs inside a fresh network namespace with no network
device but a downed loopback. The database is the embedded server's Unix socket, which needs
no network. (Slow: about a minute, it starts ten Python processes that load torch.)
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from faults_support import (PROJECT_DIR, assert_clean_exit, hf_cache_with, netguard_log, run_script,
                            script_env, unshare_available)

# Modules that can talk to the network; none of our own scripts may import them.
NETWORK_MODULES = ("socket", "ssl", "requests", "urllib.request", "urllib3", "http.client", "httpx",
                   "aiohttp", "ftplib", "smtplib", "xmlrpc", "websocket", "websockets", "grpc")
CHAT_QUESTION = "When does the zebrafish aquarium need cleaning?"


def write_sources(root: Path) -> tuple[Path, Path]:
    """A two-note vault and a one-chat WhatsApp export."""
    vault = root / "vault"
    (vault / "Home").mkdir(parents=True)
    (vault / "Home" / "Aquarium.md").write_text("# Aquarium\nThe zebrafish aquarium needs cleaning on Fridays.\n")
    (vault / "Home" / "Garden.md").write_text("# Garden\nThe tomatoes want water every second morning.\n")
    whatsapp = root / "whatsapp"
    whatsapp.mkdir()
    chat = {"111@s.whatsapp.net": {"name": "Maria Silva", "type": "ios", "messages": {
        "m1": {"from_me": False, "timestamp": 1624702500, "data": "Shall we visit the lemur sanctuary?",
               "sender": None, "media": False, "meta": False}}}}
    (whatsapp / "result.json").write_text(json.dumps(chat))
    return vault, whatsapp


def run_all_three(tmp_path: Path, database_url: str, embedding_model: str, llm_dir: Path, env: dict,
                  prefix: tuple[str, ...] = ()) -> None:
    """Ingest, search and chat once each; every run must succeed with a useful result."""
    vault, whatsapp = write_sources(tmp_path)
    common = ["--database-url", database_url, "--embedding-model", embedding_model]
    ingested = run_script("create_and_persist_embeddings.py",
                          ["--obsidian", str(vault), "--whatsapp", str(whatsapp), "--json", "--quiet", *common],
                          env, prefix=prefix)
    assert_clean_exit(ingested)
    assert json.loads(ingested.stdout)["chunks_total"] == 3

    searched = run_script("retrieve_related_content_from_db.py", ["zebrafish aquarium", "--json", *common], env,
                          prefix=prefix)
    assert_clean_exit(searched)
    assert json.loads(searched.stdout)[0]["source"] == "<obsidian>:Home/Aquarium"

    chatted = run_script("main.py", [*common, "--backend", "transformers", "--model", str(llm_dir),
                                     "--max-tokens", "8", "--temperature", "0"],
                         env, input=f"{CHAT_QUESTION}\n/sources\n", prefix=prefix)
    assert_clean_exit(chatted)
    sources = [line for line in chatted.stdout.splitlines() if line.startswith("sources: ")]
    assert sources and "<obsidian>:Home/Aquarium" in sources[0], chatted.stdout  # the random model's query varies
    assert "zebrafish aquarium needs cleaning" in chatted.stdout  # /sources shows the passage


# ---------------------------------------------------------------- our code


def imported_modules(path: Path) -> set[str]:
    """Every module name an `import` or `from ... import` in the file mentions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_our_scripts_import_no_network_client_and_download_in_one_place_only():
    scripts = sorted(PROJECT_DIR.glob("*.py"))
    assert len(scripts) >= 8
    for script in scripts:
        for name in imported_modules(script):
            assert not any(name == bad or name.startswith(bad + ".") for bad in NETWORK_MODULES), \
                f"{script.name} imports {name}"
        source = script.read_text()
        assert "telemetry" not in source.lower() or script.name == "settings.py", script.name
        if script.name != "settings.py":  # the one-time model download lives in settings only
            assert "huggingface_hub" not in source and "snapshot_download" not in source, script.name


# ---------------------------------------------------------------- the guard itself


def test_the_guard_blocks_and_logs_a_connection_and_a_name_lookup(tmp_path):
    # Without this, an empty log could mean a guard that never loaded.
    code = ("import socket\n"
            "for attempt in (lambda: socket.socket().connect(('203.0.113.7', 443)),\n"
            "                lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('203.0.113.8', 53)),\n"
            "                lambda: socket.create_connection(('huggingface.co', 443), timeout=1)):\n"
            "    try:\n        attempt()\n    except OSError as err:\n        print('blocked:', err)\n")
    done = subprocess.run([sys.executable, "-c", code], env=script_env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.count("netguard:") == 3, done.stdout + done.stderr
    log = netguard_log(tmp_path)
    assert "203.0.113.7" in log and "203.0.113.8" in log and "huggingface.co" in log


# ---------------------------------------------------------------- the programs


def test_ingest_search_and_chat_work_behind_the_guard_and_go_offline_by_themselves(
        tmp_path, database_url, embedding_model_path, tiny_llama_dir):
    # The embedding model is named by hub id, as a real user does, and found in a private
    # Hugging Face cache: the path where the program must switch the hub off itself.
    home = hf_cache_with(tmp_path, {"personal-llm-tests/minilm": Path(embedding_model_path)})
    env = script_env(tmp_path, HF_HOME=str(home))
    assert "HF_HUB_OFFLINE" not in env and "TRANSFORMERS_OFFLINE" not in env
    run_all_three(tmp_path, database_url, "personal-llm-tests/minilm", tiny_llama_dir, env)

    assert netguard_log(tmp_path) == "", "something tried to reach the network:\n" + netguard_log(tmp_path)
    reports = (tmp_path / "netguard-env.log").read_text().splitlines()
    assert len(reports) == 3, reports  # one per program: the guard was loaded into each
    for report in reports:
        for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
            assert f"{variable}=1" in report.split(), report


def test_a_model_missing_from_disk_is_one_error_behind_the_guard(tmp_path, database_url):
    # Offline set by the user, nothing in the cache: one line, no download attempt.
    env = script_env(tmp_path, HF_HOME=str(tmp_path / "empty-hf-home"), HF_HUB_OFFLINE="1")
    (tmp_path / "vault").mkdir()
    done = run_script("create_and_persist_embeddings.py",
                      ["--obsidian", str(tmp_path / "vault"), "--database-url", database_url,
                       "--embedding-model", "personal-llm-tests/not-downloaded"], env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: embedding model personal-llm-tests/not-downloaded "
                                                   "is not on this machine"), done.stderr
    assert netguard_log(tmp_path) == ""


@pytest.mark.skipif(not unshare_available(), reason="`unshare -n` is not permitted here (needs root or user namespaces)")
def test_ingest_search_and_chat_work_in_a_network_namespace_without_network(
        tmp_path, database_url, embedding_model_path, tiny_llama_dir):
    # No guard here: the kernel itself has no route anywhere for these processes.
    env = script_env(tmp_path, guard=False)
    probe = subprocess.run(["unshare", "-n", sys.executable, "-c",
                            "import socket; socket.create_connection(('203.0.113.7', 443), timeout=2)"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "unreachable" in probe.stderr.lower(), probe.stderr
    run_all_three(tmp_path, database_url, embedding_model_path, tiny_llama_dir, env, prefix=("unshare", "-n"))
