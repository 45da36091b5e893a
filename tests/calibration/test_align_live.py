"""``expokit align live``: the analysis loop, the local page, the browser and the terminal mode.

The live view comes from :class:`~expokit.calibration.live.SyntheticPreviewSource` (a generated
scene, the test view misaligned by a known homography, mirrored, 2 EV darker, JPEG), so
nothing here depends on a camera backend's ``capture_preview``.
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from expokit.calibration.alignment_check import (
    AlignmentCheckConfig,
    AlignmentThresholds,
    measure_homography,
)
from expokit.calibration.live import (
    LiveAnalyzer,
    LiveConfig,
    LiveResult,
    LiveState,
    RigPreviewSource,
    SyntheticPreviewSource,
    format_line,
    run_live,
)
from expokit.calibration.live_page import LiveServer
from expokit.cli import cli
from expokit.core.errors import ExpokitError

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SIZE = (640, 426)
MISALIGNED: dict[str, Any] = {"roll_deg": 0.8, "scale": 1.02, "shift": (6.0, -4.0)}


def live_config(**kwargs: Any) -> LiveConfig:
    check = AlignmentCheckConfig(thresholds=AlignmentThresholds(expected_ev=-2.0))
    return LiveConfig(check=check, **kwargs)


def run_pairs(source: SyntheticPreviewSource, count: int, **kwargs: Any) -> list[LiveResult]:
    results: list[LiveResult] = []
    analyzer = LiveAnalyzer(live_config(**kwargs))
    state = LiveState()
    done = run_live(source, analyzer, state, threading.Event(), count, results.append)
    analyzer.close()
    assert done == count and state.latest is results[-1]
    return results


@pytest.fixture(scope="module")
def misaligned_state() -> LiveState:
    source = SyntheticPreviewSource(SIZE, ev=-2.0, **MISALIGNED)
    analyzer = LiveAnalyzer(live_config(full_every=3, background=False))
    state = LiveState()
    run_live(source, analyzer, state, threading.Event(), 3)
    return state


def test_loop_reports_the_known_misalignment() -> None:
    source = SyntheticPreviewSource(SIZE, ev=-2.0, jitter_px=0.2, **MISALIGNED)
    results = run_pairs(source, 6, full_every=4, background=False)
    assert [r.mode for r in results] == ["full", "track", "track", "track", "full", "track"]
    truth = measure_homography(np.linalg.inv(source.map), SIZE, SIZE)
    for r in results:
        assert r.flip == "horizontal"
        assert r.roll_deg == pytest.approx(truth[0], abs=0.03)
        assert r.scale_pct == pytest.approx(truth[1], abs=0.05)
        assert r.shift_px == pytest.approx(truth[2], abs=0.4)  # plus the scene's jitter
        assert r.ev_offset == pytest.approx(-2.0, abs=0.1)
        assert r.verdict == "adjust"
        assert any("rotate the test body" in a for a in r.advice)
        assert r.latency_ms > 0
    assert all(r.correlation is not None and r.correlation > 0.9 for r in results[1:4])


def test_aligned_pair_is_ready() -> None:
    results = run_pairs(SyntheticPreviewSource(SIZE, ev=-2.0, seed=3), 4, full_every=10)
    assert [r.verdict for r in results] == ["ready"] * 4, results[-1].advice
    assert results[-1].coverage > 0.99


def test_tracking_follows_and_a_lost_track_falls_back_to_a_full_check() -> None:
    analyzer = LiveAnalyzer(live_config(full_every=50))
    first = SyntheticPreviewSource(SIZE, ev=-2.0, **MISALIGNED).read_pair()
    assert analyzer.analyze(*first).mode == "full"
    turned = SyntheticPreviewSource(SIZE, ev=-2.0, roll_deg=-3.0, seed=7).read_pair()
    followed = analyzer.analyze(*turned)  # a 3.8 deg turn: ECC follows from the last estimate
    assert followed.mode == "track" and followed.roll_deg == pytest.approx(-3.0, abs=0.05)
    unrelated = (turned[0], first[1])  # the two bodies see different scenes: lost
    with pytest.raises(ExpokitError):
        analyzer.analyze(*unrelated)
    assert analyzer.analyze(*first).mode == "full"
    with pytest.raises(ExpokitError, match="not a decodable image"):
        analyzer.analyze(b"junk", b"junk")


def test_loop_records_failures_and_goes_on() -> None:
    good = SyntheticPreviewSource(SIZE, ev=-2.0, **MISALIGNED)
    calls = {"n": 0}
    errors: list[str] = []

    class Flaky:
        def read_pair(self) -> tuple[bytes, bytes]:
            calls["n"] += 1
            return (b"junk", b"junk") if calls["n"] == 1 else good.read_pair()

    state = LiveState()
    analyzer = LiveAnalyzer(live_config(full_every=10))
    done = run_live(Flaky(), analyzer, state, threading.Event(), 2, on_error=errors.append)
    analyzer.close()
    assert done == 2 and calls["n"] == 3 and len(errors) == 1
    assert state.snapshot()["error"] is None  # cleared by the next good analysis


def test_history_and_images(misaligned_state: LiveState) -> None:
    snap = misaligned_state.snapshot()
    assert len(snap["history"]) == 3 and snap["latest"]["verdict"] == "adjust"
    assert snap["pairs_per_s"] is not None and snap["pairs_per_s"] > 0
    for name in ("reference", "test", "blend", "difference", "checker"):
        data = misaligned_state.image(name)
        assert data is not None and data[:2] == b"\xff\xd8"
    assert LiveState().image("blend") is None


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def test_server_serves_page_state_and_images(misaligned_state: LiveState) -> None:
    with LiveServer(misaligned_state) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, body, kind = get(server.url)
        page = body.decode("utf-8")
        assert status == 200 and kind.startswith("text/html")
        assert "ADJUST" in page and "<script" in page
        assert "http://" not in page and "https://" not in page  # nothing from the internet
        status, body, kind = get(server.url + "state.json")
        state = json.loads(body)
        assert status == 200 and kind == "application/json"
        assert state["latest"]["roll_deg"] == pytest.approx(0.8, abs=0.05)
        status, body, kind = get(server.url + "image/checker.jpg?n=2")
        assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
        assert get(server.url + "image/nope.jpg")[0] == 404
        assert get(server.url + "etc/passwd")[0] == 404
    with pytest.raises(OSError):  # stopped: the socket is closed
        urllib.request.urlopen(server.url, timeout=2)


def test_server_before_the_first_analysis() -> None:
    with LiveServer(LiveState()) as server:
        assert "waiting for the cameras" in get(server.url)[1].decode()
        assert json.loads(get(server.url + "state.json")[1])["latest"] is None
        assert get(server.url + "image/blend.jpg")[0] == 503
    with pytest.raises(ExpokitError, match="loopback"):
        LiveServer(LiveState(), host="0.0.0.0")


def test_headless_chromium_renders_the_page(misaligned_state: LiveState, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    misaligned_state.can_calibrate = True
    with LiveServer(misaligned_state) as server:
        command = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=2000",
            "--dump-dom",
            server.url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    dom = result.stdout
    assert result.returncode == 0 and "</html>" in dom, result.stderr[-2000:]
    assert 'data-live-ready="1"' in dom  # the inline script ran without error
    assert 'class="adjust"' in dom and "ADJUST (" in dom
    assert '<tr data-name="roll">' in dom and "+0.8" in dom
    assert 'class="light r"' in dom and 'class="light g"' in dom
    assert '<svg class="spark"' in dom
    assert 'src="/image/blend.jpg?n=2"' in dom
    assert "rotate the test body" in dom
    # The calibrate key shows as a button (no ``hidden``), and how to check parallax.
    assert '<button id="calibrate">Shoot calibration stills' in dom
    assert "hold the ChArUco board near the rig" in dom
    assert '<tr data-name="parallax"><td>parallax</td><td class="v">cannot tell' in dom
    misaligned_state.can_calibrate = False


def test_format_line_is_plain(misaligned_state: LiveState) -> None:
    assert misaligned_state.latest is not None
    line = format_line(misaligned_state.latest, 7.5)
    assert line.startswith("#2 ") and "ADJUST" in line and "roll +0.8" in line
    assert "7.5 pairs/s" in line and "\r" not in line and "\x1b" not in line


class _Body:
    def __init__(self, frame: bytes) -> None:
        self.frame = frame

    def capture_preview(self) -> bytes:
        return self.frame


class _FakeRig:
    def __init__(self, cameras: dict[str, Any]) -> None:
        self.cameras = cameras


def test_rig_preview_source_reads_both_roles() -> None:
    source = RigPreviewSource(_FakeRig({"reference": _Body(b"r"), "test": _Body(b"t")}))
    assert source.read_pair() == (b"r", b"t")
    with pytest.raises(ExpokitError, match="no live view"):
        RigPreviewSource(_FakeRig({"reference": _Body(b"r"), "test": object()}))


def test_cli_terminal_mode_prints_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    import expokit.calibration.live as live

    synthetic = SyntheticPreviewSource(SIZE, ev=-2.0, **MISALIGNED)
    opened: list[Any] = []

    def stand_in(rig: Any) -> SyntheticPreviewSource:
        opened.append(sorted(rig.cameras))
        return synthetic

    monkeypatch.setattr(live, "RigPreviewSource", stand_in)
    rig = REPO / "examples" / "rig_fake.toml"
    result = CliRunner().invoke(
        cli, ["align", "live", "--rig", str(rig), "--terminal", "--pairs", "3"]
    )
    assert result.exit_code == 0, result.output
    assert opened == [["reference", "test"]]  # both roles opened by serial
    lines = [line for line in result.output.splitlines() if line.startswith("#")]
    assert "type c and Enter" in result.output  # the terminal's calibration key
    assert len(lines) == 3 and all(line.startswith(f"#{i} ") for i, line in enumerate(lines))
    assert all("ADJUST" in line and "\r" not in line for line in lines)


def test_cli_refuses_a_missing_rig(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["align", "live", "--rig", str(tmp_path / "no.toml")])
    assert result.exit_code == 1 and "no such rig config file" in result.output
