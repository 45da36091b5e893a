"""Regenerate the rig guide's screenshots of ``expokit align live`` (docs/images/align_*.jpg).

Runs the assistant's own analysis and page on a simulated fake rig (generated footage, the
test body misaligned by known amounts), one state per adjustment step of docs/rig_guide.md
section 7, and photographs the page in headless Chromium (Debian's ``chromium``)::

    python scripts/rig_guide_screenshots.py            # writes docs/images/align_*.jpg

Every figure on the screenshots is measured, not drawn: the steps set a known
misalignment on the fake test body and the analyser reports it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images"
CHROMIUM = Path("/usr/bin/chromium")

RIG = """
backend = "fake"
output_root = "{root}"
ev_offset = -2.0
[roles.reference]
serial = "REF-0001"
settings = {{ shutter = "1/125", aperture = "8", iso = "100", image_format = "JPEG Fine" }}
[roles.test]
serial = "TST-0002"
settings = {{ aperture = "8", iso = "100", image_format = "JPEG Fine" }}
[fake]
source = "generated"
[fake.simulation]
size = [1024, 680]
seed = 3
[[fake.cameras]]
serial = "REF-0001"
[[fake.cameras]]
serial = "TST-0002"
vendor = "canon"
"""

#: (file stem, what the step shows, test body misalignment, near board?, calibrate?)
STEPS: list[tuple[str, str, dict[str, Any], bool, bool]] = [
    ("align_1_start", "first look: rolled, zoomed, shifted, soft, 1 EV off",
     {"roll_deg": 0.6, "scale_pct": 1.2, "shift_px": (9.0, -5.0), "blur_sigma_px": 1.3,
      "ev_offset": 1.0}, False, False),
    ("align_2_roll", "roll fixed; zoom, shift, focus and exposure left",
     {"scale_pct": 1.2, "shift_px": (9.0, -5.0), "blur_sigma_px": 1.3, "ev_offset": 1.0},
     False, False),
    ("align_3_parallax", "everything a homography sees is fixed; the board held near shows "
     "that the entrance pupils do not coincide",
     {"pupil_offset_mm": (6.0, 0.0, 25.0)}, True, False),
    ("align_4_ready", "pupils together: READY, then the calibrate key",
     {}, True, True),
]  # fmt: skip


def screenshot(url: str, path: Path, profile: Path) -> None:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        f"--user-data-dir={profile}", "--window-size=1400,1050", "--virtual-time-budget=3000",
        f"--screenshot={path}", url,
    ]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=True)


def shrink(png: Path, out: Path, width: int = 1000) -> None:
    """The screenshot as a JPEG ``width`` px wide (the noisy scene compresses badly as PNG)."""
    import cv2

    image = cv2.imread(str(png), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"no screenshot at {png}")
    height = round(image.shape[0] * width / image.shape[1])
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(out), small, [cv2.IMWRITE_JPEG_QUALITY, 82])


def main() -> int:
    if not CHROMIUM.exists():
        print("needs Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 1
    from expokit.calibration.alignment_check import AlignmentCheckConfig, AlignmentThresholds
    from expokit.calibration.live import (
        LiveAnalyzer,
        LiveConfig,
        LiveState,
        RigPreviewSource,
        run_live,
    )
    from expokit.calibration.live_calibration import LiveCalibrationConfig, LiveCalibrator
    from expokit.calibration.live_page import LiveServer
    from expokit.capture.backends import fake
    from expokit.capture.backends.fake import LiveDepth, LiveMisalignment
    from expokit.capture.commands import CalibrationShooter
    from expokit.capture.rig_config import ROLES, load_rig_config
    from expokit.capture.runner import Rig

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="expokit-shots-") as tmp:
        rig_path = Path(tmp) / "rig.toml"
        rig_path.write_text(RIG.format(root=Path(tmp) / "sessions"))
        config = load_rig_config(rig_path)
        check = AlignmentCheckConfig(
            thresholds=AlignmentThresholds(expected_ev=config.ev_offset), max_side=1024
        )
        with Rig(config) as rig:
            rig.preflight()
            for role in ROLES:
                settings, _ = rig.base_settings(role)
                rig.apply(role, rig.resolve(role, settings))
            shooter = CalibrationShooter(config, rig)
            for stem, what, misalignment, near_board, calibrate in STEPS:
                fake.set_misalignment("TST-0002", LiveMisalignment(**misalignment))
                fake.set_live_depth(LiveDepth() if near_board else None)
                state = LiveState()
                analyzer = LiveAnalyzer(LiveConfig(check=check, full_every=1, background=False))
                calibrator = LiveCalibrator(shooter, LiveCalibrationConfig()) if calibrate else None
                if calibrator is not None:
                    state.can_calibrate = True
                    assert state.request_calibration()
                run_live(RigPreviewSource(rig), analyzer, state, threading.Event(), 4,
                         calibrate=calibrator)  # fmt: skip
                analyzer.close()
                state.can_calibrate = True
                with LiveServer(state) as server:
                    png, path = Path(tmp) / f"{stem}.png", OUT / f"{stem}.jpg"
                    screenshot(server.url, png, Path(tmp) / "profile")
                    shrink(png, path)
                latest = state.latest
                assert latest is not None
                print(f"{path.relative_to(REPO)}: {what}: {latest.verdict}")
            shooter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
