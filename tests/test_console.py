"""The browser console (``GET /console``) in headless Chromium against a real daemon.

One daemon with auth on, started with no ``[console]`` section (the default: off, a JSON
404) and switched on by a reload (SIGHUP), as an operator would.  The page is driven as a
user would: type, pick, enter a token, click; the audio element must really play the result.
The token must be kept nowhere: not in storage, cookies, the URL, the daemon's log or audit.
Skipped only where chromium or chromedriver is missing (``make test-packages`` installs them).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.daemon import REPO, DaemonProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SECRET = b"console-test-secret-0123456789abcdef0123"
TEXT = "您好，欢迎致电。"
WAIT_S = 60.0  # every wait in a browser: a busy 2-core runner is slow, never unbounded

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"{CHROMIUM} / {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)",
)


def token(secret: bytes = SECRET, **over: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": "console-user",
        "scope": "tts:synthesize",
        "iss": "sambertd",
        "aud": "sambertd",
        "iat": now,
        "exp": now + 600,
        **over,
    }
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "hs256"})


def write_config(path: Path, tmp: Path, console: bool | None) -> None:
    lines = [
        "[auth]",
        "enabled = true",
        f"hs256_secret_file = {json.dumps(str(tmp / 'secret'))}",
        "rate_per_ip = 0",
        "rate_per_subject = 0",
        "[audit]",
        f"directory = {json.dumps(str(tmp / 'audit'))}",
    ]
    if console is not None:
        lines += ["[console]", f"enabled = {json.dumps(console)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class Console:
    daemon: DaemonProcess
    off: dict[str, tuple[int, dict[str, str], bytes]]  # what /console* answered while off

    def url(self, path: str = "/console") -> str:
        return f"http://{self.daemon.host}:{self.daemon.port}{path}"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    (tmp / "secret").write_bytes(SECRET)
    config = tmp / "sambertd.toml"
    write_config(config, tmp, console=None)
    d = DaemonProcess(tmp, config=config)
    d.audit_dir = tmp / "audit"
    try:
        d.wait_ready()
        off = {p: d.get(p) for p in ("/console", "/console/console.js")}
        write_config(config, tmp, console=True)
        d.signal(signal.SIGHUP)
        d.wait_until(lambda: d.get("/console")[0] == 200, timeout=WAIT_S)
        yield Console(d, off)
    finally:
        assert d.stop() == 0, d.log()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container: no user namespace for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
        "--window-size=1000,1100",
        "--lang=zh-CN",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait(what: str, predicate: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """Poll ``predicate`` until it returns something truthy, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def open_console(browser: Any, console: Console) -> None:
    browser.get(console.url())
    wait(
        "the voices",
        lambda: browser.execute_script("return document.getElementById('voice').options.length"),
    )


def synthesize(browser: Any, text: str, bearer: str | None) -> None:
    from selenium.webdriver.common.by import By

    area = browser.find_element(By.ID, "text")
    area.clear()
    if text:
        area.send_keys(text)
    field = browser.find_element(By.ID, "token")
    field.clear()
    if bearer:
        field.send_keys(bearer)
    browser.find_element(By.ID, "synthesize").click()


def error_text(browser: Any) -> str:
    return str(
        browser.execute_script(
            "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent"
        )
    )


def artifacts() -> Path:
    root = Path(os.environ.get("SAMBERTD_ARTIFACTS") or REPO / "tests" / "artifacts")
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_console_is_off_by_default_as_a_json_404(console: Console) -> None:
    for path, (status, headers, body) in console.off.items():
        assert status == 404, (path, body)
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"]["code"] == "not_found"


def test_page_and_files_carry_the_security_headers(console: Console) -> None:
    d = console.daemon
    for path, kind in (
        ("/console", "text/html"),
        ("/console/console.css", "text/css"),
        ("/console/console.js", "text/javascript"),
    ):
        status, headers, _ = d.get(path)
        assert status == 200 and headers["content-type"].startswith(kind), path
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "media-src 'self' blob:" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
    for path in ("/console/sambertd.toml", "/console/__init__.py", "/console/..%2f..%2fREADME.md"):
        status, _, body = d.get(path)
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found", path


def test_synthesize_and_play_with_a_token_that_is_kept_nowhere(
    console: Console, browser: Any
) -> None:
    good = token()
    started = time.monotonic()
    open_console(browser, console)
    assert "sambertd" in browser.title
    voices = browser.execute_script(
        "return Array.from(document.getElementById('voice').options, o => o.value)"
    )
    assert "baker" in voices
    emotions = browser.execute_script("return document.getElementById('emotion').options.length")
    assert emotions >= 1
    formats = browser.execute_script(
        "return Array.from(document.getElementById('format').options, o => o.value)"
    )
    assert {"wav", "mp3"} <= set(formats)

    synthesize(browser, TEXT, good)
    src = wait(
        "the audio's blob URL",
        lambda: browser.execute_script("return document.getElementById('audio').src"),
    )
    assert src.startswith("blob:"), src
    assert error_text(browser) == ""
    size = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById('audio').src).then(r => r.blob())"
        ".then(b => done(b.size), e => done(String(e)));"
    )
    assert isinstance(size, int) and size > 44, size
    browser.execute_script("document.getElementById('audio').play()")
    wait(
        "the audio to play",
        lambda: browser.execute_script(
            "const a = document.getElementById('audio');return a.duration > 0 && a.currentTime > 0"
        ),
    )
    info = browser.execute_script(
        "return ['duration', 'voice', 'cache'].map("
        "k => document.getElementById('info-' + k).textContent)"
    )
    assert info[0].endswith(" s") and info[1] == "baker" and info[2] in ("miss", "hit"), info
    link = browser.execute_script(
        "const a = document.getElementById('download'); return [a.hidden, a.download, a.href]"
    )
    assert not link[0] and link[1].startswith("sambertd-baker-") and link[1].endswith(".wav")
    assert link[2] == src

    shot = artifacts() / "console.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    stored = browser.execute_script(
        "return [localStorage.length, sessionStorage.length, document.cookie, location.href]"
    )
    assert stored == [0, 0, "", console.url()], stored
    assert good not in browser.page_source  # a password field's value is no attribute
    print(f"console: loaded, synthesized and played in {time.monotonic() - started:.1f} s")
    _assert_not_logged(console.daemon, good)


def test_bad_token_shows_the_401_and_no_audio(console: Console, browser: Any) -> None:
    bad = token(secret=b"not-the-daemon-secret-0123456789abcdef")
    open_console(browser, console)
    synthesize(browser, TEXT, bad)
    message = wait("the error", lambda: error_text(browser))
    assert "HTTP 401" in message and "invalid_token" in message, message
    assert browser.execute_script("return document.getElementById('audio').src") == ""
    synthesize(browser, TEXT, None)
    wait("the missing-token error", lambda: "missing_token" in error_text(browser))
    assert "HTTP 401" in error_text(browser)
    _assert_not_logged(console.daemon, bad)


def test_empty_text_is_refused_by_the_page_and_blank_text_by_the_server(
    console: Console, browser: Any
) -> None:
    open_console(browser, console)
    synthesize(browser, "", token())
    message = wait("the client-side error", lambda: error_text(browser))
    assert "empty_text" in message and "HTTP" not in message, message  # no request made
    synthesize(browser, "   ", token())
    server = wait(
        "the server's error", lambda: "HTTP" in error_text(browser) and error_text(browser)
    )
    assert "HTTP 422" in server or "HTTP 400" in server, server
    assert "request id" in server, server
    assert browser.execute_script("return document.getElementById('audio').src") == ""


def _assert_not_logged(d: DaemonProcess, secret: str) -> None:
    """Neither the daemon's output nor any file of its audit directory holds the token."""
    assert secret not in d.log_path.read_text(errors="replace")
    for path in d.audit_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert any(d.audit_dir.rglob("*.jsonl")), "the API calls were audited"
