"""One command-line convention (expokit/cli/common.py): DATASET is positional, -j/--jobs
means worker processes, --loader-workers DataLoader workers, --device defaults to auto,
and every option has help that shows its default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from expokit.cli import cli
from expokit.cli.curate_build import QA_OPTIONS
from expokit.core.errors import ExpokitError
from expokit.curation.build.config import QaThresholds

DEPRECATED_DATA = "warning: --data is deprecated; pass the dataset as the first argument"


def _commands(group: click.Group, prefix: str = "expokit") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found += _commands(command, path)
        else:
            found.append((path, command))
    return found


def _shows_default(option: click.Option, ctx: click.Context) -> bool:
    record = option.get_help_record(ctx)
    return record is not None and "default:" in record[1]


def test_every_option_has_help_and_shows_its_default() -> None:
    missing_help, hidden_default = [], []
    for path, command in _commands(cli):
        ctx = click.Context(command, info_name=path, show_default=True)
        for option in command.params:
            if not isinstance(option, click.Option) or option.hidden:
                continue
            if not option.help:
                missing_help.append(f"{path} {option.opts[0]}")
            default = option.get_default(ctx, call=False)
            # Click's "no default" is a sentinel (UNSET) for required and repeatable options.
            unset = default is None or default == () or "UNSET" in repr(default)
            if option.is_flag or unset:
                continue
            if not _shows_default(option, ctx):
                hidden_default.append(f"{path} {option.opts[0]}")
    assert not missing_help, f"options without help: {missing_help}"
    assert not hidden_default, f"defaults not shown: {hidden_default}"


def test_the_root_group_shows_defaults() -> None:
    help_text = CliRunner().invoke(cli, ["curate", "report", "--help"]).output
    assert "[default: 2; x>=1]" in help_text  # -j/--jobs of report


def test_qa_option_help_states_the_qa_threshold_defaults() -> None:
    build = cli.commands["curate"].commands["build"]  # type: ignore[attr-defined]
    helps = {p.name: p.help or "" for p in build.params}
    defaults = QaThresholds()
    for option, field in QA_OPTIONS.items():
        assert f"[default: {getattr(defaults, field)}]" in helps[option], option


def test_dataset_is_positional_everywhere() -> None:
    for path, command in _commands(cli):
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        names = [p.name for p in arguments]
        if "root" in names:
            metavar = arguments[names.index("root")].make_metavar(click.Context(command))
            assert metavar in ("DATASET", "[DATASET]"), path
        options = [o for p in command.params if not getattr(p, "hidden", False) for o in p.opts]
        assert "--data" not in options, f"{path}: --data is shown"
    for path in ("train", "eval"):
        assert "root" in [p.name for p in cli.commands[path].params]


def test_device_has_one_default_and_one_help() -> None:
    seen = set()
    for _path, command in _commands(cli):
        for param in command.params:
            if isinstance(param, click.Option) and "--device" in param.opts:
                seen.add((param.default, param.help))
    assert len(seen) == 1 and next(iter(seen))[0] == "auto", seen


class _Stop(ExpokitError):
    pass


@pytest.fixture
def train_overrides(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``expokit train`` stops after parsing; the overrides it resolved are recorded."""
    import expokit.models.train

    seen: list[dict[str, Any]] = []

    def resolve(model: Any, *, config_file: Any, overrides: dict[str, Any]) -> Any:
        seen.append(overrides)
        raise _Stop("stopped after parsing")

    monkeypatch.setattr(expokit.models.train, "resolve_config", resolve)
    return seen


def test_train_takes_dataset_positionally_and_data_as_deprecated_alias(
    tmp_path: Path, train_overrides: list[dict[str, Any]]
) -> None:
    runner = CliRunner()
    new = runner.invoke(cli, ["train", str(tmp_path), "--model", "uec", "-o", "run"])
    old = runner.invoke(cli, ["train", "--data", str(tmp_path), "--model", "uec", "-o", "run"])
    assert new.exit_code == old.exit_code == 1 and "stopped after parsing" in new.output
    assert train_overrides[0]["data"] == train_overrides[1]["data"] == str(tmp_path)
    assert DEPRECATED_DATA not in new.output
    assert old.output.count(DEPRECATED_DATA) == 1


def test_train_loader_workers_and_device(
    tmp_path: Path, train_overrides: list[dict[str, Any]]
) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["train", str(tmp_path), "--loader-workers", "3"])
    old = runner.invoke(cli, ["train", str(tmp_path), "--workers", "2", "--device", "cpu"])
    assert "warning: --workers is deprecated; use --loader-workers" in old.output
    assert [o["num_workers"] for o in train_overrides] == [3, 2]
    # The shown default (auto) is the recipe's: it never overrides a --config file.
    assert [o["device"] for o in train_overrides] == [None, "cpu"]
    refused = runner.invoke(cli, ["train", str(tmp_path), "-j", "2"])
    assert refused.exit_code == 2 and "No such option '-j'" in refused.output


def test_eval_takes_dataset_positionally_and_data_as_deprecated_alias(tmp_path: Path) -> None:
    runner = CliRunner()
    # An empty --split is refused after parsing: both forms reach it.
    new = runner.invoke(cli, ["eval", str(tmp_path), "--split", ""])
    old = runner.invoke(cli, ["eval", "--data", str(tmp_path), "--split", ""])
    for result in (new, old):
        assert result.exit_code == 2 and "give one or more split names" in result.output
    assert DEPRECATED_DATA not in new.output and old.output.count(DEPRECATED_DATA) == 1
    missing = runner.invoke(cli, ["eval"])
    assert missing.exit_code == 2 and "Missing argument 'DATASET'" in missing.output


def test_jobs_means_processes_and_workers_is_a_hidden_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import expokit.curation.rendering.render

    seen: list[int] = []

    def render_batch(*_args: Any, workers: int, **_kwargs: Any) -> Any:
        seen.append(workers)
        raise _Stop("stopped after parsing")

    monkeypatch.setattr(expokit.curation.rendering.render, "render_batch", render_batch)
    runner = CliRunner()
    base = ["render", str(tmp_path), "-o", str(tmp_path / "out")]
    runner.invoke(cli, [*base, "-j", "3"])
    runner.invoke(cli, [*base, "--jobs", "4"])
    old = runner.invoke(cli, [*base, "--workers", "5"])
    runner.invoke(cli, base)
    assert seen == [3, 4, 5, 1]
    assert "warning: --workers is deprecated; use -j/--jobs" in old.output
    assert "--workers" not in runner.invoke(cli, ["render", "--help"]).output
