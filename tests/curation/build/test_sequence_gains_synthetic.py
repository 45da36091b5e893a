"""Clean-clone counterpart of test_build_sequences.py's SICE tests (issue 12): sequence builds
from synthetic exposure ladders with known EV ratios; the built EVs and measured gains must
match them.

Each ladder renders one procedural scene (:func:`expokit.core.synthetic.demo_scene`) at known
exposures ``level * 2**ev`` through the sRGB curve; the build fits ``photometric_gain``
(target / input in linear light on unclipped pixels), which must be ``2**(target_ev -
input_ev)`` of the *true* EVs, whatever the EV basis (EXIF or rank).
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.dataset.format import load_dataset

#: Seven exposures one stop apart, as in SICE; the middle one (rank 3) is the target.
LADDER = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
LEVEL = 0.18  # linear exposure of the target


def _rgb(ev: float, seed: int) -> np.ndarray:
    from expokit.core.synthetic import demo_scene
    from expokit.core.transfer import srgb_encode

    # Scene radiance kept within ~[0.02, 1] of the texture so most pixels stay unclipped.
    radiance = demo_scene("texture", 96, 128, seed=seed)
    return np.rint(srgb_encode(np.clip(radiance * LEVEL * 2.0**ev, 0, 1)) * 255).astype(np.uint8)


def _save(path: Path, rgb: np.ndarray, exposure_s: float | None) -> None:
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    image = Image.fromarray(rgb)
    if exposure_s is None:
        image.save(path)  # PNG, no EXIF: EVs by rank
        return
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    sub[0x829A] = IFDRational(Fraction(exposure_s).limit_denominator(1_000_000))
    sub[0x829D] = IFDRational(Fraction(8))
    sub[0x8827] = 100
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=97, exif=exif)
    path.write_bytes(buffer.getvalue())


def _ladder(folder: Path, evs: tuple[float, ...], exif: bool, seed: int) -> None:
    folder.mkdir(parents=True)
    for i, ev in enumerate(evs):
        name = f"{i + 1}.jpg" if exif else f"{i + 1}.png"
        _save(folder / name, _rgb(ev, seed), (1 / 100) * 2.0**ev if exif else None)


def _build(source: Path, out: Path) -> pd.DataFrame:
    summary = build_dataset([source], out, BuildConfig(), progress=False, durable=False)
    assert summary.ok, summary.failures
    return load_dataset(out).manifest


def test_seven_stop_ladder_gains_match_the_known_evs(tmp_path: Path) -> None:
    """SICE-like: 7 PNGs one stop apart, no EXIF: rank EVs are the true EVs here."""
    _ladder(tmp_path / "src" / "ladder", LADDER, exif=False, seed=1)
    frame = _build(tmp_path / "src", tmp_path / "ds").sort_values("input_ev")
    assert frame["source_target"].iloc[0].endswith("/4.png")
    assert frame["input_ev"].tolist() == [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]
    expected = [2.0**-ev for ev in frame["input_ev"]]  # target_ev 0
    assert frame["photometric_gain"].tolist() == pytest.approx(expected, rel=0.05)


def test_exif_ladder_with_fractional_steps(tmp_path: Path) -> None:
    """2/3-stop steps in EXIF exposure times, files out of order: EVs and gains from EXIF."""
    evs = (0.0, -4 / 3, 2 / 3, -2 / 3, 4 / 3)
    _ladder(tmp_path / "src" / "thirds", evs, exif=True, seed=2)
    frame = _build(tmp_path / "src", tmp_path / "ds").sort_values("input_ev")
    # Sorted by exposure: -4/3 -2/3 0 2/3 4/3; the middle (0, file 1.jpg) is the target.
    assert frame["source_target"].iloc[0].endswith("/1.jpg")
    known = [-4 / 3, -2 / 3, 2 / 3, 4 / 3]
    assert frame["input_ev"].tolist() == pytest.approx(known, abs=0.01)
    assert frame["photometric_gain"].tolist() == pytest.approx([2.0**-e for e in known], rel=0.05)


def test_gain_is_measured_not_taken_from_the_rank(tmp_path: Path) -> None:
    """Half-stop steps without EXIF: the rank says 1 EV apart, the measured gain says 0.5."""
    evs = (-1.0, -0.5, 0.0, 0.5, 1.0)
    _ladder(tmp_path / "src" / "halves", evs, exif=False, seed=3)
    frame = _build(tmp_path / "src", tmp_path / "ds").sort_values("input_ev")
    assert frame["input_ev"].tolist() == [-2.0, -1.0, 1.0, 2.0]  # ranks
    true_evs = [-1.0, -0.5, 0.5, 1.0]
    assert frame["photometric_gain"].tolist() == pytest.approx(
        [2.0**-e for e in true_evs], rel=0.05
    )
