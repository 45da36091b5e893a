"""An expokit dataset as a Hugging Face ``datasets.DatasetDict``, built from its manifest.

:func:`to_hf_dataset` reads ``meta/info.json`` and ``manifest.parquet`` (through
:func:`~expokit.curation.dataset.format.load_dataset`, so a bad dataset fails naming the
file and the field) and returns one ``datasets.Dataset`` per split: every manifest column
as it is, plus ``input`` and ``target`` (and ``mask`` when the dataset has masks) as
``datasets.Image()`` columns pointing at the files below the root. Nothing is copied or
written; images are decoded when a row is read. File hashes are not checked here (that is
``expokit curate validate``'s job).

``datasets`` is imported only when the function runs: expokit does not depend on it, and a
missing package is an :class:`~expokit.curation.export.layouts.ExportError` that says
``pip install datasets``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expokit.curation.dataset.format import Dataset, check_not_being_written, load_dataset
from expokit.curation.export.layouts import ExportError

if TYPE_CHECKING:
    import datasets

__all__ = ["IMAGE_COLUMNS", "UNSPLIT", "to_hf_dataset"]

#: manifest path column -> the ``datasets.Image()`` column built from it.
IMAGE_COLUMNS = {"input_path": "input", "target_path": "target", "mask_path": "mask"}
#: Split name of rows whose ``split`` is null (as the ``sequences`` export names them).
UNSPLIT = "unsplit"
#: Split names Hugging Face accepts (``datasets.splits.NamedSplit``: ``\w+(\.\w+)*``).
_HF_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ExportError(
            "loading an expokit dataset with Hugging Face needs the `datasets` package: "
            "pip install datasets"
        ) from None
    return datasets


def to_hf_dataset(
    root: str | Path | Dataset, splits: Sequence[str] | None = None
) -> datasets.DatasetDict:
    """The dataset at ``root`` as a ``datasets.DatasetDict`` keyed by split name.

    Parameters
    ----------
    root
        Dataset root, or a loaded :class:`~expokit.curation.dataset.format.Dataset`.
    splits
        Split names to include (default: every split of the manifest, sorted; rows with
        no split are :data:`UNSPLIT`).

    Returns
    -------
    datasets.DatasetDict
        One ``datasets.Dataset`` per split, rows in manifest order. Columns: every manifest
        column (its scalar values unchanged, ``*_path`` relative to the root), plus
        ``input`` and ``target`` (and ``mask`` when any row has a ``mask_path``; None where
        a row has none) as ``datasets.Image()``: decoding gives a ``PIL.Image`` of the file.

    Raises
    ------
    ExportError
        ``datasets`` is not installed; a split asked for is not in the dataset; a split
        name Hugging Face refuses (it allows letters, digits, ``_`` and inner ``.``).
    DatasetError, PathEscapeError, RootInUseError
        The dataset does not load, a manifest path leaves the root, or a build is writing it.

    Examples
    --------
    >>> hf = to_hf_dataset("my_dataset")  # doctest: +SKIP
    >>> hf["train"][0]["input"].size  # doctest: +SKIP
    (640, 480)
    """
    hf = _import_datasets()
    if not isinstance(root, Dataset):
        check_not_being_written(Path(root), "loading it")
    dataset = root if isinstance(root, Dataset) else load_dataset(root)
    frame = dataset.manifest.copy()
    frame["split"] = frame["split"].fillna(UNSPLIT)
    present = sorted(str(s) for s in frame["split"].unique())
    chosen = present if splits is None else list(dict.fromkeys(splits))
    unknown = [s for s in chosen if s not in present]
    if unknown:
        raise ExportError(
            f"{dataset.root}: no split {', '.join(map(repr, unknown))}; it has "
            f"{', '.join(present) or 'no rows'}"
        )
    for split in chosen:
        if not _HF_SPLIT_NAME.match(split):
            raise ExportError(
                f"{dataset.root}: split {split!r} is not a Hugging Face split name "
                "(letters, digits, '_' and inner '.')"
            )
    image_columns = {
        column: name
        for column, name in IMAGE_COLUMNS.items()
        if column != "mask_path" or frame[column].notna().any()
    }
    import pandas as pd

    for column, name in image_columns.items():
        # Resolved inside the root: a path (or link) leaving the dataset is refused.
        frame[name] = [
            None if pd.isna(value) else str(dataset.path(str(value))) for value in frame[column]
        ]
    parts = {}
    for split in chosen:
        rows = frame[frame["split"] == split].reset_index(drop=True)
        part = hf.Dataset.from_pandas(rows, preserve_index=False)
        for name in image_columns.values():
            part = part.cast_column(name, hf.Image())
        parts[split] = part
    return hf.DatasetDict(parts)
