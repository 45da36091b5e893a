"""Hostile inputs to the rig simulator, the fake rig and the demo: each ends as one clear
``error:`` line naming the option, key or file (exit 1), never a traceback, and leaves
nothing half-written on disk."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from expokit.capture.backends.fake import FakeCameraSpec, FakeFaults
from expokit.capture.footage import GeneratedScene, source_memory_bytes
from expokit.capture.rig_config import RigConfigError, load_rig_config
from expokit.capture.simulate import simulate
from expokit.capture.simulator import (
    MAX_SEED,
    MAX_SIMULATION_BYTES,
    RigSimulation,
    SimulationConfig,
    SimulationError,
)
from expokit.cli import cli
from expokit.core.errors import OutputError

#: The smallest simulation worth running: 64x64 px, 1 s, no still pairs.
TINY = ("--size", "64x64", "--seconds", "1", "--still-pairs", "0", "--no-progress")

RIG = """
backend = "fake"
output_root = "sessions"
ev_offset = -2.0

[roles.reference]
serial = "REF-1"

[roles.test]
serial = "TST-2"

[fake]
source = "generated"

[[fake.cameras]]
serial = "REF-1"
{first}

[[fake.cameras]]
serial = "TST-2"
{second}

[fake.simulation]
size = [64, 64]
{simulation}
"""


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_line_error(result: Result, *needles: str) -> str:
    """Exit 1, no traceback, one ``error:`` line holding every needle; returns the line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _rig(folder: Path, first: str = "", second: str = "", simulation: str = "") -> Path:
    path = folder / "rig.toml"
    path.write_text(RIG.format(first=first, second=second, simulation=simulation))
    return path


def _png(path: Path, width: int, height: int) -> Path:
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------- 1. seeds


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_simulate_refuses_a_seed_outside_32_bits(tmp_path: Path, seed: int) -> None:
    out = tmp_path / "sim"
    result = _invoke("simulate", "generated", "--out", str(out), "--seed", str(seed), *TINY)
    _one_line_error(result, f"seed (--seed) = {seed}", f"0-{MAX_SEED}")
    assert not out.exists()


@pytest.mark.parametrize("key", ["seed", "scene_seed"])
def test_capture_doctor_refuses_a_negative_simulation_seed(tmp_path: Path, key: str) -> None:
    rig = _rig(tmp_path, simulation=f"{key} = -1")
    result = _invoke("capture", "doctor", "--rig", str(rig))
    _one_line_error(result, "rig.toml", f"fake.simulation.{key}", "-1", f"0-{MAX_SEED}")
    assert not (tmp_path / "sessions").exists()


def test_simulation_config_seed_bounds() -> None:
    assert SimulationConfig(seed=MAX_SEED, scene_seed=0).seed == MAX_SEED
    for values in ({"seed": -1}, {"seed": True}, {"scene_seed": MAX_SEED + 1}):
        with pytest.raises(SimulationError, match="seed"):
            SimulationConfig(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- 2. memory


def test_simulate_refuses_a_recording_too_long_for_memory(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = _invoke("simulate", "generated", "--out", str(out), "--seconds", "3600")
    line = _one_line_error(result, "--seconds", "3600", "GiB", "limit of 8 GiB")
    assert float(line.split("about ")[1].split(" GiB")[0]) > 8
    assert not out.exists()


def test_memory_estimate_matches_the_generated_texture() -> None:
    canvas, seconds, seed = (80, 80), 1.5, 3
    scene = GeneratedScene(canvas, seconds, seed)
    audio = round(seconds * 48000) * 8 * 2
    # 48 bytes per texture pixel-channel triple: the float32 texture is 12 of them.
    assert GeneratedScene.memory_bytes(canvas, seconds, seed) - audio == scene.texture.nbytes * 4
    # The default recording (10 s at 320x240) stays far below the limit.
    assert GeneratedScene.memory_bytes((346, 266), 10.6, 0) < MAX_SIMULATION_BYTES / 100


def test_memory_estimate_of_a_frame_folder(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(5):
        _png(folder / f"f{index:02d}.png", 64, 64)
    frame = 80 * 72 * 3
    assert source_memory_bytes(folder, (80, 72), 24.0, None) == 5 * frame
    assert source_memory_bytes(folder, (80, 72), 24.0, 0.05) == 3 * frame
    assert source_memory_bytes(folder / "f00.png", (80, 72), 24.0, None) == frame


# --------------------------------------------------------------------------- 3. small sources


@pytest.mark.parametrize(("width", "height"), [(1, 1), (30, 20), (64, 63)])
@pytest.mark.parametrize("size", [None, "64x64"])
def test_simulate_refuses_a_source_below_the_least_size(
    tmp_path: Path, width: int, height: int, size: str | None
) -> None:
    source = _png(tmp_path / "tiny.png", width, height)
    out = tmp_path / "sim"
    args = ["simulate", str(source), "--out", str(out), "--no-progress"]
    result = _invoke(*args, *(["--size", size] if size else []))
    _one_line_error(result, "tiny.png", f"{width}x{height}", "64x64", "--size")
    assert not out.exists()


# --------------------------------------------------------------------------- 4. fake cameras

BAD_CAMERA_FIELDS = [
    ('latency_s = "0.1"', "latency_s = '0.1' must be a number"),
    ("latency_s = -0.5", "latency_s = -0.5 must be within 0-60 s"),
    ("jitter_s = nan", "jitter_s = nan must be within"),
    ("clock_offset_s = inf", "clock_offset_s = inf must be within"),
    ("image_size = [0, 0]", "image_size 0x0: each side must be 64-8192 px"),
    ("image_size = [64.0, 96]", "image_size = [64.0, 96] must be [height, width]"),
    ("image_size = [64]", "image_size = [64] must be"),
    ("live_view_size = [true, 64]", "live_view_size = [True, 64] must be [width, height]"),
    ("seed = -3", "seed = -3 must be an integer"),
    ('seed = "1"', "seed = '1' must be an integer"),
    ("model = 5", "model = 5 must be non-empty text"),
    ('vendor = "sony"', "vendor = 'sony' must be 'nikon' or 'canon'"),
    ("source_dir = 3", "source_dir = 3 must be a folder path"),
    ('faults = { busy = "2" }', "faults.busy = '2' must be a whole count"),
    ('faults = { ignore_settings = "iso" }', "faults.ignore_settings = 'iso' must be a list"),
    ("faults = { replug_after_s = -1 }", "faults.replug_after_s = -1 must be 0-600"),
    ("faults = { disconnect_after_triggers = 0 }", "disconnect_after_triggers = 0 must be"),
    ('faults = { claim_failure = "yes" }', "faults.claim_failure = 'yes' must be true or false"),
    ("faults = 3", "faults = 3 must be a table"),
]


@pytest.mark.parametrize(
    ("line", "message"), BAD_CAMERA_FIELDS, ids=[b[0] for b in BAD_CAMERA_FIELDS]
)
def test_capture_doctor_names_a_bad_fake_camera_field(
    tmp_path: Path, line: str, message: str
) -> None:
    rig = _rig(tmp_path, second=line)
    result = _invoke("capture", "doctor", "--rig", str(rig))
    _one_line_error(result, "rig.toml", "fake.cameras #2:", message)
    with pytest.raises(RigConfigError, match=r"fake\.cameras #2"):
        load_rig_config(rig)


def test_fake_camera_spec_keeps_good_values() -> None:
    spec = FakeCameraSpec.from_dict(
        {
            "serial": 3012345,
            "latency_s": 0,
            "jitter_s": 0.01,
            "clock_offset_s": -2.5,
            "image_size": [64, 96],
            "live_view_size": [160, 106],
            "faults": {"ignore_settings": ["shutterspeed"], "disconnect_after_triggers": 1},
        }
    )
    assert spec.serial == "3012345" and spec.image_size == (64, 96)
    assert spec.live_view_size == (160, 106)
    assert spec.faults.ignore_settings == ("shutterspeed",)
    assert FakeFaults().disconnect_after_triggers is None


# --------------------------------------------------------------------------- 5. demo


def test_demo_refuses_a_file_as_out(tmp_path: Path) -> None:
    target = tmp_path / "demo_out"
    target.write_text("mine")
    result = _invoke("demo", "--out", str(target), "--no-progress")
    _one_line_error(result, "--out", str(target), "not a folder")
    assert target.read_text() == "mine"


# --------------------------------------------------------------------------- simulate cleanup


def _fail_at_the_board(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make the last shot of a simulated session (the board) fail, after the movies."""

    def board(self: RigSimulation, role: str) -> None:
        raise error

    monkeypatch.setattr(RigSimulation, "board", board)


def test_failed_simulate_removes_the_session_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_at_the_board(monkeypatch, OutputError("disk went away"))
    out = tmp_path / "new" / "sim"
    result = _invoke("simulate", "generated", "--out", str(out), *TINY)
    _one_line_error(result, "disk went away")
    assert not out.exists()


def test_interrupted_simulate_empties_the_folder_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_at_the_board(monkeypatch, KeyboardInterrupt())
    out = tmp_path / "sim"
    out.mkdir()
    config = SimulationConfig(size=(64, 64), seconds=1.0, still_pairs=1)
    with pytest.raises(KeyboardInterrupt):
        simulate(config, out)
    assert out.is_dir() and list(out.iterdir()) == []
    # The folder is usable again: nothing of the failed run is left to adopt.
    monkeypatch.undo()
    result = simulate(config, out)
    assert result.truth_path.is_file() and math.isclose(result.truth.seconds, 1.0)
