"""``sqcodec mushra serve``: loopback only, no path escapes, validated submissions appended to the CSV,
and the built-in page driven end to end by a real headless Chromium (selenium)."""

from __future__ import annotations

import csv
import http.client
import json
import os
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import run_cli
from scipy import signal

from sqcodec import cli_mushra
from sqcodec.mushra import PARTICIPANT_FIELDS, MushraError, csv_header
from sqcodec.mushra.server import check_host, make_server

ITEMS = ["2033-164914-0003", "2033-164914-0004"]
HEADER = [
    "session_test_id",
    "alias",
    "experience",
    "session_uuid",
    "trial_id",
    "rating_stimulus",
    "rating_score",
    "rating_time",
    "rating_comment",
]


def run_mushra(*args) -> tuple[int, str, str]:
    """``sqcodec mushra <args>`` on the real app."""
    return run_cli("mushra", *args)


@pytest.fixture(scope="module")
def test_dir(realaudio: Path, tmp_path_factory) -> Path:
    """A two-trial test on real speech: hidden reference, one system (4 kHz low-pass), two anchors."""
    root = tmp_path_factory.mktemp("serve")
    ref, sys_ = root / "ref", root / "lp4k"
    ref.mkdir()
    sys_.mkdir()
    sos = signal.butter(8, 4000, fs=16000, output="sos")
    for item in ITEMS:
        src = realaudio / "speech/librispeech/test-other/2033" / f"{item}.flac"
        (ref / f"{item}.flac").symlink_to(src)
        x, sr = sf.read(src)
        sf.write(sys_ / f"{item}.wav", signal.sosfiltfilt(sos, x), sr, subtype="PCM_16")
    out = root / "listening"
    code, _, err = run_mushra(
        "build", ref, sys_, "--out", out, "--anchors", "lp35,noise", "--max-seconds", 2.5, "--seed", 3
    )
    assert code == 0, err
    return out


@pytest.fixture
def fresh_dir(test_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the built test (so results from one test do not leak into another)."""
    dst = tmp_path / "listening"
    shutil.copytree(test_dir, dst)
    return dst


@contextmanager
def running(folder: Path):
    server = make_server(folder, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def session(test: dict, scores=None, sid: str | None = None) -> dict:
    return {
        "test_id": test["test_id"],
        "session_uuid": sid or str(uuid.uuid4()),
        "participant": {"alias": "a1", "experience": "some"},
        "trials": [
            {
                "id": t["id"],
                "time_ms": 1000,
                "comment": "",
                "ratings": {c["id"]: (scores or {}).get(c["stimulus"], 50) for c in t["conditions"]},
            }
            for t in test["trials"]
        ],
    }


def post(server, data) -> tuple[int, dict]:
    body = json.dumps(data).encode()
    status, _, answer = request(server, "POST", "/api/submit", body, {"Content-Type": "application/json"})
    return status, json.loads(answer)


def read_csv(folder: Path) -> list[list[str]]:
    with open(folder / "results" / "listening" / "mushra.csv", newline="") as f:
        return list(csv.reader(f))


# ----------------------------------------------------------------------------------------------------------
# the server without a browser


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::1", "example.com", ""])
def test_non_loopback_host_is_refused(host: str, test_dir: Path) -> None:
    with pytest.raises(MushraError, match="non-loopback"):
        check_host(host)
    code, out, err = run_mushra("serve", test_dir, "--host", host, "--port", 0)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert (
        code == 1
        and len(lines) == 1
        and "non-loopback" in lines[0]
        and lines[0].startswith("sqcodec: error:")
    )


def test_loopback_hosts_are_accepted() -> None:
    assert check_host("127.0.0.1") == "127.0.0.1"
    assert check_host("localhost") == "127.0.0.1"


def test_serve_without_a_test_fails_in_one_line(tmp_path: Path) -> None:
    code, out, err = run_mushra("serve", tmp_path, "--port", 0)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "test.json" in lines[0]


def test_page_and_stimuli_are_served(fresh_dir: Path) -> None:
    test = json.loads((fresh_dir / "test.json").read_text())
    with running(fresh_dir) as server:
        status, headers, body = request(server, "GET", "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<script>" in body
        status, headers, body = request(server, "GET", "/api/test")
        view = json.loads(body)
        assert status == 200 and [t["id"] for t in view["trials"]] == [t["id"] for t in test["trials"]]
        blob = json.dumps(view)
        assert "stimulus" not in blob and "lp4k" not in blob and "anchor" not in blob  # blind
        f = fresh_dir / test["trials"][0]["conditions"][0]["file"]
        url = "/" + test["trials"][0]["conditions"][0]["file"]
        status, headers, body = request(server, "GET", url)
        assert status == 200 and headers["Content-Type"] == "audio/wav" and body == f.read_bytes()
        status, headers, body = request(server, "GET", url, headers={"Range": "bytes=100-199"})
        assert status == 206 and body == f.read_bytes()[100:200]
        assert headers["Content-Range"] == f"bytes 100-199/{f.stat().st_size}"
        status, headers, body = request(server, "HEAD", url)
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == f.stat().st_size
        # DNS rebinding: another Host is refused
        assert request(server, "GET", "/", headers={"Host": "evil.example:80"})[0] == 403


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/stimuli/../../../../etc/passwd",
        "/stimuli/%2e%2e/%2e%2e/etc/passwd",
        "/stimuli/trial01/../../test.json",
        "/stimuli/..%2ftest.json",
        "/test.json",
        "/results/listening/mushra.csv",
        "/stimuli/trial01",
        "/stimuli/trial01/evil.wav",
        "/webmushra/configs/listening.yaml",
        "//etc/passwd",
    ],
)
def test_no_path_escapes(fresh_dir: Path, path: str) -> None:
    (fresh_dir / "stimuli" / "trial01" / "evil.wav").symlink_to("/etc/passwd")
    with running(fresh_dir) as server:
        status, _, body = request(server, "GET", path)
    assert status in (403, 404)
    assert b"root:" not in body and b"trials" not in body


def test_bad_submissions_get_400_and_write_nothing(fresh_dir: Path) -> None:
    test = json.loads((fresh_dir / "test.json").read_text())
    t0 = test["trials"][0]
    c0 = t0["conditions"][0]["id"]

    def tweak(fn):
        s = session(test)
        fn(s)
        return s

    bad = [
        (tweak(lambda s: s["trials"][0]["ratings"].__setitem__(c0, 101)), "outside 0-100"),
        (tweak(lambda s: s["trials"][0]["ratings"].__setitem__(c0, -1)), "outside 0-100"),
        (tweak(lambda s: s["trials"][0]["ratings"].__setitem__(c0, "80")), "not a number"),
        (tweak(lambda s: s["trials"][0]["ratings"].__setitem__(c0, True)), "not a number"),
        (tweak(lambda s: s["trials"][0]["ratings"].__setitem__("c99", 10)), "unknown stimulus id"),
        (tweak(lambda s: s["trials"][0]["ratings"].pop(c0)), "no rating"),
        (tweak(lambda s: s["trials"][0].__setitem__("id", "trial99")), "unknown trial id"),
        (tweak(lambda s: s["trials"].pop()), "missing"),
        (tweak(lambda s: s["trials"].append(dict(s["trials"][0]))), "twice"),
        (tweak(lambda s: s.__setitem__("test_id", "other")), "not this test"),
        (tweak(lambda s: s.__setitem__("session_uuid", "x")), "UUID"),
        (tweak(lambda s: s["participant"].__setitem__("alias", "")), "required"),
        (tweak(lambda s: s["participant"].__setitem__("experience", "guru")), "not one of"),
        (tweak(lambda s: s["participant"].__setitem__("email", "a@b")), "unknown participant field"),
        ([1, 2], "JSON object"),
    ]
    with running(fresh_dir) as server:
        for data, needle in bad:
            status, answer = post(server, data)
            assert status == 400 and needle in answer["error"], (needle, answer)
        status, _, body = request(
            server, "POST", "/api/submit", b"{not json", {"Content-Type": "application/json"}
        )
        assert status == 400 and b"not JSON" in body
        status, _, _ = request(server, "POST", "/api/submit", b"{}", {"Content-Type": "text/plain"})
        assert status == 415
    assert not (fresh_dir / "results").exists()


def test_submissions_are_appended_with_one_header(fresh_dir: Path) -> None:
    test = json.loads((fresh_dir / "test.json").read_text())
    scores = {"reference": 100, "lp4k": 61.5, "anchor35": 20, "anchor_noise": 3}
    sid = str(uuid.uuid4())
    with running(fresh_dir) as server:
        status, answer = post(server, session(test, scores, sid))
        assert status == 200 and answer["rows"] == 2 * 4
        status, answer = post(server, session(test, scores, sid))
        assert status == 409  # the same session twice
        # eight sessions at once: every row lands, the header stays single
        threads = [threading.Thread(target=post, args=(server, session(test))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rows = read_csv(fresh_dir)
    assert rows[0] == HEADER == csv_header(PARTICIPANT_FIELDS)
    assert sum(r == HEADER for r in rows) == 1
    assert len(rows) == 1 + 9 * 8
    mine = [dict(zip(HEADER, r, strict=True)) for r in rows[1:] if r[3] == sid]
    assert len(mine) == 8
    assert {(r["rating_stimulus"], r["rating_score"]) for r in mine} == {
        ("reference", "100"),
        ("lp4k", "61.5"),
        ("anchor35", "20"),
        ("anchor_noise", "3"),
    }
    assert all(r["session_test_id"] == "listening" and r["alias"] == "a1" for r in mine)
    leftovers = [p.name for p in (fresh_dir / "results" / "listening").iterdir()]
    assert leftovers == ["mushra.csv"]  # no temporary files left
    # a restarted server still knows the stored sessions
    with running(fresh_dir) as server:
        assert post(server, session(test, scores, sid))[0] == 409


def test_binds_loopback_by_default(fresh_dir: Path) -> None:
    """Neither the library nor the CLI listens beyond 127.0.0.1 unless told (and then only on loopback)."""
    import inspect

    with running(fresh_dir) as server:
        assert server.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    assert inspect.signature(make_server).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(cli_mushra.serve).parameters["host"].default.default == "127.0.0.1"


def _raw(server, data: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes on one connection and read until the server closes it."""
    import socket

    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_oversized_and_unframed_posts_are_refused(fresh_dir: Path) -> None:
    """A body larger than MAX_BODY gets 413 before a byte of it is read; a POST without Content-Length 411;
    a client that declares a body and stalls is dropped after the request timeout; none of it writes a
    rating, and the server keeps answering."""
    from sqcodec.mushra.server import MAX_BODY

    test = json.loads((fresh_dir / "test.json").read_text())
    with running(fresh_dir) as server:
        server.request_timeout = 0.5
        head = "POST /api/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        # declared too large: refused from the header alone (the body is never sent)
        answer = _raw(server, f"{head}Content-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.0 413") and f"larger than {MAX_BODY}".encode() in answer
        answer = _raw(server, f"{head}Content-Length: {10**12}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.0 413")
        # a really oversized body sent in full (the client sees 413 or a reset, never a stored rating)
        big = json.dumps({**session(test), "pad": "x" * (MAX_BODY + 10)}).encode()
        try:
            status, _, _ = request(server, "POST", "/api/submit", big, {"Content-Type": "application/json"})
            assert status == 413
        except (ConnectionResetError, BrokenPipeError):
            pass
        # no Content-Length (chunked): 411
        answer = _raw(server, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.0 411")
        # declares 1000 bytes, sends 10 and stalls: dropped after request_timeout, no answer needed
        t0 = time.monotonic()
        _raw(server, f'{head}Content-Length: 1000\r\n\r\n{{"test_id"'.encode())
        assert time.monotonic() - t0 < 5
        assert post(server, session(test))[0] == 200  # still serving
    rows = read_csv(fresh_dir)
    assert len(rows) == 1 + 2 * 4  # the one good session only


def test_concurrent_submissions_lose_nothing(fresh_dir: Path) -> None:
    """20 threads x 10 sessions posted at once over loopback (plus each thread re-posting one of its
    sessions, which must get 409) while a reader keeps parsing the CSV: every rating is stored exactly
    once with its own score, the file always parses with whole rows, the header is written once."""
    test = json.loads((fresh_dir / "test.json").read_text())
    n_threads, per_thread = 20, 10
    conds = [(t["id"], c["stimulus"]) for t in test["trials"] for c in t["conditions"]]
    sent: dict[str, int] = {}
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(n_threads + 1)
    stop = threading.Event()
    torn: list[str] = []

    def client(k: int, server) -> None:
        start.wait()
        for i in range(per_thread):
            sid, score = str(uuid.uuid4()), (k * per_thread + i) % 101
            data = session(test, dict.fromkeys((c for _, c in conds), score), sid)
            status, _ = post(server, data)
            with lock:
                statuses.append(status)
                if status == 200:
                    sent[sid] = score
            if i == per_thread // 2:
                with lock:
                    statuses.append(post(server, data)[0])  # the same session again: 409

    def reader(csv_path: Path) -> None:
        while not stop.is_set():
            if csv_path.is_file():
                text = csv_path.read_text(encoding="utf-8")
                rows = list(csv.reader(text.splitlines()))
                if not text.endswith("\n") or any(len(r) != len(HEADER) for r in rows):
                    torn.append(text[-200:])
            time.sleep(0.002)

    with running(fresh_dir) as server:
        threads = [threading.Thread(target=client, args=(k, server)) for k in range(n_threads)]
        watcher = threading.Thread(target=reader, args=(server.csv_path,))
        for t in (*threads, watcher):
            t.start()
        start.wait()
        for t in threads:
            t.join(120)
        stop.set()
        watcher.join(10)
    assert not torn, torn[:2]
    assert statuses.count(200) == n_threads * per_thread and statuses.count(409) == n_threads
    assert len(statuses) == n_threads * (per_thread + 1)
    rows = read_csv(fresh_dir)
    assert rows[0] == HEADER and sum(r == HEADER for r in rows) == 1
    body = [dict(zip(HEADER, r, strict=True)) for r in rows[1:]]
    assert len(body) == n_threads * per_thread * len(conds)
    keys = [(r["session_uuid"], r["trial_id"], r["rating_stimulus"]) for r in body]
    assert len(set(keys)) == len(keys)  # every rating exactly once
    assert {r["session_uuid"] for r in body} == set(sent)
    assert all(int(r["rating_score"]) == sent[r["session_uuid"]] for r in body)  # no mixed sessions
    leftovers = [p.name for p in (fresh_dir / "results" / "listening").iterdir()]
    assert leftovers == ["mushra.csv"]


# ----------------------------------------------------------------------------------------------------------
# a real browser


def _browser():
    chromium = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    missing = [
        what
        for what, ok in (("chromium", chromium), ("chromedriver", driver), ("selenium", webdriver))
        if not ok
    ]
    if missing:
        msg = (
            f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver; "
            "pip install selenium)"
        )
        if os.environ.get("SQCODEC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SQCODEC_REQUIRE_BROWSER=1 but {msg}")
        pytest.skip(f"browser test skipped: {msg}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-dev-shm-usage",
        "--mute-audio",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver))


FETCH_ALL = """
const done = arguments[arguments.length - 1];
Promise.all(arguments[0].map(async (u) => {
  const r = await fetch(u, {cache: "no-store"});
  const b = await r.arrayBuffer();
  return [u, r.status, r.headers.get("content-type"), b.byteLength];
})).then(done, (e) => done(String(e)));
"""
AUDIO_STATE = """
return Array.from(document.querySelectorAll('#audios audio')).map(
  (a) => [a.dataset.key, a.readyState, a.duration, a.paused, a.currentTime]);
"""
SET_SLIDER = """
const el = arguments[0];
el.value = String(arguments[1]);
el.dispatchEvent(new Event('input', {bubbles: true}));
el.dispatchEvent(new Event('change', {bubbles: true}));
"""


def test_a_listener_rates_every_trial_in_a_real_browser(fresh_dir: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    test = json.loads((fresh_dir / "test.json").read_text())
    driver = _browser()
    expected: dict[tuple[str, str], int] = {}
    try:
        with running(fresh_dir) as server:
            wait = WebDriverWait(driver, 30)

            def state(s: str) -> None:
                wait.until(lambda d: d.execute_script("return document.body.dataset.state") == s)

            driver.get(server.url)
            state("intro")
            driver.find_element(By.ID, "start").click()  # required fields empty: stays on the intro
            assert "Please fill in" in driver.find_element(By.ID, "status").text
            driver.find_element(By.ID, "field-alias").send_keys("listener one")
            Select(driver.find_element(By.ID, "field-experience")).select_by_value("expert")
            driver.find_element(By.ID, "start").click()
            state("trial")
            for n, trial in enumerate(test["trials"]):
                wait.until(
                    lambda d, t=trial: (
                        d.find_element(By.ID, "trial").get_attribute("data-trial-id") == t["id"]
                    )
                )
                files = {"ref": trial["reference"], **{c["id"]: c["file"] for c in trial["conditions"]}}
                # every stimulus URL answers 200 with the file's bytes, as audio/wav
                fetched = driver.execute_async_script(FETCH_ALL, list(files.values()))
                assert isinstance(fetched, list), fetched
                for (url, status, ctype, size), rel in zip(fetched, files.values(), strict=True):
                    assert (status, ctype, size) == (200, "audio/wav", (fresh_dir / rel).stat().st_size), url
                # every <audio> element loads, and its duration is the file's to 10 ms
                wait.until(lambda d: all(a[1] >= 1 for a in d.execute_script(AUDIO_STATE)))
                audio = {a[0]: a for a in driver.execute_script(AUDIO_STATE)}
                assert sorted(audio) == sorted(files)
                for key, rel in files.items():
                    assert abs(audio[key][2] - sf.info(fresh_dir / rel).duration) < 0.010, key
                if n == 0:  # moving on before listening to everything is refused
                    driver.find_element(By.ID, "next").click()
                    assert "Please listen to every condition" in driver.find_element(By.ID, "status").text
                    assert driver.execute_script("return document.body.dataset.state") == "trial"
                driver.find_element(By.ID, "play-ref").click()
                for c in trial["conditions"]:
                    driver.find_element(By.ID, f"play-{c['id']}").click()
                    wait.until(
                        lambda d, k=c["id"]: d.execute_script(
                            f"return !document.getElementById('audio-{k}').paused"
                        )
                    )
                # switching keeps the playback position
                first, second = trial["conditions"][0]["id"], trial["conditions"][1]["id"]
                driver.find_element(By.ID, f"play-{first}").click()
                wait.until(
                    lambda d, k=first: d.execute_script(
                        f"return document.getElementById('audio-{k}').currentTime > 0.2"
                    )
                )
                t_before, t_after = driver.execute_script(
                    f"const a = document.getElementById('audio-{first}');"
                    f"const t = a.currentTime; document.getElementById('play-{second}').click();"
                    f"return [t, document.getElementById('audio-{second}').currentTime];"
                )
                assert t_before > 0.2 and abs(t_after - t_before) < 0.05
                driver.find_element(By.ID, "stop").click()
                assert all(a[3] for a in driver.execute_script(AUDIO_STATE))  # all paused
                for i, c in enumerate(trial["conditions"]):
                    slider = driver.find_element(By.ID, f"rating-{c['id']}")
                    if n == 0 and i == 0:  # one slider moved with the keyboard, like a user
                        slider.click()
                        slider.send_keys(Keys.HOME)
                        for _ in range(7):
                            slider.send_keys(Keys.ARROW_RIGHT)
                        value = 7
                    else:
                        value = {"reference": 100, "lp4k": 60 + n, "anchor35": 25, "anchor_noise": 10 + n}[
                            c["stimulus"]
                        ]
                        driver.execute_script(SET_SLIDER, slider, value)
                    assert driver.find_element(By.ID, f"value-{c['id']}").text == str(value)
                    expected[(trial["id"], c["stimulus"])] = value
                if n == 0:
                    driver.find_element(By.ID, "comment").send_keys("first trial")
                button = driver.find_element(By.ID, "next")
                assert button.text == ("Submit" if n + 1 == len(test["trials"]) else "Next")
                button.click()
            state("submitted")
            assert "saved" in driver.find_element(By.ID, "done-msg").text
            severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert severe == []
    finally:
        driver.quit()
    rows = read_csv(fresh_dir)
    assert rows[0] == HEADER
    records = [dict(zip(HEADER, r, strict=True)) for r in rows[1:]]
    assert len(records) == len(expected) == 2 * 4
    assert {(r["trial_id"], r["rating_stimulus"]): int(r["rating_score"]) for r in records} == expected
    assert len({r["session_uuid"] for r in records}) == 1 and uuid.UUID(records[0]["session_uuid"])
    assert all(r["session_test_id"] == "listening" for r in records)
    assert all(r["alias"] == "listener one" and r["experience"] == "expert" for r in records)
    assert all(int(r["rating_time"]) > 0 for r in records)
    first = test["trials"][0]["id"]
    assert {r["rating_comment"] for r in records if r["trial_id"] == first} == {"first trial"}
    assert np.all([r["rating_comment"] == "" for r in records if r["trial_id"] != first])
