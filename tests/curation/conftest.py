"""Shared fixtures of the curation tests: one dataset built per module, a fresh copy per test.

A module that needs another dataset overrides ``pristine``; ``root`` then copies that one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.curation.conftest_tools import make_dataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default test dataset (:func:`make_dataset`), built once per module; never edit it."""
    root = tmp_path_factory.mktemp("pristine") / "ds"
    make_dataset(root)
    return root


@pytest.fixture
def root(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of ``pristine`` that the test may change."""
    copy = tmp_path / "ds"
    shutil.copytree(pristine, copy)
    return copy
