"""Settings precedence, the documented settings file, and the optional docker-compose database."""
from __future__ import annotations

import os
import re

import pytest

import settings
from conftest import PROJECT_DIR


@pytest.fixture
def env_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    monkeypatch.setenv("PERSONAL_LLM_ENV_FILE", str(path))
    settings._dotenv_values.cache_clear()
    yield path
    settings._dotenv_values.cache_clear()


def test_flag_beats_environment_beats_dotenv_beats_default(env_file, monkeypatch):
    assert settings.get("LLM_BACKEND") == "auto"
    env_file.write_text("LLM_BACKEND=mlx\nOBSIDIAN_VAULT_PATH=/from/dotenv\n")
    settings._dotenv_values.cache_clear()
    assert settings.get("LLM_BACKEND") == "mlx"
    monkeypatch.setenv("LLM_BACKEND", "transformers")
    assert settings.get("LLM_BACKEND") == "transformers"
    assert settings.get("LLM_BACKEND", "auto") == "auto"
    assert settings.get("OBSIDIAN_VAULT_PATH") == "/from/dotenv"


def test_empty_values_count_as_unset(env_file, monkeypatch):
    monkeypatch.setenv("RETRIEVAL_TOP_K", "")
    assert settings.get_int("RETRIEVAL_TOP_K") == 10


def test_malformed_number_is_a_user_error(monkeypatch):
    monkeypatch.setenv("RETRIEVAL_TOP_K", "ten")
    with pytest.raises(settings.UserError, match="RETRIEVAL_TOP_K='ten' is not a whole number"):
        settings.get_int("RETRIEVAL_TOP_K")


def test_backend_auto_and_default_models(monkeypatch):
    monkeypatch.setattr(settings.sys, "platform", "linux")
    assert settings.llm_backend_name("auto") == "transformers"
    assert settings.llm_model_name("mlx") == "mlx-community/Meta-Llama-3-8B-Instruct-4bit"
    assert settings.llm_model_name("transformers") == "meta-llama/Meta-Llama-3-8B-Instruct"
    with pytest.raises(settings.UserError):
        settings.llm_backend_name("tensorflow")


def test_missing_local_model_folder_names_the_setting(tmp_path):
    with pytest.raises(settings.UserError, match="set LLM_MODEL"):
        settings.resolve_model_folder(str(tmp_path / "nothing" / "here"), "LLM_MODEL", "model")


def test_env_example_documents_every_setting():
    text = (PROJECT_DIR / ".env.example").read_text()
    for name in settings.SETTINGS:
        assert re.search(rf"^# {name}=", text, re.M), name


def test_docker_compose_binds_loopback_only_and_has_no_default_password():
    text = (PROJECT_DIR / "docker-compose.yml").read_text()
    ports = re.findall(r'^\s*-\s*"?([^"\n]+:\d+)"?\s*$', text, re.M)
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in text
    assert "pgvector/pgvector:pg16" in text and "healthcheck" in text


def test_tests_write_only_in_temporary_folders():
    import conftest

    for folder in (settings.data_dir(), conftest.TEST_CACHE_DIR):
        assert not folder.resolve().is_relative_to(PROJECT_DIR), folder
    # The guard that fails any test writing inside the project folder notices writes, not reads.
    inside = str(PROJECT_DIR / ".data" / "test-cache" / "model.safetensors")
    assert conftest.writes_into_project("open", (inside, "wb", os.O_WRONLY | os.O_CREAT)) == inside
    assert conftest.writes_into_project("os.mkdir", (str(PROJECT_DIR / ".data"), 0o777, -1))
    assert conftest.writes_into_project("open", (inside, "r", os.O_RDONLY)) is None
    assert conftest.writes_into_project("open", (str(conftest.TEST_DATA_DIR / "x"), "w", os.O_WRONLY)) is None


def test_misspelt_and_unknown_names_in_dotenv_get_one_warning_each(env_file, capsys):
    env_file.write_text("EMBEDING_MODEL=/models/e5\nPERSONAL_LLM_DATADIR=/x\nPOSTGRES_PASSWORD=secret\n"
                        "OPENAI_API_KEY=unrelated\nLLM_BACKEND=mlx\n")
    assert settings.get("EMBEDDING_MODEL") == "intfloat/multilingual-e5-large"
    assert settings.get("LLM_BACKEND") == "mlx"
    settings.get("RETRIEVAL_TOP_K")  # read again: still one warning per name
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"warning: {env_file}: EMBEDING_MODEL is not a setting and is ignored; did you mean EMBEDDING_MODEL?",
        f"warning: {env_file}: PERSONAL_LLM_DATADIR is not a setting and is ignored; "
        "did you mean PERSONAL_LLM_DATA_DIR?",
    ]


def test_empty_environment_variable_overrides_dotenv(env_file, monkeypatch):
    env_file.write_text("OBSIDIAN_VAULT_PATH=/from/dotenv\nLLM_BACKEND=mlx\n")
    monkeypatch.setenv("OBSIDIAN_VAULT_PATH", "")
    monkeypatch.setenv("LLM_BACKEND", "")
    assert settings.get("OBSIDIAN_VAULT_PATH") is None
    assert settings.get("LLM_BACKEND") == "auto"
    assert settings.get("LLM_BACKEND", "transformers") == "transformers"  # a flag still wins


def test_hints_name_the_python_that_has_the_packages(monkeypatch):
    venv = settings.PROJECT_DIR / ".venv"
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.setattr(settings.sys, "base_prefix", "/usr")
    for prefix, expected in ((str(venv), ".venv/bin/python"),  # make's venv
                             ("/usr", ".venv/bin/python"),  # a bare system python: it lacks the packages
                             ("/home/me/other-venv", "python")):  # another environment that has them
        monkeypatch.setattr(settings.sys, "prefix", prefix)
        assert settings.python_command() == expected, prefix
    monkeypatch.setattr(settings.sys, "prefix", "/usr")
    monkeypatch.setenv("CONDA_PREFIX", "/opt/conda/envs/personal_llm")  # environment.yml
    assert settings.command_for("main.py") == "python main.py"
    monkeypatch.delenv("CONDA_PREFIX")
    assert settings.ingest_hint() == "`.venv/bin/python create_and_persist_embeddings.py` (or `make ingest`)"
    assert settings.ingest_hint("--rebuild") == "`.venv/bin/python create_and_persist_embeddings.py --rebuild`"
