"""One row of ``manifest.parquet`` as a typed record: :class:`PairRow`.

The fields are the manifest's columns (:data:`~expokit.curation.dataset.format.MANIFEST_COLUMNS`),
in order, typed after their pandas dtypes (``string`` -> ``str``, ``Int64`` -> ``int``,
``Float64`` -> ``float``; every column is nullable except the four a row cannot do
without). ``curate build`` makes one per pair, carries it in its completion records and
turns the rows into the manifest frame at the last step
(:func:`~expokit.curation.dataset.format.manifest_frame` of :meth:`PairRow.to_dict`).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from expokit.core.errors import ExpokitError
from expokit.core.schema import describe
from expokit.curation.dataset.format import MANIFEST_COLUMNS

#: Columns a row cannot do without (the format refuses a row lacking a pair id or an
#: image path; splits are made by scene).
REQUIRED_VALUES = ("pair_id", "scene_id", "input_path", "target_path")
#: Columns ``curate build`` knows only at assembly, over every pair of the dataset (the
#: figures over pairs, the QA flags and the split): a pair's own row leaves them ``None``.
ASSEMBLY_COLUMNS = (
    "gain_deviation_ev",
    "gain_instability_ev",
    "target_flicker",
    "qa_flags",
    "split",
)


class PairRowError(ExpokitError):
    """A manifest row does not fit :class:`PairRow`; the message names where the row came
    from and the field."""

    def __init__(self, where: str, field: str, problem: str) -> None:
        self.where = where
        self.field = field
        self.problem = problem
        super().__init__(f"{where}: field {field!r}: {problem}")


@dataclass(frozen=True)
class PairRow:
    """One pair of the dataset: a row of ``manifest.parquet``.

    Coordinates: ``homography`` is in source pixels (capture pairs: flipped, undistorted
    test pixels to undistorted reference pixels; input to target pixels otherwise);
    ``width``/``height``, ``valid_*`` and ``alignment_residual_px`` are in pixels of the
    stored (possibly downscaled) images; with ``crop`` the stored images are the valid
    rectangle, so ``valid_x``/``valid_y`` are 0. NaN figures (a build's record) and
    ``None`` both mean "no figure"; the manifest stores them as null.

    Attributes
    ----------
    pair_id
        Unique id of the row: ``<scene_id>/<clip_id or ->/<pair stem>``.
    scene_id
        Scene the pair belongs to (a safe path component); splits are made by scene.
    clip_id
        Video clip or capture session id (``None`` for stills sets).
    frame_index
        Frame number within the clip (``None`` for stills).
    source
        Source kind: ``capture``, ``render``, ``sequences`` or ``msec``.
    input_role, target_role
        Roles of the input and target images (``test``, ``reference`` or ``ev``).
    input_ev, target_ev
        Exposures (EV) relative to the scene's reference exposure.
    ev_basis
        ``ev``: ``input_ev``/``target_ev`` are EVs (EXIF, render, capture plan); ``rank``:
        exposure ranks of a sequence without EXIF (positions, not measured EVs).
    input_exposure_time_s, input_iso, input_f_number
        Exposure time (s), ISO and f-number of the input (metadata).
    target_exposure_time_s, target_iso, target_f_number
        Exposure time (s), ISO and f-number of the target (metadata).
    input_path, target_path
        Aligned input and target images, POSIX paths relative to the dataset root.
    mask_path
        Valid-region mask (8-bit PNG, 255 = valid) relative to the root, or ``None``
        when the input was not resampled.
    input_sha256, target_sha256
        SHA-256 of the input and target files.
    source_input, source_target
        The original input and target files (provenance; may be outside the root).
    width, height
        Size of the stored input and target, pixels.
    homography
        ``(3, 3)`` test->reference homography used, as a JSON list of rows, or ``None``.
    ecc_correlation
        ECC correlation after refinement (``None`` when ECC did not run).
    alignment_residual_px
        Median DIS optical-flow magnitude after alignment, pixels of the stored images.
    photometric_gain
        Linear gain ``target / input`` fitted on valid, unclipped pixels (stored, never
        applied).
    valid_x, valid_y, valid_w, valid_h
        Valid-region rectangle in the stored images, pixels (left, top, width, height).
    psnr_db
        PSNR (dB) after exposure and tone normalisation, valid unclipped pixels.
    ssim
        SSIM after exposure and tone normalisation, valid unclipped pixels.
    clipped_dark_input, clipped_bright_input
        Fractions (0..1) of input pixels at or below the dark / at or above the bright
        clip level.
    clipped_dark_target, clipped_bright_target
        The same fractions for the target.
    usable_fraction
        Fraction (0..1) of valid pixels unclipped in both images (what the gain is fitted
        on).
    focus_ratio
        Sharpness of the normalised input over the sharpness of the target.
    target_luma
        Mean linear Rec. 709 luminance of the target (valid pixels), 0..1.
    target_change
        Video only: log of the median per-pixel brightness ratio of the target to the
        clip's previous frame (``None`` for stills and a clip's first frame).
    gain_deviation_ev
        Assembly: log2 of the gain over the robust median gain of its group (same clip or
        source, same exposure offset), EV; ``None`` when not judged.
    gain_instability_ev
        Assembly, per clip: robust spread of ``log2(photometric_gain)`` over the frames, EV.
    target_flicker
        Assembly, per clip: relative amplitude of the strongest fast oscillation of the
        scene light (from ``target_change``).
    qa_flags
        Assembly: comma-separated QA flags (empty = passed); rows are never dropped.
    split
        Assembly: ``train``, ``val``, ``test`` or a custom split name.

    The last five fields (:data:`ASSEMBLY_COLUMNS`) are only known when the manifest is
    assembled over every pair, and ``target_change`` only for video pairs: they default
    to ``None``.
    """

    pair_id: str
    scene_id: str
    clip_id: str | None
    frame_index: int | None
    source: str | None
    input_role: str | None
    target_role: str | None
    input_ev: float | None
    target_ev: float | None
    ev_basis: str | None
    input_exposure_time_s: float | None
    input_iso: float | None
    input_f_number: float | None
    target_exposure_time_s: float | None
    target_iso: float | None
    target_f_number: float | None
    input_path: str
    target_path: str
    mask_path: str | None
    input_sha256: str | None
    target_sha256: str | None
    source_input: str | None
    source_target: str | None
    width: int | None
    height: int | None
    homography: str | None
    ecc_correlation: float | None
    alignment_residual_px: float | None
    photometric_gain: float | None
    valid_x: int | None
    valid_y: int | None
    valid_w: int | None
    valid_h: int | None
    psnr_db: float | None
    ssim: float | None
    clipped_dark_input: float | None
    clipped_bright_input: float | None
    clipped_dark_target: float | None
    clipped_bright_target: float | None
    usable_fraction: float | None
    focus_ratio: float | None
    target_luma: float | None
    target_change: float | None = None
    gain_deviation_ev: float | None = None
    gain_instability_ev: float | None = None
    target_flicker: float | None = None
    qa_flags: str | None = None
    split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{column: value}`` in manifest column order: plain str/int/float/None, ready for
        JSON and for :func:`~expokit.curation.dataset.format.manifest_frame` (NaN figures
        are kept as NaN)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> PairRow:
        """The row ``data`` (``{column: value}``), checked against the column types.

        Keys that are not columns are ignored (a manifest may keep unknown columns).
        Values keep their type where it fits (an integer ISO stays an integer), so a row
        read and written again is the same JSON; NaN and infinite figures are allowed.
        (:func:`expokit.core.schema.from_json` does not fit: it refuses non-finite
        numbers and turns integers of float fields into floats.)

        Parameters
        ----------
        data
            A row as a mapping: a record row, or a manifest row with nulls as ``None``.
        where
            Where the row comes from (a file and row index), named in the error.

        Raises
        ------
        PairRowError
            A column missing (those with defaults may be absent), a null in one of
            :data:`REQUIRED_VALUES`, or a value of the wrong type; names ``where`` and the
            field.
        """
        if not isinstance(data, Mapping):
            raise PairRowError(where, "row", f"expected a JSON object, got {describe(data)}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is dataclasses.MISSING:
                    raise PairRowError(where, f.name, "missing")
                continue
            dtype = MANIFEST_COLUMNS[f.name][0]
            values[f.name] = _checked(dtype, data[f.name], where, f.name)
        return cls(**values)


def _checked(dtype: str, value: Any, where: str, name: str) -> Any:
    """``value`` of column ``name`` if it fits ``dtype`` (numpy scalars become Python's)."""
    if value is None:
        if name in REQUIRED_VALUES:
            raise PairRowError(where, name, "expected a value, got null")
        return None
    if dtype == "string":
        if isinstance(value, str):
            return value
        wanted = "a string"
    elif dtype == "Int64":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        wanted = "an integer"
    elif dtype == "Float64":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        wanted = "a number"
    else:  # a dtype this reader does not know: a change to MANIFEST_COLUMNS needs one here
        raise TypeError(f"column {name!r}: no reader for dtype {dtype!r}")
    raise PairRowError(where, name, f"expected {wanted} or null, got {describe(value)}")
