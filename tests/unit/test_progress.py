"""Progress off a terminal: a line when work starts, one every few seconds, one where it ended; never on stdout."""

from __future__ import annotations

import pytest

from mailpulse import progress as progress_module
from mailpulse.progress import Progress


def test_progress_in_a_log_tells_the_start_the_pace_and_the_end(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    with Progress("queueing autumn", 1000, "request") as progress:
        for _ in range(10):
            clock[0] += 1.0
            progress.update(100, refused=2)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "  queueing autumn: 100/1000 requests (10 %), 100/s, refused 2"
    assert lines[-1] == "  queueing autumn: 1000/1000 requests (100 %), 100/s, refused 2"
    assert len(lines) == 3  # at 1 s, 6 s (five seconds later) and the end: a line every few seconds, no more


def test_work_done_in_one_step_is_told_once(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress("reading mailpulse.suppression", 5, "record") as progress:
        progress.update(5)
    assert len(capsys.readouterr().err.splitlines()) == 1
