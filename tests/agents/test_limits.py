"""The reset-time parser against the messages agents really print (Claude Code's older and
newer usage-limit messages, Codex's, API 429s), with their time zones; and detection."""

from __future__ import annotations

import datetime as dt

import pytest

from luzia.agents.limits import detect, reset_time

UTC = dt.UTC
# 2025-06-14 13:57 in New York (EDT, UTC-4): when anthropics/claude-code#2087 was reported
NOW = dt.datetime(2025, 6, 14, 17, 57, tzinfo=UTC).timestamp()


def at(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


CASES = [
    # Claude Code: the older form carries the reset as unix time ...
    ("Claude AI usage limit reached|1749924000", at(2025, 6, 14, 18, 0)),
    # ... which is the same instant as its readable form, in the zone it names (UTC-5)
    ("Claude usage limit reached. Your limit will reset at 1pm (Etc/GMT+5).", at(2025, 6, 14, 18, 0)),
    ("⎿  Claude usage limit reached. Your limit will reset at 9am (America/Chicago).",
     at(2025, 6, 15, 14, 0)),                               # 9am CDT tomorrow
    ("Claude usage limit reached. Your limit will reset at 6:30pm (Asia/Kolkata)",
     at(2025, 6, 15, 13, 0)),                               # 18:30 IST = 13:00 UTC, next one
    # the newer forms
    ("You've hit your limit · resets 10pm (America/New_York)", at(2025, 6, 15, 2, 0)),
    ("You've hit your session limit · resets 8:30pm (Asia/Tokyo)", at(2025, 6, 15, 11, 30)),
    ("5-hour limit reached ∙ resets 3pm (Europe/Berlin)", at(2025, 6, 15, 13, 0)),
    ("5-hour limit reached ∙ resets 8pm (Europe/Berlin)", at(2025, 6, 14, 18, 0)),  # still today
    ("Claude usage limit reached · resets at 15:00", at(2025, 6, 15, 15, 0)),       # host time (UTC here)
    ("limit reached · resets at 18:30 UTC", at(2025, 6, 14, 18, 30)),
    ("You've hit your weekly limit · resets Jun 19, 5pm (America/Los_Angeles)",
     at(2025, 6, 20, 0, 0)),
    # Codex
    ("■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try "
     "again in 5 days 22 hours 11 minutes.", NOW + ((5 * 24 + 22) * 60 + 11) * 60),
    ("You've hit your usage limit. Upgrade to Plus to continue using Codex "
     "(https://chatgpt.com/explore/plus), or try again at Jul 5th, 2026 8:19 PM.",
     at(2026, 7, 5, 20, 19)),
    ('{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached",'
     '"plan_type":"free","resets_at":1775317531,"resets_in_seconds":602705}}', 1775317531.0),
    # none named
    ("Error: 429 {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\"}}", None),
    ("You've hit your usage limit.", None),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_reset_times_of_real_messages(text, expected):
    assert reset_time(text, NOW, UTC) == expected


def test_a_clock_time_without_a_zone_is_this_hosts():
    berlin = dt.timezone(dt.timedelta(hours=2))     # CEST
    assert reset_time("5-hour limit reached ∙ resets 9pm", NOW, berlin) == at(2025, 6, 14, 19, 0)


def test_a_reset_wrapped_onto_the_next_line_is_found():
    lines = ["Claude usage limit reached. Your limit will reset", "     at 3pm (America/Santiago)."]
    found = detect(lines, NOW)
    assert found is not None and found.kind == "usage"
    assert found.until == at(2025, 6, 14, 19, 0)        # 3pm Santiago (UTC-4)


def test_detection_kinds_and_fallbacks():
    usage = detect(["ok", "You've hit your usage limit."], NOW, wait=600)
    assert usage is not None and (usage.kind, usage.until) == ("usage", NOW + 600)
    rate = detect(['Error: 429 {"type":"error","error":{"type":"rate_limit_error"}}'], NOW,
                  rate_wait=60)
    assert rate is not None and (rate.kind, rate.until) == ("rate", NOW + 60)
    assert detect(["tests: 3 failed", "implemented the rate limiter"], NOW) is None
    custom = detect(["quota exhausted for today"], NOW, wait=5, extra=[r"quota exhausted"])
    assert custom is not None and custom.until == NOW + 5
    past = detect(["Claude AI usage limit reached|1749900000"], NOW)    # a reset gone by
    assert past is not None and past.until == NOW + 1
