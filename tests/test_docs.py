"""The documented dataset format and metric conventions agree with the code."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from expokit.curation import metrics
from expokit.curation.dataset.card import column_table
from expokit.curation.dataset.format import KNOWN_INFO_KEYS, MANIFEST_COLUMNS

DOCS = Path(__file__).resolve().parents[1] / "docs"
BEGIN = "<!-- BEGIN manifest-columns"
END = "<!-- END manifest-columns -->"


def _format_doc() -> str:
    return (DOCS / "dataset_format.md").read_text(encoding="utf-8")


def test_column_table_is_the_generated_one() -> None:
    text = _format_doc()
    start = text.index("\n", text.index(BEGIN)) + 1
    block = text[start : text.index(END)].strip()
    assert block == column_table(), (
        "docs/dataset_format.md is out of date: paste the output of "
        "python -c 'from expokit.curation.dataset.card import column_table; print(column_table())'"
    )


def test_every_column_is_documented_with_dtype_and_unit() -> None:
    text = _format_doc()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|.*$", text, re.M)}
    for name, (dtype, unit, _) in MANIFEST_COLUMNS.items():
        assert name in rows, f"column {name} is not documented"
        assert f"`{dtype}`" in rows[name]
        assert f"| {unit or '–'} |" in rows[name]


def test_every_info_key_is_documented() -> None:
    text = _format_doc()
    for key in KNOWN_INFO_KEYS:
        assert f"| `{key}` |" in text, f"info.json key {key} is not documented"


def test_documented_qa_flags_and_thresholds_exist() -> None:
    build_config = pytest.importorskip("expokit.curation.build.config")
    flags = pytest.importorskip("expokit.curation.dataset.flags")
    text = _format_doc()
    for name in re.findall(r"`((?:min|max)_[a-z_]+)`", text):
        assert name in build_config.QaThresholds.__dataclass_fields__, name
    for flag in ("low_psnr", "misaligned", "clipped_input"):
        assert flag in flags.QA_FLAGS


def test_metrics_doc_states_the_constants_in_the_code() -> None:
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    assert f"{metrics.SSIM_WINDOW}×{metrics.SSIM_WINDOW}" in text
    assert f"σ = {metrics.SSIM_SIGMA}" in text
    assert f"K1 = {metrics.SSIM_K1}" in text and f"K2 = {metrics.SSIM_K2}" in text
    assert "crop_border" in text and "mask" in text
    # the module docstring points at this document
    assert "docs/metrics.md" in (metrics.__doc__ or "")


def _basicsr_style_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as BasicSR computes it: filter2D with the outer product of
    getGaussianKernel(11, 1.5), 'valid' crop of 5 pixels, mean per channel, mean of means."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.T)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    means = []
    for channel in range(x.shape[2]):
        p, q = x[..., channel], y[..., channel]

        def f(image: np.ndarray) -> np.ndarray:
            return cv2.filter2D(image, -1, window)[5:-5, 5:-5]

        mu1, mu2 = f(p), f(q)
        s1, s2, s12 = f(p * p) - mu1**2, f(q * q) - mu2**2, f(p * q) - mu1 * mu2
        ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / (
            (mu1**2 + mu2**2 + c1) * (s1 + s2 + c2)
        )
        means.append(ssim_map.mean())
    return float(np.mean(means))


def test_metrics_equal_basicsr_and_scikit_image_as_documented() -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    a = cv2.GaussianBlur(rng.integers(0, 256, (48, 70, 3)).astype(np.uint8), (5, 5), 1.5)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim(a, b) == pytest.approx(_basicsr_style_ssim(a, b), abs=1e-10)
    sk = structural_similarity(
        a,
        b,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert metrics.ssim(a, b) == pytest.approx(sk, abs=1e-10)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-12)
    cropped = metrics.crop(a, 4)
    assert cropped.shape == (40, 62, 3)


def test_the_readme_pytorch_snippet_runs(tmp_path: Path) -> None:
    """The README's five lines, on a generated dataset in place of the demo's."""
    pytest.importorskip("torch")
    from tests.curation.conftest_tools import make_dataset

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Using a dataset", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 6  # five lines and an import
    root = tmp_path / "ds"
    make_dataset(root)
    code = code.replace('"demo_out/datasets/rig"', repr(str(root))).replace("crop=128", "crop=32")
    namespace: dict[str, object] = {}
    exec(compile(code + "\n    break\n", "README.md", "exec"), namespace)
    inputs = namespace["inputs"]
    assert tuple(inputs.shape[1:]) == (3, 32, 32) and inputs.dtype.is_floating_point  # type: ignore[attr-defined]
    assert float(inputs.min()) >= 0.0 and float(inputs.max()) <= 1.0  # type: ignore[attr-defined]
