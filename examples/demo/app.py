"""Demo product for Preview Portal: a tiny shop with a health check, a login, a database, a
queue and a call from one component to another.

Runs on the standard library (plus PyMySQL when DATABASE_URL is a MySQL DSN). Reads:
HOST, PORT, ROLE (web or api), DATABASE_URL, PREVIEW_BRANCH, PREVIEW_COMMIT, PREVIEW_URL_API
(where the api component is), QUEUE_DIR (the queue's folder; default ./queue).
"""

import html
import json
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
ROLE = os.environ.get("ROLE", "web")
USERS = {"demo": "demo-password"}
STARTED = time.monotonic()


def flag(name: str) -> str:
    """A file a branch adds to change how the app behaves (see environments/demo.py)."""
    path = HERE / name
    return path.read_text().strip() if path.exists() else ""


def warming_up() -> bool:
    return time.monotonic() - STARTED < float(flag("warm-up-seconds") or 0)


def banner() -> str:
    return flag("banner.txt") or "Demo shop"


def queue_round_trip(message: str) -> str:
    """Send `message` through the file queue (one file a message) and receive it back."""
    folder = Path(os.environ.get("QUEUE_DIR") or HERE / "queue")
    folder.mkdir(parents=True, exist_ok=True)
    sent = folder / f"{time.time_ns()}-{uuid.uuid4().hex}.msg"
    staged = sent.with_suffix(".tmp")
    staged.write_text(message)
    staged.replace(sent)  # a receiver never sees half a message
    received = sent.read_text()
    sent.unlink()
    return received


def upstream_health() -> tuple[int, object]:
    base = os.environ.get("PREVIEW_URL_API")
    if not base:
        return 502, {"error": "PREVIEW_URL_API is not set: where is the api?"}
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/healthz", timeout=5) as response:
            return 200, {"role": ROLE, "upstream": json.loads(response.read())}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return 502, {"error": f"api at {base} did not answer: {exc}"}


def connect():
    url = urlparse(os.environ["DATABASE_URL"])
    if url.scheme == "sqlite":
        return sqlite3.connect(url.path if url.netloc == "" else "/" + url.netloc + url.path)
    import pymysql

    return pymysql.connect(
        host=url.hostname, port=url.port or 3306, user=url.username, password=url.password,
        database=url.path.lstrip("/"), autocommit=True,
    )


def item_count() -> int:
    db = connect()
    try:
        cursor = db.cursor()
        cursor.execute("SELECT COUNT(*) FROM items")
        return int(cursor.fetchone()[0])
    finally:
        db.close()


def ensure_schema() -> None:
    db = connect()
    try:
        key = "AUTOINCREMENT" if isinstance(db, sqlite3.Connection) else "AUTO_INCREMENT"
        db.cursor().execute(
            f"CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY {key}, name VARCHAR(200))"
        )
        db.commit()
    finally:
        db.close()


class Handler(BaseHTTPRequestHandler):
    server_version = "demo-shop/1"

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: object) -> None:
        self._send(status, json.dumps(value).encode())

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            value = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def _warming_up(self, path: str) -> bool:
        if path != "/healthz" and warming_up():
            self._json(503, {"error": "warming up"})
            return True
        return False

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if self._warming_up(path):
            return
        if path == "/healthz":
            db = connect()
            db.close()
            self._json(200, {"status": "ok", "role": ROLE})
        elif path == "/items":
            db = connect()
            try:
                cursor = db.cursor()
                cursor.execute("SELECT id, name FROM items ORDER BY id")
                rows = [{"id": r[0], "name": r[1]} for r in cursor.fetchall()]
            finally:
                db.close()
            self._json(200, rows)
        elif path == "/upstream":
            self._json(*upstream_health())
        elif path == "/":
            branch = html.escape(os.environ.get("PREVIEW_BRANCH", "?"))
            commit = html.escape(os.environ.get("PREVIEW_COMMIT", "?")[:12])
            page = (
                f"<!doctype html><meta charset=utf-8><title>{html.escape(banner())}</title>"
                f"<h1>{html.escape(banner())}</h1><p>Component <b>{ROLE}</b> of branch "
                f"<code id=branch>{branch}</code> at <code>{commit}</code>.</p>"
                f"<p><a href=/items><span id=items>{item_count()}</span> items</a> in its "
                "database.</p>"
            )
            self._send(200, page.encode(), "text/html; charset=utf-8")
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        if self._warming_up(path):
            return
        body = self._body()
        if path == "/login":
            if USERS.get(str(body.get("username"))) == body.get("password") \
                    and not flag("login-broken"):
                self._json(200, {"user": body["username"], "token": "demo-token"})
            else:
                self._json(401, {"error": "wrong username or password"})
        elif path == "/items":
            name = str(body.get("name", "")).strip()
            if not name:
                self._json(400, {"error": "name is required"})
                return
            db = connect()
            try:
                cursor = db.cursor()
                mark = "?" if isinstance(db, sqlite3.Connection) else "%s"
                cursor.execute(f"INSERT INTO items (name) VALUES ({mark})", (name,))
                db.commit()
                item_id = cursor.lastrowid
            finally:
                db.close()
            self._json(201, {"id": item_id, "name": name})
        elif path == "/integrations/queue":
            message = str(body.get("message", ""))
            self._json(200, {"sent": message, "received": queue_round_trip(message)})
        else:
            self._json(404, {"error": "not found"})

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    if flag("crash-on-start"):
        sys.exit(f"{ROLE}: refusing to start: crash-on-start is set on this branch")
    ensure_schema()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"{ROLE} listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
