"""The QA flags vocabulary of the manifest's ``qa_flags`` column.

What each flag means, its figure, rule and default threshold: ``docs/qa.md``. Where they are
raised: :mod:`expokit.curation.build.qa`.
"""

from __future__ import annotations

from typing import Any

#: Every QA flag, in the order they appear in the ``qa_flags`` column (docs/qa.md defines
#: each one: its figure, rule, default threshold and what it is for).
QA_FLAGS: tuple[str, ...] = (
    "fit_unreliable",
    "low_psnr",
    "low_ssim",
    "misaligned",
    "low_ecc",
    "gain_unfit",
    "gain_outlier",
    "gain_unstable",
    "target_flicker",
    "defocus",
    "clipped_input",
    "clipped_target",
    "small_valid_region",
    "exif_mismatch",
)

#: Flags that judge the pair's fit (the normalised input against the target): not raised
#: on a ``fit_unreliable`` pair, whose gain, PSNR/SSIM and residual mean nothing.
FIT_FLAGS: tuple[str, ...] = ("low_psnr", "low_ssim", "misaligned", "gain_outlier", "defocus")


def flag_list(value: Any) -> list[str]:
    """The flags of a manifest ``qa_flags`` cell (comma-separated; empty or null = passed)."""
    if value is None or not isinstance(value, str):
        return []
    return [f.strip() for f in value.split(",") if f.strip()]
