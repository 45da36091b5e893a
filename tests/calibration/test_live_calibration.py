"""``expokit align live``'s calibrate key on a fake rig: stills shot into a session,
``calibrate geometry`` run on them, the outcome journaled; the page's button endpoint; the
fake rig's live view at the rig's exposure offset.

The simulated rig knows its answer (``truth.json``: flip and homography), so the calibration
the key produced is checked against it, not only for existing.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from expokit.calibration.homography import image_corners, project
from expokit.calibration.live import LiveState
from expokit.calibration.live_page import LiveServer
from expokit.capture.backends import fake
from expokit.capture.journal import read_journal
from expokit.cli import cli

REPO = Path(__file__).resolve().parents[2]

RIG = """
backend = "fake"
output_root = "sessions"
ev_offset = -2.0
[roles.reference]
serial = "REF-0001"
settings = {{ shutter = "1/125", aperture = "8", iso = "100", image_format = "JPEG Fine" }}
[roles.test]
serial = "TST-0002"
settings = {{ aperture = "8", iso = "100", image_format = "JPEG Fine" }}
{fake}
[[fake.cameras]]
serial = "REF-0001"
live_view_size = [512, 340]
[[fake.cameras]]
serial = "TST-0002"
vendor = "canon"
live_view_size = [512, 340]
"""

SIMULATED = """
[fake]
source = "generated"
[fake.simulation]
size = [640, 480]
seed = 0
"""


@pytest.fixture(autouse=True)
def _clean_bus() -> object:
    yield
    fake.configure_bus([])


def write_rig(tmp_path: Path, table: str = SIMULATED) -> Path:
    path = tmp_path / "rig.toml"
    path.write_text(RIG.format(fake=table))
    return path


def live(rig: Path, pairs: int, keys: str = "", *extra: str) -> Any:
    args = ["align", "live", "--rig", str(rig), "--terminal", "--pairs", str(pairs), *extra]
    return CliRunner().invoke(cli, args, input=keys)


def test_calibrate_key_shoots_calibrates_and_journals(tmp_path: Path) -> None:
    result = live(write_rig(tmp_path), 2, "c\n", "--calibration-pairs", "2")
    assert result.exit_code == 0, result.output
    assert "calibration done: calibrated from 2 pair(s)" in result.output
    (session,) = (tmp_path / "sessions").iterdir()
    events, _ = read_journal(session / "journal.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds.count("planned") == 2 and kinds.count("shot_done") == 2
    assert all(e["kind"] == "calibration" for e in events if e["event"] == "planned")
    (done,) = [e for e in events if e["event"] == "rig_calibrated"]
    assert done["shots"] == [1, 2] and done["method"] == "charuco"
    record = json.loads((session / done["calibration"]).read_text())
    truth = json.loads((session / "truth.json").read_text())
    assert record["flip"] == truth["flip"] == done["flip"]
    # The key's calibration recovers the simulated rig's homography (grid error).
    size = tuple(record["reference_size"])
    grid = image_corners(size)
    found = project(np.array(record["homography"]), grid)
    error = np.linalg.norm(found - project(np.array(truth["homography"]), grid), axis=1)
    assert error.max() < 1.0, error
    assert done["parallax_px"] is None  # a flat board on a flat wall
    assert all(line.startswith("#") for line in result.output.splitlines()[-2:])  # live went on


def test_a_failed_calibration_is_journaled_and_live_goes_on(tmp_path: Path) -> None:
    """Bodies that serve two unrelated photographs as stills: no board, nothing in common;
    the failure is said, journaled, and the loop continues."""
    import cv2

    rig = write_rig(tmp_path, "")
    text = rig.read_text()
    for serial, seed in (("REF-0001", 1), ("TST-0002", 2)):
        folder = tmp_path / serial
        folder.mkdir()
        noise = np.random.default_rng(seed).integers(0, 255, (240, 320, 3), np.uint8)
        cv2.imwrite(str(folder / "still.png"), noise)
        text = text.replace(
            f'serial = "{serial}"\nlive', f'serial = "{serial}"\nsource_dir = "{folder}"\nlive'
        )
    rig.write_text(text)
    result = live(rig, 2, "c\n")
    assert result.exit_code == 0, result.output
    assert "calibration failed: calibrate geometry failed:" in result.output
    (session,) = (tmp_path / "sessions").iterdir()
    events, _ = read_journal(session / "journal.jsonl")
    (failed,) = [e for e in events if e["event"] == "calibration_failed"]
    assert failed["shots"] == [1] and "calibrate geometry failed" in failed["error"]
    assert sum(line.startswith("#") for line in result.output.splitlines()) == 2


def test_no_key_no_session(tmp_path: Path) -> None:
    result = live(write_rig(tmp_path), 1)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "sessions").exists()  # nothing shot, nothing created


def test_fake_rig_live_view_shows_the_rigs_exposure_offset() -> None:
    """examples/rig_fake.toml: the test body runs 2 EV under the reference (its shutter is
    derived from ev_offset); with the settings applied the live view shows it, and READY."""
    result = live(REPO / "examples" / "rig_fake.toml", 2)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("#")]
    assert len(lines) == 2 and all("EV -2.0" in line for line in lines), lines
    assert all("READY" in line and "coverage 100.0%" in line for line in lines), lines
    unapplied = live(REPO / "examples" / "rig_fake.toml", 1, "", "--no-apply")
    assert "EV -0.00" in unapplied.output or "EV +0.00" in unapplied.output
    assert "ADJUST" in unapplied.output


def post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any] | bytes]:
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body


def test_page_button_endpoint_requests_one_calibration() -> None:
    state = LiveState()
    with LiveServer(state) as server:
        url = server.url + "calibrate"
        assert post(url, {"X-Expokit": "calibrate"})[0] == 409  # no calibration key yet
        state.can_calibrate = True
        code, body = post(url, {})
        assert code == 403  # another site's form cannot send the header
        code, body = post(url, {"X-Expokit": "calibrate"})
        assert code == 202 and isinstance(body, dict) and body["accepted"] is True
        assert post(url, {"X-Expokit": "calibrate"})[0] == 409  # one at a time
        assert state.take_calibration_request() is True
        assert state.take_calibration_request() is False
        snapshot = json.loads(urllib.request.urlopen(server.url + "state.json").read())
        assert snapshot["can_calibrate"] is True
        assert snapshot["calibration"]["status"] == "requested"


def test_run_live_runs_the_calibration_between_pairs() -> None:
    from expokit.calibration.live import LiveAnalyzer, LiveConfig, SyntheticPreviewSource, run_live

    state = LiveState()
    calls: list[int] = []
    analyzer = LiveAnalyzer(LiveConfig(full_every=50))

    class Source:
        def __init__(self) -> None:
            self.inner = SyntheticPreviewSource((320, 212), flip="none")
            self.reads = 0

        def read_pair(self) -> tuple[bytes, bytes]:
            self.reads += 1
            if self.reads == 2:
                assert state.request_calibration()
            return self.inner.read_pair()

    def calibrate() -> dict[str, Any]:
        calls.append(1)
        assert state.calibration is not None and state.calibration["status"] == "running"
        return {"status": "done", "message": "ok"}

    outcomes: list[dict[str, Any]] = []
    done = run_live(
        Source(), analyzer, state, threading.Event(), 4, calibrate=calibrate,
        on_calibration=outcomes.append,
    )  # fmt: skip
    analyzer.close()
    assert done == 4 and calls == [1] and outcomes == [{"status": "done", "message": "ok"}]
    assert state.calibration == {"status": "done", "message": "ok"}


def test_calibrate_geometry_takes_a_sessions_calibration_stills(tmp_path: Path) -> None:
    from expokit.calibration.geometry_io import session_calibration_stills

    rig = write_rig(tmp_path)
    result = CliRunner().invoke(cli, ["capture", "calibration", "--rig", str(rig), "-n", "2"])
    assert result.exit_code == 0, result.output
    (session,) = (tmp_path / "sessions").iterdir()
    refs, tests = session_calibration_stills(session)
    assert len(refs) == len(tests) == 2 and all("reference" in p.name for p in refs)
    out = CliRunner().invoke(
        cli, ["calibrate", "geometry", str(session), "-o", str(tmp_path / "cal"), "--charuco",
              "7x5", "--square", "0.04", "--marker", "0.028", "--no-qa"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "pairs       2" in out.output and "from charuco" in out.output
    refused = CliRunner().invoke(cli, ["calibrate", "geometry", str(tmp_path), "-o", "x"])
    assert refused.exit_code == 2 and "capture session folder alone" in refused.output
