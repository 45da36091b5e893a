"""Dataset format converters: ``expokit curate upgrade ROOT`` brings a dataset to the current
format version, one step at a time, keeping a backup of the files it rewrites.

:data:`CONVERTERS` maps a version ``v`` to the function that rewrites a dataset from ``v`` to
``v + 1`` in place.

v1 -> v2 (:func:`convert_v1_to_v2`): the ``flags`` column becomes ``qa_flags``; v1's
``flicker`` figure and flag (the target's own brightness over a clip, which content and
steady light changes raised) are dropped; ``ev_basis`` is derived; the per-pair figures are
measured again from the stored images with the v2 rules (tone-matched PSNR/SSIM on unclipped
pixels, usable fraction, focus ratio, target luminance, flow residual), the figures over
pairs are computed (gain against its group, gain stability and target flicker per clip), and
the flags are recomputed with the recorded thresholds. The v1 ``meta/info.json`` and
``manifest.parquet`` are kept as ``*.v1`` backups.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from expokit.core.atomic import atomic_path
from expokit.core.lock import RootLock
from expokit.curation.build.align import (
    bits_of,
    flow_residual,
    match_tones,
    normalise_exposure,
    usable,
)
from expokit.curation.build.config import BuildConfig, BuildConfigError, QaThresholds
from expokit.curation.build.qa import (
    brightness_change,
    brightness_thumbnail,
    flags_for,
    group_figures,
    pair_figures,
)
from expokit.curation.dataset.flags import flag_list
from expokit.curation.dataset.format import (
    FORMAT_VERSION,
    INFO_FILE,
    MANIFEST_FILE,
    DatasetError,
    frame_from_v1,
    manifest_frame,
    read_info,
    read_info_header,
    schema,
    validate_frame,
    write_info,
)


def _read_stored(path: Path) -> Any:
    """A dataset image as the build held it (BGR, bit depth kept), or None."""
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _remeasure(root: Path, row: dict[str, Any], config: Any) -> bool:
    """Measure one v1 row's figures again from its stored images (in place); False when an
    image cannot be read (its figures stay as they were, the new ones null)."""
    import numpy as np

    images = [_read_stored(root / str(row[k])) for k in ("input_path", "target_path")]
    if any(i is None or i.ndim != 3 for i in images):
        return False
    inp, tgt = images
    if inp.shape != tgt.shape or inp.dtype != tgt.dtype:
        return False
    valid = np.ones(tgt.shape[:2], bool)
    if isinstance(row.get("mask_path"), str):
        mask = _read_stored(root / str(row["mask_path"]))
        if mask is None or mask.shape[:2] != valid.shape:
            return False
        valid = (mask if mask.ndim == 2 else mask[..., 0]) > 0
    levels = config.clip_levels(bits_of(tgt))
    gain = row.get("photometric_gain")
    gain = float(gain) if isinstance(gain, float | int) and gain == gain else float("nan")
    region = valid & usable(inp, *levels) & usable(tgt, *levels)
    normalised = match_tones(normalise_exposure(inp, gain), tgt, region)
    row.update(pair_figures(normalised, inp, tgt, valid, levels))
    row["alignment_residual_px"] = flow_residual(
        normalised, tgt, valid, levels, config.flow_max_side
    )
    return True


def _target_changes(root: Path, rows: list[dict[str, Any]], config: Any) -> None:
    """``target_change`` of every video row, from its clip's stored targets in frame order."""
    clips: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("clip_id") is not None and row.get("frame_index") is not None:
            clips.setdefault(str(row["clip_id"]), []).append(row)
    for members in clips.values():
        previous = None
        for row in sorted(members, key=lambda r: int(r["frame_index"])):
            image = _read_stored(root / str(row["target_path"]))
            if image is None or image.ndim != 3:
                previous = None
                continue
            thumbnail = brightness_thumbnail(image, config.clip_levels(bits_of(image)))
            row["target_change"] = brightness_change(previous, thumbnail)
            previous = thumbnail


def convert_v1_to_v2(folder: Path) -> None:
    """Rewrite a format-v1 dataset at ``folder`` as v2 (see the module doc)."""
    import math
    import shutil
    import warnings
    from dataclasses import replace

    import pandas as pd

    info_path, manifest_path = folder / INFO_FILE, folder / MANIFEST_FILE
    info = read_info(folder)  # every known field checked: a bad one names the file and field
    try:
        frame = pd.read_parquet(manifest_path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DatasetError(f"{manifest_path}: unreadable parquet: {exc}") from None
    recorded = {
        k: v for k, v in (info.qa_thresholds or {}).items() if k != "max_flicker" and v is not None
    }
    try:
        qa = QaThresholds.from_dict(recorded)
    except BuildConfigError as exc:
        raise DatasetError(f"{info_path}: qa_thresholds: {exc}") from None
    built = ((info.provenance or {}).get("build") or {}).get("config") or {}
    try:
        config = BuildConfig(
            clip_dark=built.get("clip_dark", BuildConfig.clip_dark),
            clip_bright=built.get("clip_bright", BuildConfig.clip_bright),
            flow_max_side=built.get("flow_max_side", BuildConfig.flow_max_side),
        )
    except BuildConfigError:
        config = BuildConfig()
    v1_flags = dict(zip(frame["pair_id"], frame.get("flags", [None] * len(frame)), strict=True))
    rows: list[dict[str, Any]] = [
        {str(k): (None if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v)
         for k, v in row.items()}
        for row in frame_from_v1(frame, info).to_dict(orient="records")
    ]  # fmt: skip
    unreadable = [r["pair_id"] for r in rows if not _remeasure(folder, r, config)]
    _target_changes(folder, rows, config)
    group_figures(rows, qa)
    for row in rows:
        # The valid-region flag needs the frame size, which v1 did not store: kept from v1.
        kept = "small_valid_region" in flag_list(v1_flags.get(row["pair_id"]))
        flags = flags_for(row, qa, 0.0 if kept else None)
        row["qa_flags"] = ",".join(flags)
    upgraded = manifest_frame(list(rows))
    validate_frame(upgraded)
    for path in (info_path, manifest_path):
        shutil.copy2(path, path.with_name(path.name + ".v1"))
    notes = list((info.provenance or {}).get("notes") or [])
    notes.append(
        "upgraded from format v1: figures measured again from the stored images"
        + (f"; {len(unreadable)} pair(s) unreadable, new figures null" if unreadable else "")
    )
    thresholds: dict[str, float | None] = dict(qa.to_dict())
    info = replace(
        info,
        provenance={**(info.provenance or {}), "notes": notes},
        format_version=FORMAT_VERSION,
        schema=schema(),
        qa_thresholds=thresholds,
    )
    with atomic_path(manifest_path) as tmp:
        upgraded.to_parquet(tmp, index=False)
    write_info(folder, info)
    if unreadable:
        warnings.warn(
            f"{folder}: {len(unreadable)} pair(s) could not be measured again (unreadable "
            f"images, e.g. {unreadable[0]}): their new figures are null",
            stacklevel=2,
        )


#: version -> converter from that version to the next, rewriting the dataset in place.
CONVERTERS: dict[int, Callable[[Path], None]] = {1: convert_v1_to_v2}


def upgrade_dataset(root: str | Path) -> list[str]:
    """Upgrade ``root`` to :data:`FORMAT_VERSION`; return what was done, one line a step.

    Raises
    ------
    DatasetError
        Not a dataset, a version newer than this expokit, or no converter for a step.
    """
    folder = Path(root)
    header = read_info_header(folder)  # format name and an integer version, or DatasetError
    info_path, version = header.path, header.format_version
    if version > FORMAT_VERSION:
        raise DatasetError(
            f"{info_path}: format version {version} is newer than this expokit "
            f"(v{FORMAT_VERSION}); upgrade expokit instead"
        )
    steps: list[str] = []
    if version == FORMAT_VERSION:
        read_info(folder)  # "already vN" only for an info.json that reads as vN
        return [f"{folder} is already format v{FORMAT_VERSION}; nothing to do"]
    # Converters rewrite the dataset in place: one writer at a time (builds lock it too).
    with RootLock(folder, "expokit curate upgrade"):
        while version < FORMAT_VERSION:
            converter = CONVERTERS.get(version)
            if converter is None:
                raise DatasetError(
                    f"{info_path}: no converter from format v{version} to v{version + 1} "
                    f"(known: {sorted(CONVERTERS) or 'none'})"
                )
            converter(folder)
            steps.append(f"converted v{version} -> v{version + 1}")
            version += 1
    if not steps:
        steps.append(f"{folder} is already format v{FORMAT_VERSION}; nothing to do")
    return steps
