"""The throw-away embedded PostgreSQL the database benchmarks run in: a fresh folder under /tmp,
a server in it, and both gone at the end, whatever happened in between."""
from __future__ import annotations

import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def scratch_folder(prefix: str) -> Path:
    """A new, empty folder /tmp/<prefix>-<8 hex digits> for one benchmark run."""
    root = Path("/tmp") / f"{prefix}-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    return root


@contextmanager
def embedded_database(root: Path) -> Iterator[str]:
    """Start a PostgreSQL in root/pg and yield its URL; at exit stop it and delete `root`."""
    import pgserver  # heavy, and only the database benchmarks need it

    server = pgserver.get_server(root / "pg", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
