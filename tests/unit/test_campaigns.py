from __future__ import annotations

import pytest

from producers.campaigns import Campaign, CampaignError, build_requests, read_audience
from schemas.events import message_id_for

CAMPAIGN = Campaign("spring", "news", "News <n@example.com>", "Hi $first_name", "<p>$first_name</p>", "Hi $first_name")


def test_one_request_per_valid_distinct_recipient() -> None:
    rows = list(
        read_audience("email,first_name\nA@Example.org,Ann\na@example.org,Dup\nnope,X\nb@example.org,<b>\n", "csv")
    )
    intake = build_requests(CAMPAIGN, rows)
    assert [r.recipient for r in intake.requests] == ["a@example.org", "b@example.org"]
    assert intake.duplicates == 1 and intake.rejected[0][0] == 3
    assert intake.requests[0].subject == "Hi Ann"
    assert intake.requests[1].html == "<p>&lt;b&gt;</p>"  # variables are escaped in HTML
    assert intake.requests[0].message_id == message_id_for("spring", "a@example.org")


def test_message_ids_are_stable_across_runs() -> None:
    rows = [{"email": "x@example.org"}]
    assert (
        build_requests(CAMPAIGN, rows).requests[0].message_id == build_requests(CAMPAIGN, rows).requests[0].message_id
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "Hi\r\nBcc: x@example.org"},
        {"from_address": "a@example.com\nBcc: b"},
        {"campaign_id": "bad id!"},
        {"subject": " "},
        {"html": "", "text": ""},
    ],
)
def test_bad_campaigns_are_refused(kwargs: dict[str, str]) -> None:
    base = dict(campaign_id="c", list_id="l", from_address="a@example.com", subject="s", html="h", text="t")
    with pytest.raises(CampaignError):
        Campaign(**{**base, **kwargs})  # type: ignore[arg-type]


def test_header_injection_through_variables_is_refused() -> None:
    intake = build_requests(CAMPAIGN, [{"email": "a@example.org", "first_name": "Ann\r\nBcc: victim@example.org"}])
    assert intake.requests == [] and "line break" in intake.rejected[0][1]


def test_audience_formats() -> None:
    assert list(read_audience('{"email": "a@example.org", "n": 1}\n\n', "jsonl")) == [
        {"email": "a@example.org", "n": "1"}
    ]
    with pytest.raises(CampaignError, match="email"):
        list(read_audience("name\nx\n", "csv"))
    with pytest.raises(CampaignError, match="line 1"):
        list(read_audience("{oops", "jsonl"))
