"""Reaching the database: `DATABASE_URL` or the private embedded PostgreSQL 16, the
connection, and one-line reports of what went wrong. No SQL here: store.py runs it.

`DATABASE_URL` unset starts (or joins) a private PostgreSQL 16 from the `pgserver` package under
`PERSONAL_LLM_DATA_DIR/pg`, reachable only through a Unix socket in an owner-only folder.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import settings


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


_embedded_servers: dict[Path, object] = {}


def _forget_dead_holders(pgdata: Path) -> None:
    """Drop pids of killed processes from pgserver's holder list, so the last live holder
    still stops the server on exit (a SIGKILLed holder otherwise pins it forever)."""
    holders = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(holders.read_text())
    except (OSError, ValueError):
        return
    import psutil

    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        holders.write_text(json.dumps(alive))


def _make_socket_dir_private(server, pgdata: Path) -> None:
    """pgserver falls back to a world-writable socket folder when the data path is too long
    for a Unix socket; with trust authentication that would let any local user in."""
    socket_dir = server.get_postmaster_info().socket_dir
    if socket_dir is None or Path(socket_dir).resolve() == pgdata:
        return
    socket_dir = Path(socket_dir)
    if os.geteuid() == 0:
        stat = pgdata.stat()  # pgserver runs postgres as the data dir's owner
        os.chown(socket_dir, stat.st_uid, stat.st_gid)
    socket_dir.chmod(0o700)


def embedded_database_exists(data_dir: Path) -> bool:
    """Whether the embedded server's database was ever created in `data_dir` (without starting it)."""
    return (data_dir / "pg" / "PG_VERSION").is_file()


def embedded_database_url(data_dir: Path) -> str:
    """Start or join the embedded server for `data_dir` and return its socket URL."""
    pgdata = data_dir / "pg"
    if pgdata in _embedded_servers:
        return _embedded_servers[pgdata].get_uri()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise settings.UserError(
            f"data folder {data_dir} is not writable ({err.strerror}); "
            "fix its permissions or set PERSONAL_LLM_DATA_DIR to a writable folder"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR notice, not ours to show
        import pgserver  # missing: the wrong Python runs us, which run_cli says (not "did not start")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _forget_dead_holders(pgdata)
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
        _make_socket_dir_private(server, pgdata)
    except Exception as err:  # pgserver raises plain RuntimeError/CalledProcessError
        log = pgdata / "log"
        raise settings.UserError(
            f"the embedded PostgreSQL in {pgdata} did not start ({err.__class__.__name__}: {err}); "
            f"see {log}, or set DATABASE_URL to an external server"
        )
    _embedded_servers[pgdata] = server
    return server.get_uri()


def database_url(url: str | None = None, data_dir: str | Path | None = None) -> str:
    """The URL to use: flag/DATABASE_URL, else the embedded server's."""
    url = settings.get("DATABASE_URL", url)
    if url:
        return url
    return embedded_database_url(settings.data_dir(data_dir))


def connect(url: str, autocommit: bool = False):
    """A psycopg connection to `url`; one clear error when there is none to be had."""
    import psycopg

    try:
        return psycopg.connect(url, connect_timeout=10, autocommit=autocommit)
    except psycopg.OperationalError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "connection failed"
        raise settings.UserError(
            f"cannot connect to the database at {redact_url(url)} ({reason}); "
            "check DATABASE_URL, or unset it to use the embedded server"
        )
    except psycopg.ProgrammingError as err:
        raise settings.UserError(f"DATABASE_URL {redact_url(url)} is not a valid connection string ({err})")


def is_database_error(err: BaseException) -> bool:
    """True for psycopg's errors (checked without importing psycopg)."""
    return type(err).__module__.split(".")[0] == "psycopg"


def first_error_line(err: BaseException, fallback: str = "") -> str:
    """The first line of an error's message, for a one-line report: psycopg puts DETAIL, HINT
    and the failing SQL on the lines below. An empty message gives `fallback`, else the class name."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else (fallback or err.__class__.__name__)


def database_error_message(err: BaseException) -> str:
    """One line describing a database failure in the middle of work."""
    import psycopg

    if isinstance(err, psycopg.errors.ReadOnlySqlTransaction):
        return "the database is read-only and refused the write"
    if isinstance(err, psycopg.errors.DiskFull):
        return "the database's disk is full"
    if isinstance(err, psycopg.OperationalError):
        return f"lost the connection to the database ({first_error_line(err, 'connection lost')})"
    primary = getattr(getattr(err, "diag", None), "message_primary", None) or first_error_line(err)
    return f"database error: {primary}"
