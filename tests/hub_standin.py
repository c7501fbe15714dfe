"""A local stand-in for the Hugging Face hub: an HTTP server on 127.0.0.1 that serves model
folders under hub ids, answering the few requests a download makes (repository info, the
file listing, each file). `HF_ENDPOINT` pointed at it lets a test watch a real first-run
download without the network. Ids listed as gated answer 403 the way the hub does."""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubStandIn:
    """Serve `repos` ({hub id: folder}) until `close()`; `gated` ids refuse every request.
    `downloads` counts the file bodies sent, per hub id."""

    def __init__(self, repos: dict[str, Path], gated: tuple[str, ...] = ()):
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.gated = set(gated)
        self.downloads: dict[str, int] = {}
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _files(self, repo: str) -> list[Path]:
        folder = self.repos[repo]
        return sorted(p for p in folder.rglob("*") if p.is_file())

    def _route(self, path: str) -> tuple[str, str, str] | None:
        """(kind, repo, rest) for /api/models/<repo>/revision|tree/..., /<repo>/resolve/<rev>/<file>."""
        for repo in sorted(set(self.repos) | self.gated, key=len, reverse=True):
            if path.startswith(f"/api/models/{repo}/revision/"):
                return "info", repo, ""
            if path.startswith(f"/api/models/{repo}/tree/"):
                return "tree", repo, ""
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                return "file", repo, path[len(prefix):].split("/", 1)[-1]
        return None

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def _answer(self, code: int, body: bytes = b"", headers: dict | None = None, send_body=True):
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _serve(self, send_body: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"{self.command} {path}")
                route = hub._route(path)
                if route is None:
                    return self._answer(404, b'{"error":"Repository not found"}',
                                        {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"},
                                        send_body)
                kind, repo, rest = route
                if repo in hub.gated:
                    return self._answer(403, b'{"error":"Access to model is restricted"}',
                                        {"X-Error-Code": "GatedRepo", "Content-Type": "application/json"},
                                        send_body)
                files = hub._files(repo)
                folder = hub.repos[repo]
                if kind == "info":
                    body = {"id": repo, "sha": COMMIT,
                            "siblings": [{"rfilename": f.relative_to(folder).as_posix()} for f in files]}
                    return self._answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"},
                                        send_body)
                if kind == "tree":
                    body = [{"type": "file", "path": f.relative_to(folder).as_posix(), "size": f.stat().st_size,
                             "oid": hashlib.sha1(f.read_bytes()).hexdigest()} for f in files]
                    return self._answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"},
                                        send_body)
                target = folder / rest
                if not target.is_file():
                    return self._answer(404, b"", {"X-Error-Code": "EntryNotFound"}, send_body)
                data = target.read_bytes()
                if send_body:
                    hub.downloads[repo] = hub.downloads.get(repo, 0) + 1
                return self._answer(200, data, {"X-Repo-Commit": COMMIT,
                                                "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                                                "Content-Type": "application/octet-stream"}, send_body)

            def do_GET(self):
                self._serve(True)

            def do_HEAD(self):
                self._serve(False)

        return Handler
