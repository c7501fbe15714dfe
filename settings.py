"""Settings, model lookup and the one-line-error convention shared by every script.

Precedence for every setting: command-line flag > environment variable > `.env` file > default.
The `.env` file is read from the project folder (or from `PERSONAL_LLM_ENV_FILE`) and never
written into `os.environ`, so the order above holds exactly.
"""
from __future__ import annotations

import errno
import functools
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable

PROJECT_DIR = Path(__file__).resolve().parent

# Before any Hugging Face library is imported: they read this once, at import.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# name -> (default, one-line description). `.env.example` mirrors this table.
SETTINGS: dict[str, tuple[str | None, str]] = {
    "OBSIDIAN_VAULT_PATH": (None, "Obsidian vault folder; unset skips the source"),
    "OBSIDIAN_EXCLUDE": (None, "comma-separated globs of vault paths to keep out (e.g. Private/**)"),
    "WHATSAPP_WORKING_PATH": (None, "folder (or file) with result.json and/or .txt/.zip exports"),
    "WHATSAPP_CONTACTS": (None, "Google Contacts CSV; default: contacts.csv in WHATSAPP_WORKING_PATH"),
    "WHATSAPP_DATE_ORDER": ("auto", "date order of .txt exports: auto, dayfirst or monthfirst"),
    "DATABASE_URL": (None, "external PostgreSQL with pgvector; unset: embedded server in the data dir"),
    "PERSONAL_LLM_DATA_DIR": (str(PROJECT_DIR / ".data"), "embedded database and caches"),
    "EMBEDDING_MODEL": ("intfloat/multilingual-e5-large", "sentence-transformers hub id or local folder"),
    "EMBEDDING_DEVICE": (None, "cpu, cuda or mps; unset picks the best available"),
    "EMBEDDING_BATCH_SIZE": (None, "texts per embedding batch; unset picks by device"),
    "LLM_BACKEND": ("auto", "auto (MLX on Apple silicon, transformers elsewhere), mlx or transformers"),
    "LLM_MODEL": (None, "hub id or local folder; unset picks the backend's Llama 3 8B Instruct"),
    "LLM_MAX_TOKENS": ("512", "most tokens in one answer"),
    "LLM_SEED": (None, "whole number: sampled answers repeat from run to run; unset: random"),
    "LLM_DTYPE": ("auto", "transformers weights: auto (the checkpoint's own; half precision becomes float32 on CPUs without bfloat16), float32, bfloat16 or float16"),
    "PERSONA": (None, "overrides the PERSONA constant in main.py"),
    "TEXT_SEARCH_LANGUAGES": ("english", "comma-separated PostgreSQL text search languages (english, portuguese, german...) whose word stems keyword search also matches, or none; a change rebuilds the keyword index at the next ingestion"),
    "RETRIEVAL_TOP_K": ("10", "passages retrieved per question"),
    "SUMMARY_MAX_BATCHES": ("50", "most batches (model calls) a question about a whole period may read"),
}

DEFAULT_LLM_MODELS = {
    "mlx": "mlx-community/Meta-Llama-3-8B-Instruct-4bit",
    "transformers": "meta-llama/Meta-Llama-3-8B-Instruct",
}


class UserError(Exception):
    """A problem the user can fix; printed as one `error: ...` line, never a traceback."""


# Names a `.env` may hold that are not settings of ours: docker-compose's database credentials
# and the variables that steer the libraries.
OTHER_ENV_NAMES = frozenset({
    "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PERSONAL_LLM_ENV_FILE",
    "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "NO_COLOR",
})
OWN_PREFIX = "PERSONAL_LLM"
CLOSE_NAME_CUTOFF = 0.8  # difflib ratio: EMBEDING_MODEL vs EMBEDDING_MODEL is 0.97


def closest(name: str, candidates, cutoff: float) -> str | None:
    """The candidate most like `name` (difflib ratio at least `cutoff`), else None:
    `closest("EMBEDING_MODEL", SETTINGS, 0.8) == "EMBEDDING_MODEL"`."""
    import difflib

    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def unknown_names(names) -> list[str]:
    """One message per name in a settings file that looks meant for us but is not a setting:
    a misspelt setting (with the closest valid name) or an unknown PERSONAL_LLM_* name."""
    known = set(SETTINGS) | OTHER_ENV_NAMES
    messages = []
    for name in names:
        if name in known:
            continue
        suggestion = closest(name, known, CLOSE_NAME_CUTOFF)
        if suggestion is None and name.upper().startswith(OWN_PREFIX):
            suggestion = closest(name, known, 0.0)  # ours for sure: name the nearest anyway
        if suggestion is not None:
            messages.append(f"{name} is not a setting and is ignored; did you mean {suggestion}?")
    return messages


@functools.lru_cache(maxsize=None)
def _dotenv_values(path: str) -> dict[str, str | None]:
    # Cached per path: the file is read, and its names checked, once per process.
    if not Path(path).is_file():
        return {}
    from dotenv import dotenv_values

    values = dict(dotenv_values(path))
    for message in unknown_names(values):
        warn(f"{path}: {message}")
    return values


def env_file() -> Path:
    """The `.env` file in use: `PERSONAL_LLM_ENV_FILE`, else `.env` in the project folder."""
    return Path(os.environ.get("PERSONAL_LLM_ENV_FILE") or PROJECT_DIR / ".env")


def get(name: str, flag_value: object = None) -> str | None:
    """Resolve one setting: flag > environment > .env > default. An empty flag counts as no
    flag; an empty environment variable means "unset" for this run, whatever `.env` says
    (`OBSIDIAN_VAULT_PATH= python create_and_persist_embeddings.py` skips the vault)."""
    if name not in SETTINGS:
        raise KeyError(f"unknown setting {name}")
    if flag_value not in (None, ""):
        return str(flag_value)
    dotenv = _dotenv_values(str(env_file()))  # read even when unused: its names get checked
    if name in os.environ:
        return os.environ[name] or SETTINGS[name][0]
    value = dotenv.get(name)
    if value not in (None, ""):
        return value
    return SETTINGS[name][0]


def get_int(name: str, flag_value: object = None) -> int | None:
    """Like `get`, converted to int; a malformed value is a UserError naming the setting."""
    value = get(name, flag_value)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{name}={value!r} is not a whole number; fix it in your flags, environment or .env")


def data_dir(flag_value: object = None) -> Path:
    """The private data folder (embedded database, caches)."""
    return Path(get("PERSONAL_LLM_DATA_DIR", flag_value)).expanduser().resolve()


def llm_backend_name(flag_value: object = None) -> str:
    """`mlx` or `transformers`; `auto` is MLX on Apple silicon and transformers elsewhere."""
    backend = (get("LLM_BACKEND", flag_value) or "auto").lower()
    if backend == "auto":
        import platform

        apple_silicon = sys.platform == "darwin" and platform.machine() == "arm64"
        return "mlx" if apple_silicon else "transformers"
    if backend not in DEFAULT_LLM_MODELS:
        raise UserError(f"LLM_BACKEND={backend!r} is not one of auto, mlx, transformers")
    return backend


def llm_model_name(backend: str, flag_value: object = None) -> str:
    """The LLM to load: flag/env/.env, else the backend's default Llama 3 8B Instruct."""
    return get("LLM_MODEL", flag_value) or DEFAULT_LLM_MODELS[backend]


def mark_offline() -> None:
    """Tell huggingface_hub and transformers never to touch the network in this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


def quiet_model_loading() -> None:
    """Hide the libraries' weight-loading progress bars and advisory chatter; errors still show."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def pick_device(requested: str | None = None) -> str:
    """The torch device for a model: the requested one, else cuda, then mps, then cpu.
    The embedder and the transformers LLM both use it, so they land on the same device."""
    if requested:
        return requested
    import torch  # only when a model loads: `--help` stays fast

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def hub_offline() -> bool:
    """Whether the hub is switched off in this process (by the user, or by `mark_offline`)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def download_failure(name: str, setting: str, kind: str, err: BaseException) -> str:
    """One line saying why downloading `name` failed and what to do: gated repository, not on
    the hub, disk full, or no network (anything else the hub library raises)."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    seen, cause = set(), err
    while cause is not None and id(cause) not in seen:  # the disk error may be wrapped
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return (f"{kind} {name} did not fit on disk (no space left in the Hugging Face cache); "
                    "free some space, or point HF_HOME at a bigger disk, and run again")
        cause = cause.__cause__ or cause.__context__
    if isinstance(err, GatedRepoError):
        return (f"{kind} {name} is gated on the hub: accept its licence on https://huggingface.co/{name} "
                f"and run `hf auth login`, or set {setting} to an ungated copy (e.g. mlx-community/Meta-Llama-3-8B-Instruct-4bit)")
    if isinstance(err, (RepositoryNotFoundError, RevisionNotFoundError)):
        return f"{kind} {name} was not found on the hub; check the spelling of {setting} (a hub id like owner/name, or a local folder)"
    return (f"{kind} {name} is not on this machine and the hub is unreachable; "
            f"connect to the network once to download it, or set {setting} to a local folder")


def resolve_model_folder(name: str, setting: str, kind: str) -> Path:
    """Return a local folder holding model `name` (a folder path or a hub id).

    A hub id already in the Hugging Face cache is used from there. Otherwise it is downloaded
    once (with the hub's progress bar), unless the hub is switched off; a failure is a
    UserError that says why (see `download_failure`). Nothing here switches the hub off: a
    process does that with `fetch_models` once every model it needs is on disk.
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder.resolve()
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise UserError(f"{kind} folder {name} does not exist; set {setting} to a model folder or hub id")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        pass
    if hub_offline():
        raise UserError(
            f"{kind} {name} is not on this machine and the hub is switched off (HF_HUB_OFFLINE); "
            f"unset HF_HUB_OFFLINE once to download it, or set {setting} to a local folder")
    print(f"note: downloading {name} once from the Hugging Face hub", file=sys.stderr, flush=True)
    try:
        return Path(snapshot_download(name))
    except Exception as err:  # the hub library's own errors, told apart in one line
        raise UserError(download_failure(name, setting, kind, err))


def fetch_models(models: list[tuple[str, str, str]]) -> list[Path]:
    """Make sure every model of this process is on disk, downloading what is missing, each
    once; only then switch the hub off for the rest of the process (loading a second model
    must not find the hub closed by the first). `models` holds (name, setting, kind)."""
    folders = [resolve_model_folder(name, setting, kind) for name, setting, kind in models]
    mark_offline()
    return folders


def local_model_folder(name: str) -> Path | None:
    """Where model `name` is on this machine, never downloading: its folder resolved, or a hub
    id's cached snapshot; None when neither (what two spellings of one model are compared by)."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True)).resolve()
    except Exception:  # not a hub id, or not in the cache: nothing to compare
        return None


def python_command() -> str:
    """The Python to name in hints: `.venv/bin/python`, the one `make` installs everything into
    (a bare `python` outside it lacks the packages), or `python` inside another environment
    that has them (conda)."""
    venv = PROJECT_DIR / ".venv"
    in_project_venv = Path(sys.prefix).resolve() == venv.resolve()
    in_other_env = not in_project_venv and (sys.prefix != sys.base_prefix or "CONDA_PREFIX" in os.environ)
    return "python" if in_other_env else ".venv/bin/python"


def command_for(script: str, *args: str) -> str:
    """A command line that runs one of our scripts from the project folder, for hints:
    `command_for("create_and_persist_embeddings.py", "--rebuild")` ==
    ".venv/bin/python create_and_persist_embeddings.py --rebuild"."""
    return " ".join([python_command(), script, *args])


def ingest_hint(*args: str) -> str:
    """How to run ingestion, for hints: the command in backquotes, and `make ingest` beside it
    when no flags are needed."""
    command = f"`{command_for('create_and_persist_embeddings.py', *args)}`"
    return command if args else f"{command} (or `make ingest`)"


# Terminal control in other people's text (a chat name, a message): escape sequences (CSI such as
# colours and cursor moves, OSC such as window titles and hyperlinks, other ESC pairs), then any
# control character left but newline and tab (8-bit C1 controls included).
_TERMINAL_CONTROL = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI (7- and 8-bit)
    r"|\x1b[ -/]*[0-~]?"  # other escapes
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def terminal_safe(text: str) -> str:
    """`text` without terminal escape sequences or control characters (newlines and tabs stay),
    for printing what other people wrote: `terminal_safe("hi\\x1b[2J")` == "hi"."""
    if not text:
        return text
    return _TERMINAL_CONTROL.sub("", text)


def read_json_object(path: Path) -> dict:
    """The JSON object in `path`, or {} when the file is missing, unreadable or not an object
    (optional config files of a model folder or a vault: their absence is normal)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def warn(message: str) -> None:
    """One `warning: ...` line on stderr (bad input that was skipped, never a traceback)."""
    print(f"warning: {message}", file=sys.stderr)


def run_cli(main: Callable[[list[str] | None], int | None]) -> None:
    """Run a script's `main`, turning UserError into one stderr line and a non-zero exit."""
    try:
        code = main(None)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 1
    except ModuleNotFoundError as err:
        # Run by a Python without the project's packages (`python main.py` outside .venv).
        script = Path(sys.argv[0]).name or "main.py"
        print(f"error: this Python ({sys.executable}) does not have the packages the project needs "
              f"(no module named {err.name!r}); run `{command_for(script)}`, or `make chat` / "
              "`make ingest`, which install them", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 0
    sys.exit(code or 0)
