"""Fixtures for the dashboard's tests: a real fleet (broker, agent, luzia-web processes) and
Debian's chromium driven by playwright. Browser tests skip, with the reason, where chromium
or playwright is missing (`make test` installs chromium when it runs as root with apt-get).
Screenshots go to test-artifacts/web/ (git-ignored)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.fleet import PY, LocalFleet
from tests.helpers import wait_for

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
# as root chromium needs --no-sandbox; the rest keeps it from reaching out to the network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]

SLOW = "import time; print('a slow job starts', flush=True); time.sleep(300)"
WEB_FLEET = """
[broker]
heartbeat_interval = 0.2
spool_sweep = 0.2
[scheduler]
cpu_ceiling = 1.0
memory_ceiling = 1.0
[web]
port = 0
[agent]
slots = 2
runner = "subprocess"
commands = {{ reasoning = ["{py}", "-c", "{slow}"] }}
"""


class WebFleet(LocalFleet):
    """A LocalFleet with luzia-web: `url` is its address, `login` the sign-in URL."""

    url = ""
    login = ""

    def start_web(self) -> None:
        self.start("web", [PY, "-m", "luzia.web"])
        url_file = self.home / "run" / "web.url"
        wait_for(url_file.exists, 60, interval=0.05, message="luzia-web listens")
        self.url = url_file.read_text().strip()
        out = self.cli("web", "url")
        assert out.returncode == 0, out.stderr.decode()
        self.login = out.stdout.decode().strip()
        assert self.login.startswith(self.url + "/?token=")


@pytest.fixture
def web_fleet(short_tmp):
    fleet = WebFleet(short_tmp / "f", WEB_FLEET.format(py=PY, slow=SLOW), env={"LUZIA_DEMO_SECONDS": "2"})
    try:
        fleet.start_broker()
        fleet.start_agent("gpu1")
        fleet.start_web()
        wait_for(lambda: "gpu1" in fleet.live_agents(), 30, message="agent gpu1 live")
        yield fleet
    finally:
        fleet.close()


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium (make test does, as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    profile = tempfile.mkdtemp(prefix="lzchrome")
    with sync_playwright() as pw:
        # a fresh profile each run (launch_persistent_context: its --user-data-dir)
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    """A fresh page. A test asks for it after its fleet (`web_fleet, page`): fixtures end in
    reverse, so the page and its live streams close before luzia-web stops, which would
    otherwise give them its shutdown grace (2 s) in every teardown."""
    browser.clear_cookies()
    page = browser.new_page()
    page.set_default_timeout(30_000)
    yield page
    page.close()


def shot(page, name: str) -> Path:
    """Save a screenshot of the whole page under test-artifacts/web/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
