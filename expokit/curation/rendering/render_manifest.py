"""The render manifest: one parquet row per output file (plus one per failed RAW).

Columns are declared once in :data:`RENDER_COLUMNS` (dtype and meaning) so writers, readers
and documentation agree. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expokit.core.atomic import atomic_path

if TYPE_CHECKING:
    import pandas as pd

#: name -> (pandas dtype, meaning). Order is the column order on disk.
RENDER_COLUMNS: dict[str, tuple[str, str]] = {
    "name": ("string", "output name of the RAW (unique within the output folder)"),
    "raw_path": ("string", "absolute path of the RAW file as given"),
    "raw_sha256": ("string", "SHA-256 of the RAW file"),
    "camera_make": ("string", "EXIF Make (null when the file does not say)"),
    "camera_model": ("string", "EXIF Model, or DNG UniqueCameraModel"),
    "exposure_time_s": ("Float64", "exposure time in seconds from the RAW metadata"),
    "iso": ("Float64", "ISO speed from the RAW metadata"),
    "f_number": ("Float64", "aperture f-number from the RAW metadata"),
    "captured_at": ("string", "capture time from the RAW metadata (ISO 8601, camera clock)"),
    "raw_type": ("string", "LibRaw raw type: Flat (Bayer/CFA) or Stack (non-Bayer)"),
    "ev": ("Float64", "EV of this output relative to the base exposure"),
    "ev_token": ("string", "file-name token of the EV (N1.5, N1, 0, P1, P1.5)"),
    "base_ev_offset": ("Float64", "EV added to every output by --meter (0 = as shot)"),
    "role": ("string", "input (one EV of the ladder) or gt (ground truth, msec layout)"),
    "output_path": ("string", "path relative to the output folder"),
    "output_sha256": ("string", "SHA-256 of the output file"),
    "output_format": ("string", "jpg, png, png16, png16-linear, tiff16, tiff16-linear"),
    "bits": ("Int64", "bits per channel of the output"),
    "transfer": ("string", "srgb (IEC 61966-2-1) or linear"),
    "width": ("Int64", "output width in pixels"),
    "height": ("Int64", "output height in pixels"),
    "wb_source": ("string", "where the white balance came from (camera, daylight, ...)"),
    "wb_multipliers": ("string", "R,G,B,G2 white-balance multipliers passed to LibRaw"),
    "params_hash": ("string", "hash of render parameters + rawpy/LibRaw versions"),
    "rawpy_version": ("string", "rawpy version"),
    "libraw_version": ("string", "LibRaw version"),
    "expokit_version": ("string", "expokit version"),
    "run_id": ("string", "run that produced the row (see runs/<run_id>.json)"),
    "status": ("string", "ok or failed"),
    "error": ("string", "what went wrong (failed rows), naming the file"),
    "notes": ("string", "remarks from decoding, e.g. non-Bayer handling"),
}


def render_manifest_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a DataFrame with exactly :data:`RENDER_COLUMNS`, in order, with their dtypes."""
    import pandas as pd  # local: worker processes render without needing pandas

    frame = pd.DataFrame(list(rows), columns=list(RENDER_COLUMNS))
    return frame.astype({name: dtype for name, (dtype, _) in RENDER_COLUMNS.items()})


def write_render_manifest(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Write ``rows`` as parquet to ``path`` atomically; return the frame written."""
    frame = render_manifest_frame(rows)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return frame


def _fits(value: object, dtype: str) -> bool:
    import pandas as pd

    try:
        pd.Series([value], dtype=object).astype(pd.api.types.pandas_dtype(dtype))
    except (TypeError, ValueError):
        return False
    return True


def read_render_manifest(path: str | Path) -> pd.DataFrame:
    """Read a render manifest and check its columns and numeric values.

    Raises
    ------
    ValueError
        Not parquet, a missing column, or a value that is not a number in a numeric column;
        the message starts with ``path`` and names the row and the column.
    OSError
        The file cannot be read (message starts with ``path``).
    """
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except OSError as exc:
        raise OSError(f"{path}: cannot read: {exc}") from None
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise ValueError(f"{path}: unreadable parquet: {exc}") from None
    missing = [c for c in RENDER_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a render manifest, missing columns {missing}")
    for column, (dtype, _) in RENDER_COLUMNS.items():
        if dtype not in ("Float64", "Int64"):
            continue
        try:
            frame[column].astype(pd.api.types.pandas_dtype(dtype))
        except (TypeError, ValueError):
            position, value = next(
                (i, v) for i, v in enumerate(frame[column].tolist()) if not _fits(v, dtype)
            )
            raise ValueError(
                f"{path}: row {position} ({frame['name'].iloc[position]!r}), column {column!r}: "
                f"{value!r} is not a number (render manifests hold {dtype} there)"
            ) from None
    return frame
