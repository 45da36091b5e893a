"""``to_hf_dataset``: any expokit dataset as a Hugging Face ``DatasetDict``, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from expokit.curation.dataset.format import load_dataset
from expokit.curation.export.hf import to_hf_dataset
from expokit.curation.export.layouts import ExportError
from tests.curation.conftest_tools import Spec, make_dataset


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf") / "ds"
    make_dataset(root)
    return root


def test_splits_rows_and_pixels_match_the_manifest(dataset_root: Path) -> None:
    datasets = pytest.importorskip("datasets")
    manifest = load_dataset(dataset_root).manifest
    hf = to_hf_dataset(dataset_root)
    assert isinstance(hf, datasets.DatasetDict)
    assert sorted(hf) == sorted(manifest["split"].unique())
    for split, rows in manifest.groupby("split"):
        part = hf[str(split)]
        assert part.num_rows == len(rows)
        assert part["pair_id"] == rows["pair_id"].tolist()
        assert part["input_ev"] == pytest.approx(rows["input_ev"].tolist())
        for name in ("input", "target", "mask"):
            assert isinstance(part.features[name], datasets.Image)
    row = hf["train"][0]
    on_disk = cv2.imread(str(dataset_root / row["input_path"]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(np.asarray(row["input"]), on_disk[..., ::-1])
    mask = cv2.imread(str(dataset_root / row["mask_path"]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(np.asarray(row["mask"]), mask)
    assert hf["train"][0]["frame_index"] is None and hf["test"].num_rows


def test_chosen_splits_and_no_masks(dataset_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    assert list(to_hf_dataset(dataset_root, splits=["val"])) == ["val"]
    with pytest.raises(ExportError, match="no split 'holdout'"):
        to_hf_dataset(dataset_root, splits=["holdout"])
    plain = tmp_path / "plain"
    make_dataset(plain, Spec(masks=False, clips=()))
    assert "mask" not in to_hf_dataset(plain)["train"].column_names


def test_missing_datasets_names_the_install(
    dataset_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ExportError, match="pip install datasets"):
        to_hf_dataset(dataset_root)
