"""Fake-rig fixtures: two fake bodies on the in-process fake bus, configured from TOML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from expokit.capture.rig_config import RigConfig, load_rig_config

RIG_TOML = """
backend = "fake"
output_root = "{root}"
ev_offset = -2.0
bracket = [-1, 0, 1]
bracket_roles = ["test"]
trigger_mode = "{mode}"

[retry]
attempts = 4
backoff_s = 0.01
trigger_timeout_s = 3
reconnect_timeout_s = 3

[roles.reference]
serial = "REF-1"
settings = {{ shutter = "1/125", aperture = "8", iso = "100", image_format = "JPEG Fine" }}

[roles.test]
serial = "TST-2"
settings = {{ aperture = "8", iso = "100", image_format = "JPEG Fine" }}

[[fake.cameras]]
serial = "REF-1"
model = "Fake Nikon D750"
vendor = "nikon"
latency_s = {latency}

[[fake.cameras]]
serial = "TST-2"
model = "Fake Canon EOS 5D"
vendor = "canon"
latency_s = {latency}
"""


def write_rig(folder: Path, mode: str = "threaded", latency: float = 0.0, **extra: Any) -> Path:
    path = folder / "rig.toml"
    text = RIG_TOML.format(root=(folder / "sessions").as_posix(), mode=mode, latency=latency)
    path.write_text(text)
    return path


@pytest.fixture
def rig_file(tmp_path: Path) -> Path:
    return write_rig(tmp_path)


@pytest.fixture
def rig_config(rig_file: Path) -> RigConfig:
    return load_rig_config(rig_file)
