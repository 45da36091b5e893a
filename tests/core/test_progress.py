"""Progress output: plain timed lines off a terminal, a tqdm bar on one, nothing when off."""

from __future__ import annotations

import io
import re

import pytest

from expokit.core.progress import ENV_VAR, choose_mode, format_duration, show_progress


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TerminalStream(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_log_stream_gets_timed_lines_with_rate_and_eta_and_a_done_line() -> None:
    clock, stream = FakeClock(), io.StringIO()
    bar = show_progress(total=100, desc="validate", unit="file", stream=stream, clock=clock)
    for _ in range(100):
        clock.now += 0.5  # 2 files a second
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    # The first item, then one line per 10 s (20 files), then the end.
    assert lines[0] == "validate: 1/100 file (2.0 file/s, ETA 0:50)"
    assert lines[1] == "validate: 21/100 file (2.0 file/s, ETA 0:40)"
    assert lines[-2] == "validate: 81/100 file (2.0 file/s, ETA 0:10)"
    assert lines[-1] == "validate: done, 100 file in 0:50 (2.0 file/s)"
    assert len(lines) == 6


def test_postfix_unknown_total_and_initial_count() -> None:
    clock, stream = FakeClock(), io.StringIO()
    with show_progress(desc="eval", unit="pair", stream=stream, clock=clock) as bar:
        clock.now += 4
        bar.update(2)
    assert stream.getvalue().splitlines() == [
        "eval: 2 pair (0.5 pair/s)",
        "eval: done, 2 pair in 0:04 (0.5 pair/s)",
    ]
    stream = io.StringIO()
    bar = show_progress(
        total=10, initial=4, desc="train uec", unit="step", stream=stream, clock=clock
    )
    bar.set_postfix_str("loss=0.0123")
    clock.now += 2
    bar.update(1)
    bar.close()
    first = stream.getvalue().splitlines()[0]
    # The rate counts this run's steps only (1 in 2 s), the position includes the resume.
    assert first == "train uec: 5/10 step (0.5 step/s, ETA 0:10) loss=0.0123"


def test_iterating_counts_every_item_and_closes() -> None:
    clock, stream = FakeClock(), io.StringIO()
    seen = []
    for item in show_progress(
        ["a", "b", "c"], desc="export", unit="scene", stream=stream, clock=clock, interval_s=0
    ):
        clock.now += 60
        seen.append(item)
    assert seen == ["a", "b", "c"]
    lines = stream.getvalue().splitlines()
    assert lines[:3] == [f"export: {n}/3 scene (0.017 scene/s, ETA {eta})" for n, eta in
                         ((1, "2:00"), (2, "1:00"), (3, "0:00"))]  # fmt: skip
    assert lines[3] == "export: done, 3 scene in 3:00 (0.017 scene/s)"


def test_terminal_stream_gets_a_tqdm_bar() -> None:
    stream = TerminalStream()
    for _ in show_progress(range(3), desc="report", unit="pair", stream=stream):
        pass
    text = stream.getvalue()
    assert "\r" in text and re.search(r"report: 100%\|.*\| 3/3", text), text


def test_disabled_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    for stream in (io.StringIO(), TerminalStream()):
        with show_progress(
            total=2, desc="x", unit="it", enabled=False, stream=stream, interval_s=0
        ) as bar:
            bar.set_postfix_str("loss=1")
            bar.update(2)
        assert stream.getvalue() == ""
    assert capsys.readouterr().err == ""


def test_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    plain, terminal = io.StringIO(), TerminalStream()
    monkeypatch.setenv(ENV_VAR, "plain")
    assert choose_mode(True, terminal) == "plain"
    monkeypatch.setenv(ENV_VAR, "bar")
    assert choose_mode(True, plain) == "bar"
    monkeypatch.setenv(ENV_VAR, "off")
    assert choose_mode(True, terminal) == "off"
    monkeypatch.setenv(ENV_VAR, "bar")
    assert choose_mode(False, terminal) == "off"  # --no-progress always wins
    monkeypatch.setenv(ENV_VAR, "whatever")
    assert (choose_mode(True, plain), choose_mode(True, terminal)) == ("plain", "bar")


def test_write_prints_a_plain_line_off_a_terminal() -> None:
    stream, out = io.StringIO(), io.StringIO()
    with show_progress(total=1, desc="x", unit="it", stream=stream) as bar:
        bar.write("checkpoint: step 2", file=out)
    assert out.getvalue() == "checkpoint: step 2\n"


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59.4, 61, 3599, 3600, 7384)] == [
        "0:00", "0:59", "1:01", "59:59", "1:00:00", "2:03:04",
    ]  # fmt: skip
