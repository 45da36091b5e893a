"""Synthetic test signals for sync: long, non-periodic audio made of pieces of real recordings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from expokit.core.video_io import decode_audio


def shuffled_audio(
    sources: Sequence[Path], seconds: float, rate: int, seed: int = 0
) -> npt.NDArray[np.float32]:
    """``seconds`` of mono float32 audio at ``rate`` Hz: random 1.5-4 s pieces of the sources'
    audio (each normalised to unit RMS) at random gains, plus a little room noise.

    Pieces are shuffled rather than looped so the result is not periodic: a looped clip
    correlates with itself one loop later and no offset would be unambiguous.
    """
    pool = []
    for source in sources:
        audio = decode_audio(source, rate).astype(np.float64)
        pool.append(audio / max(float(np.sqrt(np.mean(audio**2))), 1e-9))
    rng = np.random.default_rng(seed)
    pieces, total = [], 0
    while total < seconds * rate:
        clip = pool[int(rng.integers(len(pool)))]
        length = int(rng.uniform(1.5, 4.0) * rate)
        start = int(rng.integers(0, clip.size - length))
        pieces.append(clip[start : start + length] * rng.uniform(0.3, 1.0))
        total += length
    out = np.concatenate(pieces)[: int(seconds * rate)] * 0.1
    return (out + rng.normal(0, 0.002, out.size)).astype(np.float32)
