"""models/infer.py and ``expokit infer``: images, folders, videos, the fast UEC LUT, errors."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from click.testing import CliRunner  # noqa: E402

from expokit.cli import cli  # noqa: E402
from expokit.core.errors import OutputError  # noqa: E402
from expokit.models.base import ModelError  # noqa: E402
from expokit.models.checkpoint import save_checkpoint  # noqa: E402
from expokit.models.infer import (  # noqa: E402
    Enhancer,
    InferConfig,
    InferenceError,
    InputError,
    apply_lut_u8,
    fast_uec,
    ffmpeg_exe,
    infer_folder,
    infer_paths,
    probe_video,
    read_infer_record,
    run_tiled,
    thumbnail_u8,
    to_rgb,
    uec_correction,
)
from expokit.models.uec import UEC, apply_lut, bake_lut  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(peak**2 / max(mse, 1e-20)))


@pytest.fixture(scope="module")
def uec() -> UEC:
    torch.manual_seed(3)
    model = UEC(feature_size=32)
    # A trained-looking corrector: random init is nearly linear; make h curve the colours.
    with torch.no_grad():
        for conv in (model.corrector.conv1, model.corrector.conv2):
            conv.weight.mul_(3.0)
    return model.eval()


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    noise = rng.integers(-6, 7, (h, w, 3))
    return np.clip(big + noise, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- fast UEC


@pytest.mark.parametrize("size", [17, 33])
def test_lut_path_agrees_with_the_network(uec: UEC, size: int) -> None:
    rgb = np.random.default_rng(size).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    reference = smooth_image(40, 40, 1)
    ref_thumb = thumbnail_u8(reference, uec.feature_size)
    correction = uec_correction(uec, rgb, ref_thumb)
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        network = uec.apply_correction(image, correction)[0].permute(1, 2, 0).numpy()
    assert psnr(network, image[0].permute(1, 2, 0).numpy()) < 40  # the correction does something
    fast = fast_uec(uec, rgb, ref_thumb, size)
    assert fast.dtype == np.uint8 and fast.shape == rgb.shape
    assert psnr(fast / 255.0, network) > 45
    # and the float grid_sample LUT agrees with the 8-bit remap one
    lut = bake_lut(uec, correction, size)
    grid = apply_lut(lut, image)[0].permute(1, 2, 0).numpy()
    assert psnr(apply_lut_u8(lut, rgb) / 255.0, grid) > 50


def test_lut_identity_and_channel_order(uec: UEC) -> None:
    # An identity LUT maps every 8-bit colour to itself (within one level).
    axis = torch.linspace(0, 1, 5)
    b, g, r = torch.meshgrid(axis, axis, axis, indexing="ij")
    identity = torch.stack([r, g, b])
    rgb = np.stack(np.meshgrid(np.arange(256), [0, 77, 255], [3, 128, 254]), -1)
    rgb = rgb.reshape(-1, 16, 3).astype(np.uint8)
    assert np.abs(apply_lut_u8(identity, rgb).astype(int) - rgb).max() <= 1
    # channels are not mixed up: a LUT that swaps R and B
    swapped = identity[[2, 1, 0]]
    assert np.abs(apply_lut_u8(swapped, rgb).astype(int) - rgb[..., ::-1]).max() <= 1


def test_apply_lut_u8_rejects_other_inputs() -> None:
    lut = torch.zeros(3, 5, 5, 5)
    with pytest.raises(ModelError, match="uint8"):
        apply_lut_u8(lut, np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ModelError, match="uint8"):
        apply_lut_u8(lut, np.zeros((4, 4), np.uint8))


def test_thumbnail_u8_matches_the_model_thumbnail_shape(uec: UEC) -> None:
    from expokit.models.uec import thumbnail

    for h, w in [(300, 500), (40, 90), (32, 32)]:
        rgb = smooth_image(h, w, 0)
        ours = thumbnail_u8(rgb, 32)
        theirs = thumbnail(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, 32)
        assert ours.shape == theirs.shape
        assert float((ours - theirs).abs().mean()) < 0.02


# ----------------------------------------------------------------------------- engine


def test_to_rgb_channels_and_notes() -> None:
    grey = np.full((4, 5), 9, np.uint8)
    rgb, notes = to_rgb(grey, "g.png")
    assert rgb.shape == (4, 5, 3) and (rgb == 9).all() and "grey" in notes[0]
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 200, 7  # B=10, R=200, alpha=7
    rgb, notes = to_rgb(bgra, "a.png")
    assert rgb.shape == (4, 5, 3) and rgb[0, 0].tolist() == [200, 0, 10]
    assert "alpha" in notes[0]
    with pytest.raises(InputError, match="2 channels"):
        to_rgb(np.zeros((4, 5, 2), np.uint8), "two.png")
    with pytest.raises(InputError, match="sample type"):
        to_rgb(np.zeros((4, 5, 3), np.float32), "f.tif")


def test_tiled_run_has_no_seams() -> None:
    image = torch.rand(1, 3, 70, 95)

    def pointwise(x: Any) -> Any:
        return x**2

    out = run_tiled(pointwise, image, tile=32, overlap=8)
    assert torch.allclose(out, image**2, atol=1e-6)


def test_uec_needs_a_reference(uec: UEC) -> None:
    with pytest.raises(InferenceError, match="needs --ref"):
        Enhancer(uec, None, InferConfig(device="cpu"))


def test_config_validation() -> None:
    with pytest.raises(InferenceError, match="lut_size"):
        InferConfig(lut_size=200)
    with pytest.raises(InferenceError, match="tile_overlap"):
        InferConfig(tile=32, tile_overlap=16)
    with pytest.raises(InferenceError, match="device"):
        InferConfig(device="tpu")


def test_nan_output_is_an_error(uec: UEC) -> None:
    enhancer = Enhancer(uec, smooth_image(16, 16, 0), InferConfig(device="cpu", fast_uec=False))
    bias = uec.corrector.conv3.bias
    assert bias is not None
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.fill_(float("nan"))
    try:
        with pytest.raises(ModelError, match="NaN"):
            enhancer(smooth_image(16, 16, 1))
    finally:
        with torch.no_grad():
            bias.copy_(saved)


def test_16bit_images_run_through_the_network(uec: UEC) -> None:
    enhancer = Enhancer(uec, smooth_image(16, 16, 0), InferConfig(device="cpu"))
    rgb16 = smooth_image(20, 24, 2).astype(np.uint16) * 257
    out = enhancer(rgb16)
    assert out.dtype == np.uint8 and out.shape == (20, 24, 3)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def uec_run(tmp_path: Path, uec: UEC) -> Path:
    run = tmp_path / "run"
    save_checkpoint(uec, run, 3)
    save_checkpoint(uec, run, 10)
    return run


def write_bgr(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


def test_infer_folder_of_images(tmp_path: Path, uec_run: Path, uec: UEC) -> None:
    inputs = tmp_path / "in"
    write_bgr(inputs / "a.png", smooth_image(30, 41, 1))
    write_bgr(inputs / "b.jpg", smooth_image(37, 23, 2))
    rgba = np.dstack([smooth_image(12, 14, 3)[..., ::-1], np.full((12, 14), 128, np.uint8)])
    cv2.imwrite(str(inputs / "c.png"), rgba)
    (inputs / "notes.txt").write_text("ignored")
    ref = write_bgr(tmp_path / "ref.png", smooth_image(50, 50, 4))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["infer", "--ckpt", str(uec_run), str(inputs), "--out", str(out), "--ref", str(ref),
         "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "step 10" in result.output and "alpha channel dropped" in result.output
    for name, shape in [("a", (30, 41)), ("b", (37, 23)), ("c", (12, 14))]:
        written = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert written.shape == (*shape, 3) and written.dtype == np.uint8
    assert not (out / "notes.png").exists()
    # the written image is what the network gives (the LUT path is exact to ~1 level)
    source = cv2.imread(str(inputs / "a.png"))[..., ::-1]
    image = torch.from_numpy(source.copy()).permute(2, 0, 1)[None].float() / 255
    reference = cv2.imread(str(ref))[..., ::-1].copy()
    with torch.no_grad():
        want = uec.enhance(image, torch.from_numpy(reference).permute(2, 0, 1)[None] / 255.0)
    got = cv2.imread(str(out / "a.png"))[..., ::-1] / 255.0
    assert psnr(got, want[0].permute(1, 2, 0).numpy()) > 40
    # re-running into the same folder is fine (own outputs)
    again = CliRunner().invoke(
        cli,
        ["infer", "--ckpt", str(uec_run), str(inputs / "a.png"), "--out", str(out), "--ref",
         str(ref), "--no-progress"],
    )  # fmt: skip
    assert again.exit_code == 0, again.output


def test_bad_files_are_recorded_and_others_go_on(tmp_path: Path, uec_run: Path) -> None:
    inputs = tmp_path / "in"
    write_bgr(inputs / "good.png", smooth_image(16, 16, 1))
    (inputs / "broken.jpg").write_bytes(b"not a jpeg")
    ref = write_bgr(tmp_path / "ref.png", smooth_image(16, 16, 4))
    result = CliRunner().invoke(
        cli,
        ["infer", "--ckpt", str(uec_run), str(inputs), "--out", str(tmp_path / "out"),
         "--ref", str(ref), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert (tmp_path / "out" / "good.png").is_file()
    assert not (tmp_path / "out" / "broken.png").exists()
    assert "broken.jpg" in result.output and "1 of 2 inputs failed" in result.output


def test_cli_errors(tmp_path: Path, uec_run: Path) -> None:
    image = write_bgr(tmp_path / "in" / "x.png", smooth_image(16, 16, 1))
    runner = CliRunner()
    no_ref = runner.invoke(
        cli, ["infer", "--ckpt", str(uec_run), str(image), "--out", str(tmp_path / "o")]
    )
    assert no_ref.exit_code == 1 and "needs --ref" in no_ref.output
    bad_ckpt = runner.invoke(
        cli, ["infer", "--ckpt", str(tmp_path / "in"), str(image), "--out", str(tmp_path / "o")]
    )
    assert bad_ckpt.exit_code == 1 and "no checkpoint in it" in bad_ckpt.output
    # writing into the input folder (not empty, not an expokit folder) is refused
    into_inputs = runner.invoke(
        cli,
        ["infer", "--ckpt", str(uec_run), str(image), "--out", str(tmp_path / "in"), "--ref",
         str(image)],
    )  # fmt: skip
    assert into_inputs.exit_code == 1 and "not empty" in into_inputs.output


@pytest.mark.parametrize("lut", [True, False], ids=["lut", "network"])
def test_nan_weights_are_refused_and_nothing_is_written(
    tmp_path: Path, uec: UEC, lut: bool
) -> None:
    """A checkpoint with a NaN weight gave an all-black image with exit 0 on the LUT path;
    now both paths stop before writing, naming the weights file."""
    broken = UEC(feature_size=32)
    broken.load_state_dict(uec.state_dict())
    with torch.no_grad():
        broken.corrector.conv2.weight[3, 5] = float("nan")
    folder = save_checkpoint(broken, tmp_path / "nan_run", 4)
    image = write_bgr(tmp_path / "in" / "x.png", smooth_image(16, 16, 1))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["infer", "--ckpt", str(tmp_path / "nan_run"), str(image), "--out", str(out),
         "--ref", str(image), "--no-progress", *([] if lut else ["--no-lut"])],
    )  # fmt: skip
    assert result.exit_code == 1
    assert str(folder / "model.safetensors") in result.output
    assert "NaN or infinite" in result.output and "corrector.conv2.weight" in result.output
    assert not out.exists()  # refused at load: no folder claimed, no black image


def test_nan_model_outputs_are_errors_on_both_paths(tmp_path: Path, uec: UEC) -> None:
    """Finite weights whose output overflows to NaN (lambda = inf): the LUT path refuses the
    baked table, the network path the output, and ``infer_paths`` writes no image."""
    from expokit.models.checkpoint import CheckpointError

    overflow = UEC(feature_size=32)
    overflow.load_state_dict(uec.state_dict())
    with torch.no_grad():
        # finite weights: every tanh feature is tanh(1), and 16 of them times 3e38 overflow
        overflow.predictor.fc3.weight.zero_()
        overflow.predictor.fc3.bias.fill_(1.0)
        overflow.predictor.fc4.weight.fill_(3e38)
    rgb = smooth_image(20, 24, 1)
    ref = smooth_image(16, 16, 0)
    with pytest.raises(ModelError, match="LUT holds NaN"):
        fast_uec(overflow, rgb, thumbnail_u8(ref, overflow.feature_size))
    with pytest.raises(ModelError, match="LUT holds NaN"):
        Enhancer(overflow, ref, InferConfig(device="cpu"))(rgb)
    with pytest.raises(ModelError, match="NaN"):
        Enhancer(overflow, ref, InferConfig(device="cpu", fast_uec=False))(rgb)
    image = write_bgr(tmp_path / "in" / "x.png", rgb)
    results = infer_paths(overflow, [image], tmp_path / "out", reference=image, progress=False)
    assert not results[0].ok and "NaN" in str(results[0].error)
    assert not (tmp_path / "out" / "x.png").exists()
    # an in-memory model with NaN weights is refused before anything is claimed or written
    with torch.no_grad():
        overflow.predictor.fc4.weight.fill_(float("nan"))
    with pytest.raises(CheckpointError, match=r"predictor\.fc4\.weight"):
        infer_paths(overflow, [image], tmp_path / "out2", reference=image, progress=False)
    assert not (tmp_path / "out2").exists()


def test_output_over_an_input_is_refused(tmp_path: Path, uec: UEC) -> None:
    out = tmp_path / "out"
    out.mkdir()
    image = write_bgr(out / "x.png", smooth_image(16, 16, 1))
    (out / ".expokit").mkdir()
    (out / ".expokit" / "root.json").write_text('{"kind": "inference"}')
    results = infer_paths(uec, [image], out, reference=image, progress=False)
    assert not results[0].ok and "is one of this command's inputs" in str(results[0].error)
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"x")
    with pytest.raises(OutputError, match="is a file"):
        infer_paths(uec, [image], a_file, reference=image, progress=False)


# ----------------------------------------------------------------------------- video


def make_video(path: Path, frames: int, size: tuple[int, int] = (64, 48)) -> Path:
    """A short H.264 + AAC clip: moving colour bars and a 440 Hz tone."""
    w, h = size
    rate = 10
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate={rate}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050",
         "-frames:v", str(frames), "-t", str(frames / rate),
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


def count_frames(path: Path) -> int:
    run = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
         "-fps_mode", "passthrough", "-f", "null", "-"],
        capture_output=True, check=True,
    )  # fmt: skip
    import re

    found = re.findall(rb"frame=\s*(\d+)", run.stderr)
    return int(found[-1])


def test_video_keeps_audio_and_frame_count(tmp_path: Path, uec_run: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=7)
    ref = write_bgr(tmp_path / "ref.png", smooth_image(32, 32, 4))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["infer", "--ckpt", str(uec_run), str(video), "--out", str(out), "--ref", str(ref),
         "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = out / "clip.mp4"
    info = probe_video(written)
    assert (info.width, info.height) == (64, 48)
    assert info.audio_codec == "aac"
    assert count_frames(written) == count_frames(video) == 7
    assert "(7 frames)" in result.output


def test_broken_video_is_recorded(tmp_path: Path, uec: UEC) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    ref = smooth_image(16, 16, 0)
    cv2.imwrite(str(tmp_path / "ref.png"), ref)
    results = infer_paths(uec, [bad], tmp_path / "out", reference=tmp_path / "ref.png",
                          progress=False)  # fmt: skip
    assert not results[0].ok and "bad.mp4" in str(results[0].error)


# ------------------------------------------------------------- one run's result per folder


def _images(folder: Path, names: list[str]) -> list[Path]:
    return [write_bgr(folder / name, smooth_image(16, 16, i)) for i, name in enumerate(names)]


def test_rerun_with_fewer_inputs_leaves_only_its_own_outputs(tmp_path: Path, uec: UEC) -> None:
    ref = write_bgr(tmp_path / "ref.png", smooth_image(16, 16, 9))
    a, b, c = _images(tmp_path / "in", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    first = infer_folder(uec, [a, b, c], out, reference=ref, progress=False)
    assert all(r.ok for r in first.results) and first.removed == () and first.kept == ()
    record = read_infer_record(out)
    assert record is not None and [o.file for o in record.outputs] == ["a.png", "b.png", "c.png"]
    assert all(o.sha256 for o in record.outputs)
    (out / "notes.txt").write_text("mine")  # a person's file, never infer's
    second = infer_folder(uec, [b], out, reference=ref, progress=False)
    assert second.removed == ("a.png", "c.png")
    assert second.kept == ("notes.txt: not written by expokit infer (left in place)",)
    assert sorted(p.name for p in out.iterdir() if p.name != ".expokit") == ["b.png", "notes.txt"]
    record = read_infer_record(out)
    assert record is not None and [o.file for o in record.outputs] == ["b.png"]


def test_changed_earlier_output_and_foreign_same_name_are_kept(tmp_path: Path, uec: UEC) -> None:
    ref = write_bgr(tmp_path / "ref.png", smooth_image(16, 16, 9))
    a, b = _images(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    infer_folder(uec, [a], out, reference=ref, progress=False)
    (out / "a.png").write_bytes(b"edited by hand")
    (out / "b.png").write_bytes(b"a person's b")
    run = infer_folder(uec, [b], out, reference=ref, progress=False)
    assert not run.results[0].ok and "not an earlier output" in str(run.results[0].error)
    assert (out / "b.png").read_bytes() == b"a person's b"
    assert (out / "a.png").read_bytes() == b"edited by hand"
    assert run.removed == ()
    assert "a.png: not removed: changed since expokit infer wrote it" in run.kept


def test_damaged_infer_record_is_named(tmp_path: Path, uec: UEC) -> None:
    ref = write_bgr(tmp_path / "ref.png", smooth_image(16, 16, 9))
    (a,) = _images(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    infer_folder(uec, [a], out, reference=ref, progress=False)
    (out / ".expokit" / "infer.json").write_text('{"format": "expokit-infer", "outputs": 3}')
    with pytest.raises(InferenceError, match=r"infer\.json: infer record field 'outputs'"):
        infer_folder(uec, [a], out, reference=ref, progress=False)


def test_second_concurrent_infer_is_refused_in_use(tmp_path: Path, uec_run: Path) -> None:
    """A first infer holds the folder (here: a child process holding the lock as it does);
    the second, through the CLI, ends with one line saying the folder is in use."""
    import sys

    ref = write_bgr(tmp_path / "ref.png", smooth_image(16, 16, 9))
    (a,) = _images(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    infer_folder(UEC(feature_size=32).eval(), [a], out, reference=ref, progress=False)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from expokit.core.lock import RootLock\n"
         "with RootLock(sys.argv[1], 'expokit infer'):\n"
         "    print('held', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(
            cli,
            ["infer", "--ckpt", str(uec_run), str(a), "-o", str(out), "--ref", str(ref),
             "--no-progress"],
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert "in use" in result.output and "expokit infer" in result.output
    assert "Traceback" not in result.output
