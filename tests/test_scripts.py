"""Every user-facing script: importable without loading models or touching the database,
`--help` works, and a user error is one line with a non-zero exit."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import settings
from conftest import PROJECT_DIR

SCRIPTS = [
    "main.py",
    "create_and_persist_embeddings.py",
    "obsidian_to_embeddings.py",
    "whatsapp_to_embeddings.py",
    "embedding_generator_multilingual.py",
    "formulate_query_for_retrieving_content.py",
    "retrieve_related_content_from_db.py",
]
HEAVY_MODULES = ("torch", "sentence_transformers", "transformers", "mlx", "psycopg", "pgserver")


@pytest.mark.parametrize("script", SCRIPTS)
def test_import_is_light_and_help_works(script):
    module = script[:-3]
    check = (
        f"import sys; sys.path.insert(0, {str(PROJECT_DIR)!r}); import {module}; "
        f"assert callable({module}.main); "
        f"heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]; print(','.join(heavy))"
    )
    imported = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "", f"{script} imports {imported.stdout.strip()} at import time"
    helped = subprocess.run([sys.executable, str(PROJECT_DIR / script), "--help"], capture_output=True,
                            text=True, timeout=120, cwd=str(PROJECT_DIR))
    assert helped.returncode == 0, helped.stderr
    assert "usage:" in helped.stdout


def test_missing_embedding_model_folder_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "embedding_generator_multilingual.py"), "hello",
         "--embedding-model", str(tmp_path / "missing-model")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr


@pytest.mark.parametrize("script", ["main.py", "create_and_persist_embeddings.py"])
def test_a_python_without_the_packages_is_told_to_use_the_venv(tmp_path, script):
    # A Python that lacks the project's packages (like `python main.py` outside .venv): the
    # embedded database must not be reported as "did not start", nor the model as missing; the
    # fix is the project's Python. Whichever package the script needs first names the gap.
    for package in ("pgserver", "huggingface_hub"):
        missing = tmp_path / "site" / package
        missing.mkdir(parents=True)
        (missing / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{package}'\", name='{package}')\n")
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "note.md").write_text("A note about Kyoto.\n")
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / script), *(["--obsidian", str(vault)] if "create" in script else [])],
        capture_output=True, text=True, timeout=120, cwd=str(PROJECT_DIR), input="",
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site"), "PERSONAL_LLM_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "did not start" not in errors[0]
    assert "no module named 'pgserver'" in errors[0] or "no module named 'huggingface_hub'" in errors[0]
    assert f"run `{settings.command_for(script)}`, or `make chat` / `make ingest`" in errors[0]
