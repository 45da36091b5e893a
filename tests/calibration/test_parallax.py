"""Parallax by depth layer (:mod:`expokit.calibration.parallax`) against known truth.

The fake backend's live view with a :class:`~expokit.capture.backends.fake.LiveDepth` world
(the rig's ChArUco board held ``near_m`` in front of a textured scene at ``far_m``) and a test
body whose entrance pupil is off by a known ``pupil_offset_mm``: the near layer's motion
against the far one follows from the plane maps of ``LiveDepth.plane_map`` exactly, so the
check's ``relative_shift_px``/``relative_scale_pct`` and the advice's directions are tested
against it, mirrored and not, and a simulated person following the advice (direction only,
as a person would) brings the pupils together.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from expokit.calibration.alignment_check import NO_PARALLAX, check_alignment, describe
from expokit.capture.backends import fake
from expokit.capture.backends.fake import FakeCamera, LiveDepth, LiveMisalignment
from expokit.capture.simulator import RigSimulation, SimulationConfig

SIZE = (800, 530)  # big enough for the board's markers to be found in the live view
DEPTH = LiveDepth(near_m=1.0, far_m=10.0)


@pytest.fixture(autouse=True)
def _clean_bus() -> object:
    yield
    fake.configure_bus([])


def _bus(pupil: tuple[float, float, float], mirrored: bool = False, depth: bool = True) -> None:
    fake.configure_bus(
        [
            fake.FakeCameraSpec("REF", live_view_size=SIZE),
            fake.FakeCameraSpec(
                "TST", vendor="canon", live_view_size=SIZE,
                misalignment=LiveMisalignment(pupil_offset_mm=pupil),
            ),
        ]
    )  # fmt: skip
    if mirrored:  # the simulation's test role is mirrored, as behind a splitter
        sim = RigSimulation.create(SimulationConfig(size=(640, 480), seconds=2.0, seed=4))
        fake.attach_simulation(sim, {"REF": "reference", "TST": "test"})
    fake.set_live_depth(DEPTH if depth else None)


def _check(tmp: Path, name: str = "0") -> dict:
    ref_path, test_path = tmp / f"ref_{name}.jpg", tmp / f"test_{name}.jpg"
    with FakeCamera("REF") as ref, FakeCamera("TST") as test:
        ref_path.write_bytes(ref.capture_preview())
        test_path.write_bytes(test.capture_preview())
    result = check_alignment(ref_path, test_path)
    return {"result": result, "parallax": result.parallax}


def expected_motion(pupil: tuple[float, float, float]) -> tuple[np.ndarray, float]:
    """Near layer's test content against the far layer's, aligned on the far layer: shift at
    the centre (mirror undone, px) and scale (%), from the plane maps themselves."""
    near = DEPTH.plane_map(DEPTH.near_m, pupil, SIZE)
    far = DEPTH.plane_map(DEPTH.far_m, pupil, SIZE)
    relative = np.linalg.inv(far) @ near  # aligned -> where the far alignment puts it
    centre = np.array([(SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2, 1.0])
    return (relative @ centre)[:2] - centre[:2], (relative[0, 0] - 1.0) * 100


@pytest.mark.parametrize(
    ("pupil", "mirrored", "slide", "axis"),
    [
        ((5.0, 0.0, 20.0), False, "slide the test body left", "back, away from"),
        ((-4.0, 3.0, -25.0), False, "slide the test body right", "forward, toward"),
        # Behind a left-right mirror the body's own left is the unmirrored right.
        ((5.0, 0.0, 0.0), True, "slide the test body right", None),
    ],
)
def test_near_and_far_layers_against_the_pupil_offset(
    tmp_path: Path,
    pupil: tuple[float, float, float],
    mirrored: bool,
    slide: str,
    axis: str | None,
) -> None:
    _bus(pupil, mirrored)
    out = _check(tmp_path)
    parallax, result = out["parallax"], out["result"]
    assert parallax is not None, describe(result)
    assert parallax["near_layer"] in ("first", "second")  # the board marks it
    assert parallax["near_px"] is not None and parallax["far_px"] is not None
    shift, scale = expected_motion(pupil)
    assert np.hypot(*(np.array(parallax["relative_shift_px"]) - shift)) < 0.5 + 0.05 * np.hypot(
        *shift
    )
    assert parallax["relative_scale_pct"] == pytest.approx(scale, abs=0.15)
    # The figures are those of the far layer: its own pupil shift f t / (Z_far - t_z).
    far = DEPTH.plane_map(DEPTH.far_m, pupil, SIZE)
    assert result.scale_pct == pytest.approx((far[0, 0] - 1) * 100, abs=0.1)
    advice = " ".join(result.advice)
    assert slide in advice
    if axis is None:
        assert "optical axis" not in advice
    else:
        assert axis in advice
    assert result.verdict == "adjust"


def test_no_depth_means_cannot_tell(tmp_path: Path) -> None:
    _bus((5.0, 0.0, 20.0), depth=False)  # a pupil offset shows nothing on one plane
    out = _check(tmp_path)
    assert out["parallax"] is None
    assert f"parallax     {NO_PARALLAX}" in describe(out["result"])
    assert "cannot tell" in NO_PARALLAX


def test_coinciding_pupils_with_a_near_board_show_no_parallax(tmp_path: Path) -> None:
    """The board in front of texture can tell: both layers align, so it says so."""
    _bus((0.0, 0.0, 0.0))
    out = _check(tmp_path)
    parallax = out["parallax"]
    assert parallax is not None and parallax["near_layer"] == "second"
    assert parallax["near_px"] < 0.5 and parallax["far_px"] < 0.5
    assert parallax["description"].startswith("no parallax") and parallax["advice"] == []
    assert out["result"].verdict == "ready"


@pytest.mark.parametrize("seed", [1, 2])
def test_a_person_following_the_parallax_advice_brings_the_pupils_together(
    tmp_path: Path, seed: int
) -> None:
    """Direction-only advice, as a person follows it: a fixed step in the advised direction,
    halved whenever the advice turns round."""
    rng = random.Random(seed)
    sideways, along = rng.uniform(3, 8), rng.uniform(10, 30)
    pupil = [rng.choice((-1, 1)) * sideways, 0.0, rng.choice((-1, 1)) * along]
    step = [4.0, 0.0, 16.0]
    last = [0, 0, 0]
    for round_ in range(12):
        _bus((pupil[0], pupil[1], pupil[2]))
        result = _check(tmp_path, str(round_))["result"]
        advice = " ".join(result.advice)
        assert result.parallax is not None  # the board is always in view
        if not result.parallax["advice"]:
            break
        moves = [0, 0, 0]
        if "slide the test body right" in advice:
            moves[0] = 1
        elif "slide the test body left" in advice:
            moves[0] = -1
        if "toward the splitter" in advice:
            moves[2] = 1
        elif "away from the splitter" in advice:
            moves[2] = -1
        assert any(moves), advice
        for axis in (0, 2):
            if moves[axis] and last[axis] and moves[axis] != last[axis]:
                step[axis] /= 2
            if moves[axis]:
                pupil[axis] += moves[axis] * step[axis]
                last[axis] = moves[axis]
    else:
        pytest.fail(f"still parallax after 12 rounds at pupil {pupil}")
    # What is left is below the threshold: about f |t| (1/near - 1/far) <= 2 px.
    f = DEPTH.focal_ratio * SIZE[0]
    assert f * abs(pupil[0]) / 1000 * (1 / DEPTH.near_m - 1 / DEPTH.far_m) < 2.5
    assert math.isfinite(pupil[2])


def test_live_tracking_follows_the_far_layer_with_the_board_near() -> None:
    """Between full checks the live view tracks by ECC; with the board near, ECC over the
    whole frame would settle between the two depths. Masked, it stays on the far layer."""
    import threading

    from expokit.calibration.alignment_check import AlignmentCheckConfig
    from expokit.calibration.live import LiveAnalyzer, LiveConfig, LiveState, run_live

    _bus((6.0, 0.0, 25.0))
    fake.set_misalignment("TST", roll_deg=0.5)
    with FakeCamera("REF") as ref, FakeCamera("TST") as test:

        class Source:
            def read_pair(self) -> tuple[bytes, bytes]:
                return ref.capture_preview(), test.capture_preview()

        results: list = []
        analyzer = LiveAnalyzer(LiveConfig(check=AlignmentCheckConfig(max_side=1024),
                                           full_every=50, background=False))  # fmt: skip
        run_live(Source(), analyzer, LiveState(), threading.Event(), 3, results.append)
        analyzer.close()
    assert [r.mode for r in results] == ["full", "track", "track"]
    far = DEPTH.plane_map(DEPTH.far_m, (6.0, 0.0, 25.0), SIZE)
    for r in results:
        assert r.roll_deg == pytest.approx(0.5, abs=0.05), r.mode
        assert r.scale_pct == pytest.approx((far[0, 0] - 1) * 100, abs=0.1), r.mode
        assert r.parallax is not None and r.parallax["near_layer"] == "second"
    assert any("slide the test body" in a for a in results[-1].advice)


def test_bad_depth_and_misalignment_tables_are_named(tmp_path: Path) -> None:
    from expokit.capture.rig_config import load_rig_config

    with pytest.raises(ValueError, match="unknown key pupil"):
        LiveMisalignment.from_dict({"pupil": [1, 2, 3]})
    with pytest.raises(ValueError, match="pupil_offset_mm"):
        LiveMisalignment(pupil_offset_mm=(1.0, 2.0))  # type: ignore[arg-type]
    rig = (Path(__file__).resolve().parents[2] / "examples" / "rig_fake.toml").read_text()
    path = tmp_path / "rig.toml"
    path.write_text(rig + "\n[fake.live_depth]\nnear_m = 5.0\nfar_m = 2.0\n")
    with pytest.raises(Exception, match=r"fake.live_depth: .*near_m < far_m"):
        load_rig_config(path)
