"""Live view of the fake backend against known truth: previews of a test body with an
injected :class:`LiveMisalignment`, measured by ``check_alignment``, and a closed loop in
which a simulated person follows the check's figures until the rig is "ready".

Mapping of the conventions: :class:`LiveMisalignment` is stated in ``check_alignment``'s own
terms (the test content on screen with the mirror undone, relative to the reference), so the
expected figures are the injected ones with the same signs: ``roll_deg`` (> 0 counter-
clockwise), ``shift_px`` (``c_r - H(c_t)``, x right, y down), ``scale_pct`` (> 0 larger) and
``ev_offset`` = injected EV + the simulation's test exposure (``SimulationConfig.ev_offset``,
splitter ratio 1 here).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from expokit.calibration.alignment_check import (
    AlignmentCheck,
    check_alignment,
    measure_homography,
)
from expokit.capture.backends import fake
from expokit.capture.backends.base import CameraBusy, NotSupported
from expokit.capture.backends.fake import FakeCamera, LiveMisalignment
from expokit.capture.simulator import RigSimulation, SimulationConfig

SIZE = (320, 212)  # live view (width, height), small so each check takes well under 1 s
ROLL_TOL, SCALE_TOL, SHIFT_TOL, EV_TOL = 0.05, 0.1, 0.5, 0.05


def _rig(ev_offset: float = 0.0, test: LiveMisalignment | None = None) -> None:
    sim = RigSimulation.create(SimulationConfig(size=(320, 240), seconds=2.0, seed=3,
                                                ev_offset=ev_offset))  # fmt: skip
    fake.configure_bus(
        [
            fake.FakeCameraSpec("REF", live_view_size=SIZE),
            fake.FakeCameraSpec(
                "TST", vendor="canon", live_view_size=SIZE,
                misalignment=test or LiveMisalignment(),
            ),
        ]
    )  # fmt: skip
    fake.attach_simulation(sim, {"REF": "reference", "TST": "test"})


@pytest.fixture(autouse=True)
def _clean_bus() -> object:
    yield
    fake.configure_bus([])


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG"
    return image


def _check(tmp: Path, round_: int = 0) -> AlignmentCheck:
    ref_path, test_path = tmp / f"ref_{round_}.jpg", tmp / f"test_{round_}.jpg"
    with FakeCamera("REF") as ref, FakeCamera("TST") as test:
        ref_path.write_bytes(ref.capture_preview())
        test_path.write_bytes(test.capture_preview())
    return check_alignment(ref_path, test_path)


@pytest.mark.parametrize(
    "m",
    [
        LiveMisalignment(roll_deg=0.4, shift_px=(3.0, -2.0), scale_pct=0.8),
        LiveMisalignment(
            roll_deg=-1.5, shift_px=(-12.0, 7.5), scale_pct=-2.0, keystone_pct=(0.6, -0.4)
        ),
    ],
)
def test_homography_is_stated_in_the_checks_conventions(m: LiveMisalignment) -> None:
    roll, scale, shift, keystone, _ = measure_homography(m.homography(SIZE), SIZE, SIZE)
    assert roll == pytest.approx(m.roll_deg, abs=1e-9)
    assert scale == pytest.approx(m.scale_pct, abs=1e-9)
    assert shift == pytest.approx(m.shift_px, abs=1e-9)
    # Keystone is first order: within a tenth of the asked percentage.
    assert keystone["horizontal_pct"] == pytest.approx(m.keystone_pct[0], abs=0.06)
    assert keystone["vertical_pct"] == pytest.approx(m.keystone_pct[1], abs=0.06)


def test_preview_is_a_live_view_jpeg_mirrored_for_the_test_role() -> None:
    _rig()
    with FakeCamera("REF") as ref, FakeCamera("TST") as test:
        a, b = ref.capture_preview(), ref.capture_preview()
        ref_image, test_image = _decode(a), _decode(test.capture_preview())
    assert a != b  # fresh noise in every frame
    assert ref_image.shape == (SIZE[1], SIZE[0], 3)
    assert test_image.shape == ref_image.shape
    # Aligned and equally exposed: the test frame is the reference mirrored (plus noise).
    diff = np.abs(ref_image.astype(float) - test_image[:, ::-1].astype(float)).mean()
    unmirrored = np.abs(ref_image.astype(float) - test_image.astype(float)).mean()
    assert diff < 6 and unmirrored > 2 * diff


@pytest.mark.parametrize(
    ("m", "sim_ev"),
    [
        (LiveMisalignment(roll_deg=0.4, shift_px=(3.0, -2.0), scale_pct=0.8, ev_offset=0.5),
         -1.0),
        (LiveMisalignment(roll_deg=-0.7, shift_px=(-6.5, 4.25), scale_pct=-1.2, ev_offset=-0.3),
         0.0),
    ],
)  # fmt: skip
def test_check_recovers_the_injected_misalignment(
    tmp_path: Path, m: LiveMisalignment, sim_ev: float
) -> None:
    _rig(sim_ev, m)
    result = _check(tmp_path)
    assert result.flip == "horizontal"
    assert result.roll_deg == pytest.approx(m.roll_deg, abs=ROLL_TOL)
    assert result.scale_pct == pytest.approx(m.scale_pct, abs=SCALE_TOL)
    assert math.dist(result.shift_px, m.shift_px) <= SHIFT_TOL
    assert result.ev_offset == pytest.approx(sim_ev + m.ev_offset, abs=EV_TOL)
    assert result.verdict == "adjust"


def test_defocus_and_white_balance_show_in_the_check(tmp_path: Path) -> None:
    gains = (1.2, 1.0, 0.8)
    _rig(test=LiveMisalignment(blur_sigma_px=1.5, white_balance=gains))
    result = _check(tmp_path)
    assert result.focus_ratio < 0.9
    lum = 0.2126 * gains[0] + 0.7152 * gains[1] + 0.0722 * gains[2]
    assert result.white_balance == pytest.approx([g / lum for g in gains], abs=0.03)
    assert result.ev_offset == pytest.approx(math.log2(lum), abs=EV_TOL)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_person_following_the_advice_reaches_ready(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    start = LiveMisalignment(
        roll_deg=rng.uniform(-1.5, 1.5),
        shift_px=(rng.uniform(-15, 15), rng.uniform(-10, 10)),
        scale_pct=rng.uniform(-2.5, 2.5),
    )
    _rig(test=start)
    rounds = []
    for round_ in range(8):
        result = _check(tmp_path, round_)
        rounds.append((result.roll_deg, result.scale_pct, result.shift_px, result.verdict))
        if result.verdict == "ready":
            break
        # The person turns each screw by 70-90 % of what the check asks for.
        now = fake.body_for("TST").misalignment
        fake.set_misalignment(
            "TST",
            roll_deg=now.roll_deg - rng.uniform(0.7, 0.9) * result.roll_deg,
            scale_pct=now.scale_pct - rng.uniform(0.7, 0.9) * result.scale_pct,
            shift_px=tuple(
                v - rng.uniform(0.7, 0.9) * dv
                for v, dv in zip(now.shift_px, result.shift_px, strict=True)
            ),
        )
    assert rounds[-1][3] == "ready", rounds
    assert len(rounds) <= 6, rounds


def test_set_misalignment_reaches_every_handle_and_validates() -> None:
    _rig()
    first, second = FakeCamera("TST"), FakeCamera("TST")
    first.connect()
    second.connect()
    changed = first.set_misalignment(roll_deg=0.3)
    assert second.misalignment == changed == LiveMisalignment(roll_deg=0.3)
    second.set_misalignment(scale_pct=-0.5)  # other fields are kept
    assert first.misalignment == LiveMisalignment(roll_deg=0.3, scale_pct=-0.5)
    assert first.set_misalignment(LiveMisalignment()) == LiveMisalignment()
    for bad in ({"roll_deg": math.nan}, {"blur_sigma_px": -1}, {"white_balance": (1, 0, 1)},
                {"ev_offset": 9}):  # fmt: skip
        with pytest.raises(ValueError):
            LiveMisalignment(**bad)


def test_spec_from_dict_and_a_body_without_simulation() -> None:
    spec = fake.FakeCameraSpec.from_dict(
        {"serial": "X", "live_view_size": [160, 106],
         "misalignment": {"roll_deg": 0.2, "shift_px": [1, 2]}}
    )  # fmt: skip
    assert spec.live_view_size == (160, 106)
    assert spec.misalignment == LiveMisalignment(roll_deg=0.2, shift_px=(1.0, 2.0))
    assert fake.FakeCameraSpec("Y").live_view_size == fake.LIVE_VIEW_SIZE
    with pytest.raises(ValueError):
        fake.FakeCameraSpec("Z", live_view_size=(32, 32))
    fake.configure_bus([spec])
    with FakeCamera("X") as cam:
        image = _decode(cam.capture_preview())
    assert image.shape == (106, 160, 3)
    assert image.std() > 5  # textured, so features can be found


def test_live_view_faults_and_the_abc_default() -> None:
    _rig()
    fake.body_for("REF").spec.faults.busy = 1
    with FakeCamera("REF") as cam:
        with pytest.raises(CameraBusy):
            cam.capture_preview()
        assert _decode(cam.capture_preview()).shape[:2] == (SIZE[1], SIZE[0])

    class Minimal(FakeCamera):
        capture_preview = fake.Camera.capture_preview  # the ABC's default

    with Minimal("REF") as cam, pytest.raises(NotSupported, match="live view"):
        cam.capture_preview()
