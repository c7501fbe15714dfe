"""The embedded PostgreSQL: shared by several processes, private socket, no TCP listener."""
from __future__ import annotations

import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

import database
import store
from conftest import PROJECT_DIR

# A process that joins the embedded server, writes its marker, then waits for a line on stdin.
HOLDER = """
import sys
sys.path.insert(0, {project!r})
import database, store
url = database.embedded_database_url(__import__('pathlib').Path({data!r}))
with store.Store(url) as s:
    s.conn.execute("CREATE TABLE IF NOT EXISTS marks (who text)")
    s.conn.execute("INSERT INTO marks VALUES (%s)", ({name!r},))
    s.conn.commit()
print(url, flush=True)
sys.stdin.readline()
with store.Store(url) as s:
    print(s.conn.execute("SELECT count(*) FROM marks").fetchone()[0], flush=True)
"""


def start_holder(data_dir: Path, name: str) -> subprocess.Popen:
    code = HOLDER.format(project=str(PROJECT_DIR), data=str(data_dir), name=name)
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def postmaster_running(data_dir: Path) -> bool:
    return (data_dir / "pg" / "postmaster.pid").exists()


def wait_until(predicate, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def data_dir():
    folder = Path("/tmp") / f"pllm-emb-{uuid.uuid4().hex[:8]}"
    yield folder
    if postmaster_running(folder):
        subprocess.run(["pkill", "-f", str(folder / "pg")], check=False)
        wait_until(lambda: not postmaster_running(folder), 10)
    shutil.rmtree(folder, ignore_errors=True)


def test_two_processes_share_the_server_and_the_last_one_stops_it(data_dir):
    first = start_holder(data_dir, "chat")
    url = first.stdout.readline().strip()
    assert url, first.stderr.read()
    second = start_holder(data_dir, "ingestion")
    assert second.stdout.readline().strip() == url
    # The second process leaves; the first one's server must keep running.
    out, err = second.communicate("\n", timeout=60)
    assert out.strip() == "2", err
    assert postmaster_running(data_dir)
    out, err = first.communicate("\n", timeout=60)
    assert out.strip() == "2", err
    assert wait_until(lambda: not postmaster_running(data_dir))


def test_a_killed_holder_does_not_pin_the_server_forever(data_dir):
    victim = start_holder(data_dir, "victim")
    assert victim.stdout.readline().strip()
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    survivor = start_holder(data_dir, "survivor")
    assert survivor.stdout.readline().strip()
    out, err = survivor.communicate("\n", timeout=60)
    assert out.strip() == "2", err
    assert wait_until(lambda: not postmaster_running(data_dir))


def test_server_has_no_tcp_listener_and_a_private_socket(data_dir):
    holder = start_holder(data_dir, "x")
    url = holder.stdout.readline().strip()
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == ""
            socket_dir = Path(conn.execute("SHOW unix_socket_directories").fetchone()[0])
        mode = stat.S_IMODE(socket_dir.stat().st_mode)
        assert mode & 0o077 == 0, oct(mode)
    finally:
        holder.communicate("\n", timeout=60)


def test_long_data_path_falls_back_to_a_private_socket_folder():
    # Unix socket paths are limited to ~107 bytes: pgserver then uses a shared runtime folder,
    # which it makes world-writable; the store must lock it down to the owner.
    deep = Path("/tmp") / f"pllm-long-{uuid.uuid4().hex[:6]}" / ("d" * 60) / ("e" * 40)
    deep.mkdir(parents=True)
    holder = start_holder(deep, "x")
    url = holder.stdout.readline().strip()
    try:
        assert url, holder.stderr.read()
        socket_dir = Path(url.split("host=", 1)[1])
        assert socket_dir != deep / "pg"
        mode = stat.S_IMODE(socket_dir.stat().st_mode)
        assert mode & 0o077 == 0, oct(mode)
    finally:
        holder.communicate("\n", timeout=60)
        wait_until(lambda: not postmaster_running(deep))
        shutil.rmtree(deep.parents[1], ignore_errors=True)


def test_database_url_setting_points_at_an_external_server(pg_server, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg_server)
    with store.open_store() as opened:
        assert opened.conn.execute("SELECT 1").fetchone()[0] == 1
    assert database.database_url() == pg_server


def test_user_who_may_not_create_pgvector_gets_one_clear_error_and_no_half_schema(database_url):
    # pgvector is not a trusted extension: an ordinary role cannot create it, like on a managed
    # server where it was never enabled.
    role = f"plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT ALL ON SCHEMA public TO {role}")
    limited_url = database_url.replace("postgresql://postgres:@", f"postgresql://{role}:@")
    with store.Store(limited_url) as limited, pytest.raises(store.settings.UserError) as err:
        limited.ensure_schema("m", 4)
    assert "may not create the vector extension" in str(err.value)
    with psycopg.connect(database_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    assert tables == 0
