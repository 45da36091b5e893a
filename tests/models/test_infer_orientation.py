"""``expokit infer`` on images with an EXIF Orientation tag: the output is upright (the
shape a viewer shows), identical to inferring the upright image, and a note says so."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402

from expokit.cli import cli  # noqa: E402
from expokit.models.checkpoint import save_checkpoint  # noqa: E402
from expokit.models.infer import read_rgb  # noqa: E402
from expokit.models.uec import UEC  # noqa: E402

T = Image.Transpose
#: upright -> stored, the inverse of what a viewer does for each tag.
STORE = {6: T.ROTATE_90, 8: T.ROTATE_270, 3: T.ROTATE_180, 2: T.FLIP_LEFT_RIGHT}


def portrait(height: int = 56, width: int = 40) -> npt.NDArray[np.uint8]:
    """Smooth RGB texture with a bright top-left block: no symmetry to hide a wrong turn."""
    rng = np.random.default_rng(7)
    small = rng.integers(30, 220, (height // 8, width // 8, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    image[: height // 4, : width // 3] = (250, 235, 40)
    return np.ascontiguousarray(image)


def save_tagged(path: Path, upright: npt.NDArray[np.uint8], orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    options = {"quality": 95} if path.suffix == ".jpg" else {}
    stored = Image.fromarray(upright).transpose(STORE[orientation])
    stored.save(buffer, "JPEG" if path.suffix == ".jpg" else "PNG", exif=exif.tobytes(), **options)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def uec_run(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    model = UEC(feature_size=32)
    with torch.no_grad():  # a correction that visibly changes colours
        for conv in (model.corrector.conv1, model.corrector.conv2):
            conv.weight.mul_(3.0)
    run = tmp_path / "run"
    save_checkpoint(model.eval(), run, 5)
    return run


def test_infer_writes_rotated_inputs_upright_and_says_so(tmp_path: Path, uec_run: Path) -> None:
    upright = portrait()
    inputs = tmp_path / "in"
    inputs.mkdir()
    assert cv2.imwrite(str(inputs / "plain.png"), upright[..., ::-1])
    save_tagged(inputs / "six.png", upright, 6)
    save_tagged(inputs / "eight.png", upright, 8)
    save_tagged(inputs / "mirror.png", upright, 2)
    save_tagged(inputs / "phone.jpg", upright, 6)
    ref = tmp_path / "ref.png"
    assert cv2.imwrite(str(ref), np.full((32, 32, 3), 128, np.uint8))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["infer", "--ckpt", str(uec_run), str(inputs), "--out", str(out), "--ref", str(ref),
         "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    def notes_of(name: str) -> list[str]:
        """The note lines printed right under ``name``'s result line."""
        start = next(i for i, line in enumerate(lines) if f"{name} -> " in line) + 1
        end = start
        while end < len(lines) and lines[end].startswith("  note:"):
            end += 1
        return lines[start:end]

    assert notes_of("six.png") == ["  note: rotated per EXIF orientation 6 (90 degrees clockwise)"]
    assert notes_of("phone.jpg") == [
        "  note: rotated per EXIF orientation 6 (90 degrees clockwise)"
    ]
    assert notes_of("eight.png") == [
        "  note: rotated per EXIF orientation 8 (90 degrees counter-clockwise)"
    ]
    assert notes_of("mirror.png") == ["  note: mirrored per EXIF orientation 2 (left-right)"]
    assert notes_of("plain.png") == []

    plain = cv2.imread(str(out / "plain.png"), cv2.IMREAD_UNCHANGED)
    assert plain.shape == (*upright.shape[:2], 3)
    assert not np.array_equal(plain[..., ::-1], upright)  # the model did change the image
    for name in ("six", "eight", "mirror"):  # lossless: the very same pixels reach the model
        written = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert written.shape == plain.shape, name  # portrait, 56 x 40
        assert np.array_equal(written, plain), name
    phone = cv2.imread(str(out / "phone.png"), cv2.IMREAD_UNCHANGED).astype(np.float64)
    assert phone.shape == plain.shape
    error = np.abs(phone - plain).mean()
    flipped = np.abs(phone[::-1, ::-1] - plain).mean()  # what a wrong turn (8 for 6) gives
    assert error < 4 and flipped > 5 * error


def test_read_rgb_notes_orientation_before_channel_notes(tmp_path: Path) -> None:
    upright = portrait(24, 16)
    path = save_tagged(tmp_path / "a.png", upright, 3)
    rgb, notes = read_rgb(path)
    assert np.array_equal(rgb, upright)
    assert notes == ["rotated per EXIF orientation 3 (180 degrees)"]
    plain = tmp_path / "b.png"
    assert cv2.imwrite(str(plain), upright[..., ::-1])
    rgb, notes = read_rgb(plain)
    assert np.array_equal(rgb, upright) and notes == []
