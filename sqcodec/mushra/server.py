"""``sqcodec mushra serve``: a small loopback-only HTTP server for the built-in MUSHRA page.

Routes (everything else is 404; nothing outside ``TEST_DIR/stimuli`` and ``index.html`` is ever read)::

    GET  /  /index.html        the page
    GET  /api/test             the blind view of test.json (no condition names)
    GET  /stimuli/<trial>/<file>.wav   audio/wav, with byte ranges (206) for seeking
    POST /api/submit           one session of ratings (JSON, see :mod:`.page`)

Each valid submission is appended to ``TEST_DIR/results/<test id>/mushra.csv`` with webMUSHRA's columns
(:func:`~.common.csv_header`): the file is rewritten to a temporary file and renamed under a lock, so a
reader never sees half a submission, and the header is written once. An invalid one gets ``400`` and a
JSON ``{"error": ...}``; a session id already stored gets ``409``.

The server binds to an IPv4 loopback address only (it has no authentication; reach it from another
machine through an SSH tunnel), and it rejects requests whose ``Host`` header names another host
(DNS rebinding).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import math
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .common import MushraError, csv_header, load_test, results_csv, write_text_atomic

__all__ = ["MAX_BODY", "MushraServer", "check_host", "make_server", "public_view", "validate_submission"]

MAX_BODY = 1 << 20
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_MAX_TEXT = 2000


def check_host(host: str) -> str:
    """The address to bind for ``--host``: ``localhost`` or an IPv4 loopback address, else
    :class:`MushraError`."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    if addr is None or addr.version != 4 or not addr.is_loopback:
        raise MushraError(
            f"--host {host}: refusing to listen on a non-loopback address; the test server has no "
            "authentication and binds to 127.0.0.1 only (reach it from elsewhere through an SSH tunnel)"
        )
    return str(addr)


def public_view(test: dict[str, Any]) -> dict[str, Any]:
    """What the page may know: ids, blind labels and URLs, never which condition is which system."""
    return {
        "test_id": test["test_id"],
        "name": test.get("name", test["test_id"]),
        "instructions": test.get("instructions", ""),
        "participant_fields": test.get("participant_fields", []),
        "require_playback": bool(test.get("require_playback", True)),
        "trials": [
            {
                "id": t["id"],
                "reference": t["reference"],
                "conditions": [
                    {"id": c["id"], "label": c["label"], "url": c["file"]} for c in t["conditions"]
                ],
            }
            for t in test["trials"]
        ],
    }


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if len(value) > _MAX_TEXT:
        raise ValueError(f"{what} is longer than {_MAX_TEXT} characters")
    return " ".join(value.split())  # one line: no newlines or control whitespace in the CSV


def validate_submission(test: dict[str, Any], data: Any) -> tuple[str, list[list[Any]]]:
    """Check one session against the test; return its uuid and CSV rows (``ValueError`` says what is wrong).

    Every trial of the test must be there once, each with a score in [0, 100] for every one of its
    conditions and nothing else.
    """
    if not isinstance(data, dict):
        raise ValueError("the submission must be a JSON object")
    if data.get("test_id") != test["test_id"]:
        raise ValueError(f"test_id {data.get('test_id')!r} is not this test ({test['test_id']!r})")
    uuid = data.get("session_uuid")
    if not isinstance(uuid, str) or not _UUID_RE.match(uuid):
        raise ValueError("session_uuid must be a UUID string")
    fields = test.get("participant_fields", [])
    participant = data.get("participant", {})
    if not isinstance(participant, dict):
        raise ValueError("participant must be an object")
    known = {f["name"] for f in fields}
    extra = sorted(set(participant) - known)
    if extra:
        raise ValueError(f"unknown participant field {extra[0]!r}")
    answers = []
    for f in fields:
        v = _text(participant.get(f["name"]), f"participant field {f['name']!r}")
        if not v and not f.get("optional", False):
            raise ValueError(f"participant field {f['name']!r} is required")
        if v and f.get("type") == "choice" and v not in f.get("options", []):
            raise ValueError(f"participant field {f['name']!r}: {v!r} is not one of {f['options']}")
        answers.append(v)
    trials = data.get("trials")
    if not isinstance(trials, list):
        raise ValueError("trials must be a list")
    by_id = {t["id"]: t for t in test["trials"]}
    seen: dict[str, Any] = {}
    for t in trials:
        if not isinstance(t, dict) or t.get("id") not in by_id:
            raise ValueError(f"unknown trial id {t.get('id') if isinstance(t, dict) else t!r}")
        if t["id"] in seen:
            raise ValueError(f"trial {t['id']!r} submitted twice")
        seen[t["id"]] = t
    missing = [tid for tid in by_id if tid not in seen]
    if missing:
        raise ValueError(f"trial {missing[0]!r} is missing ({len(missing)} of {len(by_id)} trials not rated)")
    rows = []
    for trial in test["trials"]:
        t = seen[trial["id"]]
        ratings = t.get("ratings")
        if not isinstance(ratings, dict):
            raise ValueError(f"trial {trial['id']!r}: ratings must be an object")
        conds = {c["id"]: c["stimulus"] for c in trial["conditions"]}
        unknown = sorted(set(ratings) - set(conds))
        if unknown:
            raise ValueError(f"trial {trial['id']!r}: unknown stimulus id {unknown[0]!r}")
        time_ms = t.get("time_ms", 0)
        if isinstance(time_ms, bool) or not isinstance(time_ms, (int, float)) or not math.isfinite(time_ms):
            raise ValueError(f"trial {trial['id']!r}: time_ms must be a number")
        comment = _text(t.get("comment"), f"trial {trial['id']!r} comment")
        for c in trial["conditions"]:
            if c["id"] not in ratings:
                raise ValueError(f"trial {trial['id']!r}: no rating for stimulus id {c['id']!r}")
            score = ratings[c["id"]]
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise ValueError(f"trial {trial['id']!r}: rating of {c['id']!r} is not a number")
            if not 0 <= score <= 100:
                raise ValueError(f"trial {trial['id']!r}: rating {score} of {c['id']!r} is outside 0-100")
            score = int(score) if float(score).is_integer() else float(score)
            rows.append(
                [test["test_id"], *answers, uuid, trial["id"], c["stimulus"], score, int(time_ms), comment]
            )
    return uuid, rows


class MushraServer(ThreadingHTTPServer):
    """Serves one test folder; ``csv_path`` is where ratings go.

    Each connection gets ``request_timeout`` seconds per read (a client that declares a body and stalls
    is dropped instead of holding a thread forever); ``request_queue_size`` lets a class of listeners
    submit at the same moment without their connections waiting for SYN retries.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    request_timeout: float = 30.0

    def __init__(self, test_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False):
        self.test_dir = Path(test_dir).resolve()
        self.test = load_test(self.test_dir)
        index = self.test_dir / "index.html"
        if not index.is_file():
            raise MushraError(f"{index}: not found (rebuild the test with 'sqcodec mushra build')")
        self.index_html = index.read_bytes()
        self.public = json.dumps(public_view(self.test)).encode()
        self.stimuli_dir = (self.test_dir / "stimuli").resolve()
        self.csv_path = results_csv(self.test_dir, self.test)
        self.header = csv_header(self.test.get("participant_fields", []))
        self.lock = threading.Lock()
        self.quiet = quiet
        self.sessions = self._stored_sessions()
        super().__init__((check_host(host), port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def _stored_sessions(self) -> set[str]:
        if not self.csv_path.is_file():
            return set()
        with open(self.csv_path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != self.header:
                raise MushraError(
                    f"{self.csv_path}: its header {header} is not this test's {self.header}; move it away"
                )
            col = self.header.index("session_uuid")
            return {row[col] for row in reader if len(row) > col}

    def append(self, uuid: str, rows: list[list[Any]]) -> None:
        """Append one session's rows: the whole file is rewritten to a temporary file and renamed."""
        with self.lock:
            if uuid in self.sessions:
                raise FileExistsError(f"session {uuid} was already stored")
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            old = self.csv_path.read_text(encoding="utf-8") if self.csv_path.is_file() else ""
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            if not old:
                writer.writerow(self.header)
            elif not old.endswith("\n"):
                buf.write("\n")
            writer.writerows(rows)
            write_text_atomic(self.csv_path, old + buf.getvalue())
            self.sessions.add(uuid)


class _Handler(BaseHTTPRequestHandler):
    server: MushraServer
    server_version = "sqcodec-mushra"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # socket timeout of this connection's reads
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host in ("localhost", "127.0.0.1") or host == self.server.server_address[0]:
            return True
        self._error(HTTPStatus.FORBIDDEN, "requests must name the loopback host")
        return False

    def _stimulus(self, path: str) -> Path | None:
        """``/stimuli/<trial>/<name>.wav`` -> the file inside TEST_DIR/stimuli, or None."""
        parts = path.split("/")[1:]
        if len(parts) != 3 or parts[0] != "stimuli" or not parts[2].endswith(".wav"):
            return None
        if not all(_SEGMENT_RE.match(p) for p in parts[1:]):
            return None
        f = (self.server.stimuli_dir / parts[1] / parts[2]).resolve()
        if not f.is_relative_to(self.server.stimuli_dir) or not f.is_file():
            return None
        return f

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if not self._host_ok():
            return
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.index_html, "text/html; charset=utf-8")
        elif path == "/api/test":
            self._send(HTTPStatus.OK, self.server.public, "application/json")
        elif path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            f = self._stimulus(path)
            if f is None:
                self._error(HTTPStatus.NOT_FOUND, "not found")
            else:
                self._send_file(f)

    do_HEAD = do_GET

    def _send_file(self, f: Path) -> None:
        data = f.read_bytes()
        size = len(data)
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip()) if rng else None
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start, end = max(size - int(m.group(2)), 0), size - 1
            if start >= size or start > end:
                self._send(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    b"",
                    "audio/wav",
                    {"Content-Range": f"bytes */{size}"},
                )
                return
            self._send(
                HTTPStatus.PARTIAL_CONTENT,
                data[start : end + 1],
                "audio/wav",
                {"Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes"},
            )
        else:
            self._send(HTTPStatus.OK, data, "audio/wav", {"Accept-Ranges": "bytes"})

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        if not self._host_ok():
            return
        if unquote(urlsplit(self.path).path) != "/api/submit":
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
            return
        if length < 0 or length > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"submission larger than {MAX_BODY} bytes")
            return
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the ratings as application/json")
            return
        body = self.rfile.read(length)
        try:
            data = json.loads(body.decode("utf-8"))
            uuid, rows = validate_submission(self.server.test, data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"not JSON: {exc}")
            return
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        try:
            self.server.append(uuid, rows)
        except FileExistsError as exc:
            self._error(HTTPStatus.CONFLICT, str(exc))
            return
        except OSError as exc:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"cannot store the ratings: {exc}")
            return
        self._json(HTTPStatus.OK, {"ok": True, "rows": len(rows), "trials": len(self.server.test["trials"])})


def make_server(
    test_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False
) -> MushraServer:
    """A ready :class:`MushraServer` (call ``serve_forever``); ``port=0`` picks a free port."""
    return MushraServer(test_dir, host=host, port=port, quiet=quiet)
