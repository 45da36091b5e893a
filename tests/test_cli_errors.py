"""One error decorator for every CLI command, and the shared helpers issue 12 put in core."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from expokit.cli import cli
from expokit.cli.common import describe_os_error, reports_errors
from expokit.core.errors import ExpokitError, InputFileError, OutputError, is_disk_full
from expokit.core.exif import read_exif_tags
from expokit.core.runs import DISK_FULL, output_error_kind
from expokit.core.transfer import LUMA_RGB
from tests.curation.conftest_tools import Spec, make_dataset


def _failing(exc: BaseException) -> click.Command:
    @click.command()
    @reports_errors
    def command() -> None:
        click.echo("partial result")
        raise exc

    return command


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
        else:
            found.append((f"{prefix}{name}", command))
    return found


def test_every_cli_command_reports_errors() -> None:
    commands = _commands(cli)
    assert len(commands) >= 20  # the walk really found the subcommands
    unwrapped = [name for name, c in commands if not getattr(c.callback, "reports_errors", False)]
    assert unwrapped == []


def test_expokit_error_is_one_red_line_and_exit_1() -> None:
    result = CliRunner().invoke(_failing(InputFileError("rig.toml", "bad 'bracket'")))
    assert result.exit_code == 1
    assert result.stderr == "error: rig.toml: bad 'bracket'\n"
    assert result.stdout == "partial result\n"  # printed before the failure, still there
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_real_command_failing_with_expokit_error(tmp_path: Path) -> None:
    missing = tmp_path / "rig.toml"
    result = CliRunner().invoke(cli, ["capture", "doctor", "--rig", str(missing)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert "Traceback" not in result.output


def test_disk_full_os_error_names_the_file() -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/a.png")
    result = CliRunner().invoke(_failing(full))
    assert result.exit_code == 1
    assert result.stderr == "error: disk full (or quota exceeded) while writing /data/out/a.png\n"


def test_permission_error_names_the_file() -> None:
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/etc/shadow")
    result = CliRunner().invoke(_failing(denied))
    assert result.exit_code == 1
    assert result.stderr == "error: /etc/shadow: permission denied\n"


def test_other_os_errors_keep_their_traceback() -> None:
    missing = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "x")
    result = CliRunner().invoke(_failing(missing))
    assert result.exception is missing  # not turned into a vague one-liner
    assert describe_os_error(missing) is None


def test_wrapped_disk_full_output_error_keeps_its_message() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise OutputError("disk full while writing /o/x.jpg") from exc
    except OutputError as exc:
        wrapped = exc
    result = CliRunner().invoke(_failing(wrapped))
    assert result.exit_code == 1 and result.stderr == "error: disk full while writing /o/x.jpg\n"


@pytest.mark.parametrize("code", sorted({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}))
def test_is_disk_full_by_errno_through_the_cause_chain(code: int) -> None:
    full = OSError(code, os.strerror(code))
    assert is_disk_full(full)
    wrapped = OutputError("cannot write x")
    wrapped.__cause__ = full
    assert is_disk_full(wrapped) and output_error_kind(wrapped) == DISK_FULL


def test_is_disk_full_never_reads_the_message() -> None:
    assert not is_disk_full(OutputError("disk full while writing x"))  # no errno behind it
    assert output_error_kind(OutputError("disk full while writing x")) == "output"
    assert not is_disk_full(OSError(errno.EACCES, "No space left on device"))
    hidden = ExpokitError("x")
    hidden.__context__ = OSError(errno.ENOSPC, "full")
    assert is_disk_full(hidden)
    hidden.__suppress_context__ = True  # raise ... from None
    assert not is_disk_full(hidden)


def test_read_exif_tags_of_a_jpeg_and_of_junk(tmp_path: Path) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "ExpoCam"  # Make
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(path, exif=exif.tobytes())
    assert str(read_exif_tags(path)["Image Make"]).strip() == "ExpoCam"
    assert str(read_exif_tags(path.read_bytes())["Image Make"]).strip() == "ExpoCam"
    assert read_exif_tags(b"\x00not an image") == {}
    assert read_exif_tags(tmp_path / "missing.jpg") == {}


def test_luma_weights_are_rec709_and_read_only() -> None:
    assert LUMA_RGB.tolist() == [0.2126, 0.7152, 0.0722]
    assert np.isclose(LUMA_RGB.sum(), 1.0)
    with pytest.raises(ValueError):
        LUMA_RGB[0] = 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--lr", "nan"], "'--lr': 'nan' is not a finite number"),
        (["train", "--max-minutes", "inf"], "'--max-minutes': 'inf' is not a finite number"),
        (["eval", "--min-ev-error", "inf"], "'--min-ev-error': 'inf' is not a finite number"),
        (["eval", "--split", ""], "splits: give one or more split names"),
        (["infer", "x.png", "--ckpt", "run", "-o", "out", "--tile", "16"], "tile_overlap"),
    ],
)
def test_models_command_options_are_checked_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    """Click's FloatRange lets NaN and infinity through; every float option refuses them
    (cli.common.FiniteFloatRange), and every option a config checks is a usage error naming
    it (no traceback)."""
    monkeypatch.chdir(tmp_path)
    if args[0] == "eval":
        args = [*args, str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["align", "check", "a.png", "b.png", "--max-shift", "nan"],
        ["align", "check", "a.png", "b.png", "--expected-ev", "inf"],
        ["calibrate", "sync", "a.mp4", "b.mp4", "--max-offset", "nan"],
        ["curate", "build", "src", "-o", "out", "--min-psnr", "nan"],
        ["simulate", "generated", "-o", "out", "--seconds", "inf"],
    ],
)
def test_no_float_option_takes_nan_or_infinity(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "is not a finite number" in result.output and "Traceback" not in result.output


def test_build_on_a_folder_of_raw_files_names_the_render_step(tmp_path: Path) -> None:
    raws = tmp_path / "raws"
    raws.mkdir()
    (raws / "IMG_0001.CR2").write_bytes(b"not decoded: the kind is told by the suffix")
    result = CliRunner().invoke(cli, ["curate", "build", str(raws), "-o", str(tmp_path / "ds")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        f"{raws} holds RAW files: render them first: expokit render {raws} -o RENDERS, "
        "then expokit curate build RENDERS -o DATASET"
    ) in result.output


def test_msec_export_of_evs_without_a_token_leads_with_the_cause(tmp_path: Path) -> None:
    spec = Spec(stills={"alpha": "train", "bravo": "val", "charlie": "test"}, evs=(-2.0,), clips=())
    make_dataset(tmp_path / "ds", spec)
    result = CliRunner().invoke(
        cli,
        ["curate", "export", str(tmp_path / "ds"), "--layout", "msec", "-o", str(tmp_path / "x"),
         "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("error: 3 row(s): input is -2.00 EV from the target; no MSEC token")
    assert "(N1.5 N1 0 P1 P1.5)" in lines[0]
    assert lines[1].startswith("error: render the RAWs on the MSEC ladder (expokit render")
    first_missing = next(i for i, line in enumerate(lines) if "is missing" in line)
    assert first_missing > 1
