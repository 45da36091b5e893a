"""The per-pair pipeline of ``curate build``: one pair walks through it once.

:func:`process_pair` reads a pair, aligns it (:func:`choose_alignment`), measures it
(:func:`measure_alignment`), writes its images (:func:`write_pair_images`) and returns its
manifest row and assembly data (:func:`pair_row`, a :class:`BuiltPair`).

Per pair (see :mod:`expokit.curation.build.align` and :mod:`expokit.curation.build.qa`)
-----------------------------------------------------------------------------------------
1. read input and target (RAW files are decoded to 16-bit sRGB, movie frames by index);
2. capture pairs: flip and warp the test image with the rig homography; optionally refine
   by ECC (any source) and compose, so the raw input is resampled once;
3. downscale (``max_side``), find the largest valid rectangle, crop to it (``crop``);
4. fit the linear gain ``target / input`` on valid, unclipped pixels (stored, not applied);
5. QA: PSNR/SSIM of the tone-matched input vs the target on valid, unclipped pixels, the DIS
   flow residual, clipping fractions, usable fraction, focus ratio; over pairs the gain
   against its group, per video clip the gain's stability and the target's flicker;
6. write input, target (once per scene when it is shared and uncropped) and, when the input
   was resampled, the valid mask (8-bit PNG, 255 = valid).

Coordinates
-----------
``homography`` is in source pixels (the rig convention for capture pairs: flipped,
undistorted test pixels to undistorted reference pixels; input to target pixels otherwise).
``valid_x/y/w/h``, ``width``/``height`` and ``alignment_residual_px`` are in pixels of the
stored (possibly downscaled) reference frame; with ``crop`` the stored images are the valid
rectangle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from expokit.core.schema import describe
from expokit.curation.build.align import (
    align_pair,
    bits_of,
    downscale,
    fit_gain,
    flow_residual,
    from_linear,
    match_tones,
    normalise_exposure,
    to_linear,
    usable,
    valid_rectangle,
)
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.qa import brightness_change, brightness_thumbnail, pair_figures
from expokit.curation.build.sources import (
    LoadedImage,
    PairSpec,
    SceneSpec,
)
from expokit.curation.build.task import (
    IMAGES_DIR,
    SceneState,
    SceneTask,
    encode_image,
    load_cached,
    stage_file,
)
from expokit.curation.dataset.pair_row import ASSEMBLY_COLUMNS, PairRow, PairRowError

if TYPE_CHECKING:
    from expokit.calibration.rig_calibration import RigCalibration
    from expokit.curation.build.align import Aligned


def _harmonise(
    inp: LoadedImage, tgt: LoadedImage
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], str]:
    """Input and target at one bit depth and transfer (the target's transfer; 16-bit wins)."""
    a, b = inp.pixels, tgt.pixels
    bits = max(bits_of(a), bits_of(b))
    if inp.transfer != tgt.transfer or bits_of(a) != bits:
        a = from_linear(to_linear(a, inp.transfer), bits, tgt.transfer)
    if bits_of(b) != bits:
        b = from_linear(to_linear(b, tgt.transfer), bits, tgt.transfer)
    return a, b, tgt.transfer


@dataclass(frozen=True)
class MeasureContext:
    """What measuring one alignment of a pair needs besides the alignment itself.

    Attributes
    ----------
    target
        ``(H, W, 3)`` target at source resolution, uint8 or uint16 (the harmonised bit
        depth), in ``transfer`` encoding; the pixel grid every alignment resamples onto.
    levels
        ``(dark, bright)`` code levels (of the target's bit depth) outside which a pixel
        counts as clipped.
    transfer
        ``"srgb"`` or ``"linear"``: encoding of ``target`` and of the aligned input.
    max_side
        Longest side (pixels) of the stored images, or ``None`` to keep the source size.
    crop
        Crop the stored images to the largest valid rectangle.
    flow_max_side
        Longest side (pixels) at which the DIS flow residual is measured.
    """

    target: npt.NDArray[Any]
    levels: tuple[int, int]
    transfer: str
    max_side: int | None
    crop: bool
    flow_max_side: int


@dataclass(frozen=True)
class PairOutcome:
    """One alignment of a pair, downscaled, cropped and measured (what gets stored).

    Attributes
    ----------
    aligned
        The :class:`~expokit.curation.build.align.Aligned` alignment measured (its homography,
        ECC result and whether the input was resampled).
    input
        ``(h, w, 3)`` aligned input as stored: downscaled and, with ``crop``, cropped; the
        dtype of the harmonised pair (uint8 or uint16), not exposure-normalised.
    target
        ``(h, w, 3)`` target as stored, same shape and dtype as ``input``.
    valid
        ``(h, w)`` bool: True where the stored input holds scene pixels.
    rect
        ``(x, y, w, h)`` largest valid rectangle, in pixels of the downscaled frame
        (before any crop).
    frame
        ``(height, width)`` of the downscaled frame before any crop (pixels).
    gain
        Linear-light gain ``target / input`` fitted on valid, unclipped pixels (NaN when
        too few pixels are usable); stored, never applied to ``input``.
    normalised
        ``input`` with ``gain`` applied in linear light, then tone-matched to ``target``
        (:func:`~expokit.curation.build.align.match_tones`): what the QA figures compare (same
        shape and dtype).
    residual
        DIS optical-flow residual between ``normalised`` and ``target`` inside ``valid``,
        in pixels of the stored frame.
    """

    aligned: Aligned
    input: npt.NDArray[Any]
    target: npt.NDArray[Any]
    valid: npt.NDArray[np.bool_]
    rect: tuple[int, int, int, int]
    frame: tuple[int, int]
    gain: float
    normalised: npt.NDArray[Any]
    residual: float


def measure_alignment(aligned: Aligned, context: MeasureContext) -> PairOutcome:
    """Downscale, crop, fit the gain and measure the residual of one alignment.

    Parameters
    ----------
    aligned
        The input resampled onto the grid of ``context.target`` (``(H, W, 3)`` image and
        ``(H, W)`` bool valid mask).
    context
        Target, clip levels, transfer and the size/crop parameters of the build.

    Returns
    -------
    PairOutcome
        The stored images (``(h, w, 3)``, the pair's dtype), their valid mask, the valid
        rectangle and frame size before the crop, the gain and the flow residual (pixels).

    Raises
    ------
    AlignmentError
        No pixel of the downscaled input is valid.
    """
    (a, b), valid, _ = downscale([aligned.image, context.target], aligned.valid, context.max_side)
    rect = valid_rectangle(valid)
    height, width = valid.shape
    if context.crop:
        x0, y0, w0, h0 = rect
        a, b, valid = (m[y0 : y0 + h0, x0 : x0 + w0] for m in (a, b, valid))
    gain = fit_gain(a, b, valid, context.levels, context.transfer)
    # QA compares tones matched by a monotonic curve fitted where both are unclipped (the
    # gain alone would judge a camera's tone curve); the gain is still what is stored.
    normalised = match_tones(
        normalise_exposure(a, gain, context.transfer), b,
        valid & usable(a, *context.levels) & usable(b, *context.levels),
    )  # fmt: skip
    residual = flow_residual(normalised, b, valid, context.levels, context.flow_max_side)
    return PairOutcome(
        aligned=aligned, input=a, target=b, valid=valid, rect=rect, frame=(height, width),
        gain=gain, normalised=normalised, residual=residual,
    )  # fmt: skip


def choose_alignment(
    inp: npt.NDArray[Any],
    tgt: npt.NDArray[Any],
    rig: RigCalibration | None,
    context: MeasureContext,
    config: BuildConfig,
) -> PairOutcome:
    """Align ``inp`` onto ``tgt`` (rig homography, then optionally ECC) and measure it.

    With ``config.ecc_refine`` the ECC-refined alignment is kept only when its measured
    flow residual is not worse than the plain one's (ECC can converge to a motion that
    fits worse, e.g. on clipped, already aligned pairs); an identity ECC result keeps the
    plain images and records the ECC figures.

    Parameters
    ----------
    inp, tgt
        ``(H, W, 3)`` input and target at one bit depth (uint8 or uint16) and transfer.
    rig
        The rig calibration of a capture pair (flip and homography), else ``None``.
    context
        What :func:`measure_alignment` needs (``context.target`` is ``tgt``).
    config
        The ECC parameters.

    Raises
    ------
    AlignmentError
        The pair cannot be aligned (size mismatch, no valid pixel).
    """
    plain = measure_alignment(align_pair(inp, tgt, rig), context)
    if not config.ecc_refine:
        return plain
    refined = align_pair(
        inp, tgt, rig, ecc=True, ecc_max_side=config.ecc_max_side,
        ecc_motions=config.ecc_motions, ecc_max_shift=config.ecc_max_shift,
    )  # fmt: skip
    if refined.ecc is None:
        return plain
    if refined.ecc.motion == "identity":
        return replace(plain, aligned=refined)  # same images, ECC figures recorded
    candidate = measure_alignment(refined, context)
    return candidate if candidate.residual <= plain.residual else plain


@dataclass(frozen=True)
class PairFiles:
    """Where one pair's images were written (paths relative to the dataset root)."""

    input_path: str
    input_sha256: str
    target_path: str
    target_sha256: str
    mask_path: str | None


def write_pair_images(
    task: SceneTask, state: SceneState, pair: PairSpec, outcome: PairOutcome, ext: str
) -> PairFiles:
    """Write the input, the target (once per scene when shared and uncropped) and, when
    the input was resampled, the valid mask of one pair.

    Parameters
    ----------
    outcome
        The chosen alignment: ``input``/``target`` ``(h, w, 3)`` uint8 or uint16 are
        encoded as ``ext``; ``valid`` ``(h, w)`` bool is written as an 8-bit PNG
        (255 = valid).
    ext
        ``".png"`` or ``".jpg"``.

    Raises
    ------
    OutputError
        An image cannot be encoded or written (disk full included).
    PathEscapeError
        An output path resolves outside the dataset root.
    """
    spec, config = task.spec, task.config
    _, _, w, h = outcome.rect
    frame_h, frame_w = outcome.frame
    folder = f"{IMAGES_DIR}/{spec.scene_id}"
    input_rel = f"{folder}/{pair.stem}_input{ext}"
    input_image = encode_image(np.ascontiguousarray(outcome.input), ext, config)
    input_sha = stage_file(task, state, input_rel, input_image)
    # The stored target is the same for every pair of the scene unless a crop cut it.
    full_target = not config.crop or (w, h) == (frame_w, frame_h)
    target_stem = spec.scene_id if spec.shared_target and full_target else pair.stem
    target_rel = f"{folder}/{target_stem}_target{ext}"
    if target_rel in state.outputs and target_stem != pair.stem:
        target_sha = state.outputs[target_rel]  # the shared target, written by an earlier pair
    else:
        target_image = encode_image(np.ascontiguousarray(outcome.target), ext, config)
        target_sha = stage_file(task, state, target_rel, target_image)
    mask_rel = None
    if outcome.aligned.resampled:
        mask_rel = f"{folder}/{pair.stem}_mask.png"
        mask = np.ascontiguousarray(outcome.valid.astype(np.uint8) * 255)
        stage_file(task, state, mask_rel, encode_image(mask, ".png", config))
    return PairFiles(input_rel, input_sha, target_rel, target_sha, mask_rel)


#: Keys of a completion record's row that are not manifest columns: the
#: :class:`PairAssembly` of the pair (``_`` keeps them apart from the columns).
ASSEMBLY_KEYS = ("_frame_w", "_frame_h", "_crop_x", "_crop_y", "_exif_mismatch")


@dataclass(frozen=True)
class PairAssembly:
    """What assembling the manifest needs of one pair besides its row (not a column).

    Attributes
    ----------
    frame_w, frame_h
        Size of the stored (possibly downscaled) reference frame before any crop, pixels:
        the valid rectangle's share of it is judged by the ``small_valid_region`` flag.
    crop_x, crop_y
        Where the crop (the stored images) sits in that frame, pixels (``0, 0`` without
        ``crop``).
    exif_mismatch
        The capture journal's EXIF check of the input and target (``"; "``-joined), or
        ``None``; raises the ``exif_mismatch`` flag.
    """

    frame_w: int
    frame_h: int
    crop_x: int
    crop_y: int
    exif_mismatch: str | None


@dataclass(frozen=True)
class BuiltPair:
    """One pair as ``curate build`` made it: its manifest row (without the
    :data:`~expokit.curation.dataset.pair_row.ASSEMBLY_COLUMNS`) and its assembly data.

    On disk (a row of a completion record's ``rows``) it is one flat JSON object: the
    row's columns and the :data:`ASSEMBLY_KEYS` (``_frame_w``, ``_frame_h``, ``_crop_x``,
    ``_crop_y``, ``_exif_mismatch``). The assembly columns are not in it, and
    ``target_change`` only for video pairs (those with a ``frame_index``).
    """

    row: PairRow
    assembly: PairAssembly

    def to_json(self) -> dict[str, Any]:
        """The flat record row (see the class docstring)."""
        out = {
            k: v
            for k, v in self.row.to_dict().items()
            if k not in ASSEMBLY_COLUMNS and k != "target_change"
        }
        # The build gives every video pair a target_change (null for a clip's first frame)
        # and stills none: the record row keeps that, so it reads back the same.
        if self.row.frame_index is not None or self.row.target_change is not None:
            out["target_change"] = self.row.target_change
        a = self.assembly
        out.update(
            _frame_w=a.frame_w, _frame_h=a.frame_h, _crop_x=a.crop_x, _crop_y=a.crop_y,
            _exif_mismatch=a.exif_mismatch,
        )  # fmt: skip
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> BuiltPair:
        """The pair of record row ``data`` (inverse of :meth:`to_json`).

        Raises
        ------
        PairRowError
            Not an object, a column or assembly key missing or of the wrong type, or a key
            that is neither (names ``where`` and the field).
        """
        if not isinstance(data, Mapping):
            raise PairRowError(where, "row", f"expected a JSON object, got {describe(data)}")
        known = {f.name for f in fields(PairRow)} | set(ASSEMBLY_KEYS)
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise PairRowError(where, unknown[0], "unknown field")
        for key in ASSEMBLY_KEYS:
            if key not in data:
                raise PairRowError(where, key, "missing")
        sizes = {}
        for key in ASSEMBLY_KEYS[:4]:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise PairRowError(where, key, f"expected an integer, got {describe(value)}")
            sizes[key] = value
        mismatch = data["_exif_mismatch"]
        if mismatch is not None and not isinstance(mismatch, str):
            raise PairRowError(
                where, "_exif_mismatch", f"expected a string or null, got {describe(mismatch)}"
            )
        assembly = PairAssembly(
            frame_w=sizes["_frame_w"], frame_h=sizes["_frame_h"], crop_x=sizes["_crop_x"],
            crop_y=sizes["_crop_y"], exif_mismatch=mismatch,
        )  # fmt: skip
        return cls(row=PairRow.from_dict(data, where), assembly=assembly)


def pair_row(
    spec: SceneSpec,
    pair: PairSpec,
    inp: LoadedImage,
    tgt: LoadedImage,
    outcome: PairOutcome,
    files: PairFiles,
    figures: Mapping[str, float | None],
    crop: bool,
) -> BuiltPair:
    """The manifest row of one pair (without the assembly columns) and its assembly data.

    ``valid_x/y/w/h`` are in pixels of the stored images: with ``crop`` the stored images
    are the valid rectangle, so it is ``(0, 0, width, height)``; the assembly's
    ``crop_x``/``crop_y`` then say where it sits in the downscaled frame ``frame_w`` x
    ``frame_h``. ``homography`` is the ``(3, 3)`` source-pixel homography as a JSON list
    of rows, or ``None``. ``figures`` are :func:`~expokit.curation.build.qa.pair_figures`
    and, for video pairs, ``target_change``.
    """
    aligned = outcome.aligned
    x, y, w, h = outcome.rect
    frame_h, frame_w = outcome.frame
    homography = (
        None if aligned.homography is None else json.dumps(np.asarray(aligned.homography).tolist())
    )
    meta_in, meta_t = inp.metadata, tgt.metadata
    crop_x, crop_y = (x, y) if crop else (0, 0)
    if crop:
        x, y = 0, 0  # the stored images start at the crop's corner
    exif_mismatch = "; ".join(
        text for text in (pair.input.exif_mismatch, pair.target.exif_mismatch) if text
    )
    row = PairRow(
        pair_id=f"{spec.scene_id}/{spec.clip_id or '-'}/{pair.stem}",
        scene_id=spec.scene_id,
        clip_id=spec.clip_id,
        frame_index=pair.frame_index,
        source=spec.source,
        input_role=pair.input.role,
        target_role=pair.target.role,
        input_ev=pair.input.ev,
        target_ev=pair.target.ev,
        ev_basis=spec.ev_basis,
        input_exposure_time_s=meta_in.get("exposure_time_s"),
        input_iso=meta_in.get("iso"),
        input_f_number=meta_in.get("f_number"),
        target_exposure_time_s=meta_t.get("exposure_time_s"),
        target_iso=meta_t.get("iso"),
        target_f_number=meta_t.get("f_number"),
        input_path=files.input_path,
        target_path=files.target_path,
        mask_path=files.mask_path,
        input_sha256=files.input_sha256,
        target_sha256=files.target_sha256,
        source_input=pair.input.label,
        source_target=pair.target.label,
        width=int(outcome.target.shape[1]),
        height=int(outcome.target.shape[0]),
        homography=homography,
        ecc_correlation=None if aligned.ecc is None else float(aligned.ecc.correlation),
        alignment_residual_px=outcome.residual,
        photometric_gain=outcome.gain,
        valid_x=x,
        valid_y=y,
        valid_w=w,
        valid_h=h,
        psnr_db=figures["psnr_db"],
        ssim=figures["ssim"],
        clipped_dark_input=figures["clipped_dark_input"],
        clipped_bright_input=figures["clipped_bright_input"],
        clipped_dark_target=figures["clipped_dark_target"],
        clipped_bright_target=figures["clipped_bright_target"],
        usable_fraction=figures["usable_fraction"],
        focus_ratio=figures["focus_ratio"],
        target_luma=figures["target_luma"],
        target_change=figures.get("target_change"),
    )
    assembly = PairAssembly(
        frame_w=frame_w, frame_h=frame_h, crop_x=crop_x, crop_y=crop_y,
        exif_mismatch=exif_mismatch or None,
    )  # fmt: skip
    return BuiltPair(row=row, assembly=assembly)


def process_pair(
    task: SceneTask, pair: PairSpec, calibration: RigCalibration | None, state: SceneState
) -> BuiltPair:
    """Align, measure and write one pair; return its manifest row (without the assembly
    columns: figures over pairs, flags, split) and what assembly needs of it
    (:class:`PairAssembly`: the frame before the crop, the crop offset, the EXIF check).

    ``valid_x/y/w/h`` are in pixels of the stored images: with ``crop`` the stored images
    are the valid rectangle, so it is ``(0, 0, width, height)``.

    Raises
    ------
    AlignmentError
        The pair cannot be aligned (the caller names the scene and files).
    InputFileError
        An image cannot be read.
    OutputError, PathEscapeError
        An image cannot be written inside the dataset root.
    """
    spec, config = task.spec, task.config
    tgt = load_cached(pair.target, state, cache=spec.shared_target)
    inp = load_cached(pair.input, state, cache=False)
    a, b, transfer = _harmonise(inp, tgt)
    bits = bits_of(b)
    context = MeasureContext(
        target=b, levels=config.clip_levels(bits), transfer=transfer,
        max_side=config.max_side, crop=config.crop, flow_max_side=config.flow_max_side,
    )  # fmt: skip
    rig = calibration if spec.source == "capture" else None
    outcome = choose_alignment(a, b, rig, context, config)
    figures = pair_figures(
        outcome.normalised, outcome.input, outcome.target, outcome.valid, context.levels,
        transfer,
    )  # fmt: skip
    if spec.video:  # the scene light's change since the previous frame (target_flicker)
        thumbnail = brightness_thumbnail(b, context.levels, transfer)
        figures["target_change"] = brightness_change(state.previous_target, thumbnail)
        state.previous_target = thumbnail
    ext = ".png" if bits == 16 or config.image_format == "png" else ".jpg"
    files = write_pair_images(task, state, pair, outcome, ext)
    return pair_row(spec, pair, inp, tgt, outcome, files, figures, config.crop)
