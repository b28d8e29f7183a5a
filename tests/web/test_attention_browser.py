"""The dashboard shows a job that needs a person (issue 14), in a real browser against a real
fleet whose agent runs the job in tmux on a private socket: the list's flag, the job page's
box with the pane's last lines, and the box gone, live, once `luzia reply` answered."""

from __future__ import annotations

import pytest

from tests.e2e.test_attention import ASKER
from tests.helpers import wait_for
from tests.web.conftest import WEB_FLEET, WebFleet, shot
from tests.web.test_browser import row, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

# the dashboard tests' fleet (broker, scheduler, web), its agent running jobs in tmux
CONFIG = WEB_FLEET.split("[agent]")[0] + """
[attention]
check = 0.2
[interactive]
send_delay = 0.05
[agent]
name = "gpu1"
runner = "tmux"
tmux_socket = "{socket}"
{asker}
"""


@pytest.mark.long
def test_the_dashboard_flags_a_job_that_needs_input_and_shows_its_screen(page, short_tmp,
                                                                         tmux_socket):
    fleet = WebFleet(short_tmp / "f", CONFIG.format(socket=tmux_socket, asker=ASKER))
    try:
        fleet.start_broker()
        fleet.start_agent("gpu1")
        fleet.start_web()
        job_id = fleet.submit("demo", "clean the build")
        wait_for(lambda: (fleet.job(job_id) or {}).get("needs_input"), 60,
                 message="the job needs input")
        sign_in(page, fleet, "/jobs")
        row(page, job_id).locator(".flag.attention", has_text="needs input").wait_for()
        page.goto(f"{fleet.url}/jobs/{job_id}")
        box = page.locator("section.attention")
        box.get_by_role("heading", name="Waiting for you").wait_for()
        assert "Proceed? (y/n)" in box.locator("pre.pane").inner_text()
        assert f"luzia reply {job_id}" in box.inner_text()
        shot(page, "job-needs-input")
        assert fleet.cli("reply", job_id, "y").returncode == 0
        box.wait_for(state="detached", timeout=60_000)         # the live part followed
        assert page.locator("h1 .flag.attention").count() == 0
    finally:
        page.goto("about:blank")    # its live streams end before luzia-web (tests/web/conftest.py)
        fleet.close()
