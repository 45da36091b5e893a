"""The typed steps of ``curate build`` (issue 12): one alignment measured into a frozen
:class:`PairOutcome`, the alignment choice, and the manifest counts of the summary."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from expokit.core.synthetic import demo_scene
from expokit.curation.build.align import Aligned
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import manifest_counts
from expokit.curation.build.pair import (
    MeasureContext,
    PairOutcome,
    choose_alignment,
    measure_alignment,
)
from tests.curation.conftest_tools import render

HEIGHT, WIDTH = 40, 60


def _target() -> np.ndarray:
    radiance = demo_scene("texture", HEIGHT, WIDTH, seed=3).astype(np.float64)
    return render(radiance, 0.0)


def _context(target: np.ndarray, crop: bool) -> MeasureContext:
    return MeasureContext(
        target=target, levels=(2, 253), transfer="srgb", max_side=None, crop=crop,
        flow_max_side=1024,
    )  # fmt: skip


@pytest.mark.parametrize("crop", [True, False])
def test_measure_alignment_crops_to_the_valid_rectangle(crop: bool) -> None:
    target = _target()
    valid = np.ones((HEIGHT, WIDTH), bool)
    valid[:, :10] = False  # the input misses the 10 left columns
    aligned = Aligned(image=target.copy(), valid=valid, homography=np.eye(3), resampled=True)
    outcome = measure_alignment(aligned, _context(target, crop))
    assert outcome.aligned is aligned
    assert outcome.frame == (HEIGHT, WIDTH)
    assert outcome.rect == (10, 0, WIDTH - 10, HEIGHT)
    width = WIDTH - 10 if crop else WIDTH
    assert outcome.input.shape == outcome.target.shape == (HEIGHT, width, 3)
    assert outcome.valid.shape == (HEIGHT, width)
    assert bool(outcome.valid.all()) is crop
    assert outcome.input.dtype == np.uint8
    assert outcome.gain == pytest.approx(1.0, abs=0.02)  # the same image: no exposure gap
    assert outcome.residual < 0.1


def test_pair_outcome_is_frozen() -> None:
    target = _target()
    aligned = Aligned(image=target, valid=np.ones((HEIGHT, WIDTH), bool), homography=None)
    outcome = measure_alignment(aligned, _context(target, crop=True))
    assert isinstance(outcome, PairOutcome)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.gain = 2.0  # type: ignore[misc]


def test_choose_alignment_without_ecc_keeps_the_plain_alignment() -> None:
    target = _target()
    darker = render(demo_scene("texture", HEIGHT, WIDTH, seed=3).astype(np.float64), -1.0)
    outcome = choose_alignment(
        darker, target, None, _context(target, crop=True), BuildConfig(ecc_refine=False)
    )
    assert outcome.aligned.ecc is None
    assert not outcome.aligned.resampled
    assert outcome.rect == (0, 0, WIDTH, HEIGHT)
    assert np.array_equal(outcome.input, darker)
    assert outcome.gain == pytest.approx(2.0, rel=0.1)  # one EV darker input


def test_manifest_counts_per_split_and_flag() -> None:
    manifest = pd.DataFrame(
        {
            "split": ["train", "train", "val", "test"],
            "qa_flags": ["low_psnr,misaligned", "", None, "misaligned"],
        }
    )
    counts = manifest_counts(manifest)
    assert counts.pairs == 4
    assert counts.split_counts == {"test": 1, "train": 2, "val": 1}
    assert counts.flag_counts == {"low_psnr": 1, "misaligned": 2}
    assert list(counts.flag_counts) == ["low_psnr", "misaligned"]  # first appearance order
