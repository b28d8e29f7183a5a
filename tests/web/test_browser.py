"""The dashboard in a real browser (Debian's chromium through playwright) against a real
fleet: broker, agent and luzia-web processes, jobs submitted with the real CLI."""

from __future__ import annotations

import re

import pytest

from tests.helpers import wait_for
from tests.web.conftest import shot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def sign_in(page, fleet, path: str = "/") -> None:
    page.goto(fleet.login.replace("/?", f"{path}?", 1))
    assert "token=" not in page.url          # the token moved into a cookie
    page.wait_for_selector("header.top")


def row(page, job_id: str):
    return page.locator("tr", has=page.locator(f"a[href='/jobs/{job_id}']"))


def test_a_job_from_the_cli_appears_and_completes_without_a_reload(web_fleet, page):
    sign_in(page, web_fleet, "/jobs")
    page.evaluate("window.__no_reload = 'still here'")
    wait_for(lambda: "on" in (page.get_attribute("#conn", "class") or ""), 30,
             message="the page's event stream is open")
    job_id = web_fleet.submit("demo", "hello from the browser test")
    row(page, job_id).wait_for(timeout=30_000)
    page.locator(f"tr:has(a[href='/jobs/{job_id}']) .s-completed").wait_for(timeout=60_000)
    assert page.evaluate("window.__no_reload") == "still here"
    shot(page, "jobs")
    # the filters are the broker's: a search for the task finds it, another finds nothing
    page.fill("input[name=q]", "hello from the browser")
    page.click("form.filters button")
    row(page, job_id).wait_for()
    page.fill("input[name=q]", "no such task anywhere")
    page.click("form.filters button")
    page.get_by_text("No jobs match.").wait_for()


def test_the_job_page_shows_its_live_log(web_fleet, page):
    job_id = web_fleet.submit("demo", "show me your log")
    sign_in(page, web_fleet, f"/jobs/{job_id}")
    page.locator("#log", has_text="step 8/8").wait_for(timeout=60_000)
    page.locator("#log", has_text="demo agent: done").wait_for(timeout=30_000)
    page.locator("h1 .s-completed").wait_for(timeout=30_000)        # the live part followed
    assert page.locator("#log-state").inner_text().startswith("ended")
    page.get_by_role("heading", name="Timings").wait_for()
    assert page.locator("table.kv", has_text="started").count() >= 1
    shot(page, "job")


def test_cancel_works_with_the_token_and_is_refused_without(web_fleet, page, browser):
    job_id = web_fleet.submit("demo", "think slowly", "--type", "reasoning")
    wait_for(lambda: web_fleet.state(job_id) == "running", 60, message="the slow job runs")
    sign_in(page, web_fleet, f"/jobs/{job_id}")
    page.locator("#log", has_text="a slow job starts").wait_for(timeout=30_000)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    cancel_url = f"{web_fleet.url}/jobs/{job_id}/cancel"

    # no token at all: 401, in another browser context without the cookie
    anonymous = browser.browser.new_context() if browser.browser else None
    request = anonymous.request if anonymous else page.context.request
    if anonymous is None:
        page.context.clear_cookies()
    answer = request.post(cancel_url, form={"csrf": csrf})
    assert answer.status == 401
    if anonymous is not None:
        anonymous.close()
    else:
        sign_in(page, web_fleet, f"/jobs/{job_id}")

    # the cookie but no CSRF token, or a wrong one, or another site's Origin: 403
    assert page.request.post(cancel_url, form={}).status == 403
    assert page.request.post(cancel_url, form={"csrf": "0" * 32}).status == 403
    assert page.request.post(cancel_url, form={"csrf": csrf},
                             headers={"Origin": "http://evil.example"}).status == 403
    # the button without its CSRF field, in the page itself: refused, the job still runs
    page.evaluate("document.querySelector('form[action$=\"/cancel\"] input[name=csrf]').remove()")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button.cancel")
    page.get_by_text("CSRF token is missing").wait_for()
    assert web_fleet.state(job_id) == "running"
    shot(page, "refused")

    # the real button: cancelled
    page.goto(f"{web_fleet.url}/jobs/{job_id}")
    page.click("button.cancel")
    page.locator(".flash", has_text="cancel").wait_for()
    wait_for(lambda: web_fleet.state(job_id) == "killed", 60, message="the job is killed")
    page.locator("h1 .s-killed").wait_for(timeout=30_000)
    assert page.locator("button.retry").count() == 1          # killed: it may be retried
    shot(page, "cancelled")


@pytest.mark.long
def test_fleet_history_and_stats_pages(web_fleet, page):
    done = web_fleet.submit("demo", "a finished job for history")
    failed = web_fleet.submit("demo", "FAIL_DEMO for the charts")
    wait_for(lambda: web_fleet.state(done) == "completed" and web_fleet.state(failed) == "failed",
             60, message="two jobs ended")
    slow = web_fleet.submit("demo", "still thinking", "--type", "reasoning")
    wait_for(lambda: web_fleet.state(slow) == "running", 60, message="the slow job runs")
    sign_in(page, web_fleet, "/")
    page.get_by_text("gpu1").first.wait_for()
    page.locator(".health.h-ok").first.wait_for()
    row(page, slow).wait_for()                                 # the running jobs
    shot(page, "fleet")
    page.click("nav >> text=History")
    row(page, done).wait_for()
    row(page, failed).wait_for()
    assert row(page, slow).count() == 0                        # not finished: not history
    shot(page, "history")
    page.click("nav >> text=Stats")
    page.locator("svg.chart").first.wait_for()
    assert re.search(r"\b2\b", page.locator("p.big").inner_text())
    shot(page, "stats")
    page.set_viewport_size({"width": 390, "height": 844})     # a phone
    page.goto(f"{web_fleet.url}/jobs")
    row(page, done).wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    shot(page, "jobs-phone")
    page.goto(f"{web_fleet.url}/jobs/{slow}")
    shot(page, "job-phone")


def test_without_a_token_every_page_says_how_to_get_one(web_fleet, page):
    for path in ("/", "/jobs", "/history", "/stats"):
        answer = page.goto(web_fleet.url + path)
        assert answer.status == 401
        page.get_by_text("luzia web url").first.wait_for()
    answer = page.goto(web_fleet.url + "/?token=not-the-token")
    assert answer.status == 401
    shot(page, "signed-out")
