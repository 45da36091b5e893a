"""The generated dataset card (README.md) says what is in the dataset."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from expokit.capture.commands import shoot
from expokit.cli.curate_tools import register
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.dataset.card import cameras, column_table, render_card, write_card
from expokit.curation.dataset.format import (
    FORMAT_VERSION,
    INFO_FILE,
    MANIFEST_COLUMNS,
    load_dataset,
)
from tests.curation.build.test_build_capture import (
    SHIFT,
    SIZE,
    rig_with_sources,
    translation,
    write_rig_calibration,
)
from tests.curation.conftest_tools import Spec, make_dataset


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("card") / "ds"
    make_dataset(folder, Spec(shifts={"kitchen": 4}))
    return folder


def _section(card: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_card_counts_cameras_ev_qa_licence_citation(root: Path) -> None:
    path = write_card(root)
    assert path == root / "README.md"
    card = path.read_text()
    assert card.startswith("# synthetic-test\n")
    contents = _section(card, "Contents")
    # per split: pairs, scenes, clips, passed, flagged
    assert "| train | 19 | 3 | 2 |" in contents
    assert "| val | 5 | 1 | 0 | 0 | 5 |" in contents  # kitchen: all misaligned
    assert "| **total** | 34 | 6 | 3 |" in contents
    assert "- Canon EOS 5D Mark IV (reference)" in _section(card, "Cameras")
    ev = _section(card, "Exposure (EV) distribution")
    counts = dict(re.findall(r"^\| ([-+0-9.]+) \| (\d+) \|", ev, re.M))
    assert counts == {"-1.5": "4", "-1": "13", "0": "4", "+1": "9", "+1.5": "4"}
    qa = _section(card, "QA summary")
    assert "PSNR (dB)" in qa and "| misaligned | 5 |" in qa
    assert "min_psnr_db" in qa
    assert _section(card, "Licence").strip() == "`CC-BY-4.0`"
    citation = _section(card, "Citation")
    assert "```bibtex\n@misc{synthetictest" in citation and citation.rstrip().endswith("```")
    assert "opencv version" in _section(card, "Provenance")


def test_card_without_licence_or_with_custom_citation(root: Path, tmp_path: Path) -> None:
    dataset = load_dataset(root)
    dataset.info = replace(dataset.info, license=None)
    card = render_card(dataset)
    assert "**Not set.**" in _section(card, "Licence")
    dataset.info = replace(dataset.info, citation="@article{lab2027, title={Our data}}")
    assert "```bibtex\n@article{lab2027, title={Our data}}\n```" in render_card(dataset)
    provenance = {
        **(dataset.info.provenance or {}),
        "cameras": [{"role": "reference", "make": "Canon", "model": "EOS R5", "serial": "042"}],
        "sources": [{"session": "s1", "camera": "Sony A7 III"}],
    }
    dataset.info = replace(dataset.info, provenance=provenance)
    assert cameras(dataset.info) == ["Canon EOS R5 #042 (reference)", "Sony A7 III"]


def test_card_export_section(root: Path) -> None:
    card = render_card(
        load_dataset(root),
        export={
            "layout": "dime",
            "rows_total": 34,
            "rows_exported": 11,
            "groups_exported": 2,
            "files": 24,
            "issues": {"skipped:short-clip": 3},
            "notes": ["val skipped"],
        },
    )
    section = _section(card, "This export: `dime` layout")
    assert "11 of 34 manifest rows exported as 2 clips (24 data files)" in section
    assert "| skipped:short-clip | 3 |" in section and "- val skipped" in section
    assert "np/{train,test}/{LQ,GT}" in section


def test_cli_card_and_csv(root: Path, tmp_path: Path) -> None:
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, ["card", str(root)])
    assert result.exit_code == 0 and "README.md" in result.output
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(group, ["csv", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    header = out.read_text().splitlines()[0].split(",")
    assert header == list(MANIFEST_COLUMNS)
    assert len(out.read_text().splitlines()) == 35
    info = json.loads((root / INFO_FILE).read_text())
    assert info["format_version"] == FORMAT_VERSION == 2


def test_column_table_has_every_column() -> None:
    table = column_table()
    rows = [line for line in table.splitlines()[2:]]
    assert [r.split("`")[1] for r in rows] == list(MANIFEST_COLUMNS)
    assert "| `frame_index` | `Int64` | frame |" in table


def test_session_cameras_are_listed_with_role_and_serial(root: Path) -> None:
    info = replace(
        load_dataset(root).info,
        provenance={"sources": [{"kind": "capture", "sessions": [{"cameras": [
            {"role": "reference", "serial": "0123", "make": "Canon",
             "model": "Canon EOS 5D Mark IV"},
            {"role": "test", "serial": "SIMTEST0000"},
        ]}]}]},
    )  # fmt: skip
    assert cameras(info) == [
        "reference: Canon EOS 5D Mark IV (serial 0123)",
        "test: serial SIMTEST0000",
    ]


def test_capture_build_records_cameras_and_card_sets_name_licence_citation(
    tmp_path: Path,
) -> None:
    """A dataset built from a (fake-backend) capture session lists the session's bodies;
    `curate card --name --license --citation FILE.bib` sets info.json and rewrites README."""
    session, _ = shoot(rig_with_sources(tmp_path), "pair", count=1, progress=False)
    calibration = write_rig_calibration(
        tmp_path / "rig_calibration.json", translation(*SHIFT), SIZE, "horizontal"
    )
    ds = tmp_path / "ds"
    summary = build_dataset(
        [session.root], ds, BuildConfig(), rig_calibration=calibration, progress=False
    )
    assert summary.ok, summary.failures
    recorded = load_dataset(ds).info.sources[0]["sessions"][0]["cameras"]
    assert [c["role"] for c in recorded] == ["reference", "test"]
    assert all(c["serial"] and c["model"] for c in recorded)
    listed = cameras(load_dataset(ds).info)
    assert listed and listed[0].startswith("reference: ") and "(serial REF-1)" in listed[0]

    bib = tmp_path / "ds.bib"
    bib.write_text("@misc{x2024, title = {X}}\n", encoding="utf-8")
    group = click.Group()
    register(group)
    result = CliRunner().invoke(
        group, ["card", str(ds), "--name", "x", "--license", "CC-BY-4.0", "--citation", str(bib)]
    )
    assert result.exit_code == 0, result.output
    info = json.loads((ds / INFO_FILE).read_text())
    assert (info["name"], info["license"]) == ("x", "CC-BY-4.0")
    assert info["citation"] == "@misc{x2024, title = {X}}"
    card = (ds / "README.md").read_text()
    assert card.startswith("# x") and "`CC-BY-4.0`" in card and "@misc{x2024" in card
    section = _section(card, "Cameras")
    assert all(f"- {name}" in section for name in listed)
    empty = CliRunner().invoke(group, ["card", str(ds), "--license", " "])
    assert empty.exit_code == 2 and "must not be empty" in empty.output


def test_a_rig_json_without_models_takes_the_model_each_body_reported(tmp_path: Path) -> None:
    """A real rig's rig.json names serials only: the card then shows the model each body
    reported when capture applied its settings (journaled in settings_applied)."""
    import dataclasses

    from expokit.curation.build.sources import session_cameras

    config = rig_with_sources(tmp_path)
    bodies = [{k: v for k, v in c.items() if k != "model"} for c in config.fake["cameras"]]
    session, _ = shoot(
        dataclasses.replace(config, fake={"cameras": bodies}), "pair", count=1, progress=False
    )
    rig = json.loads((session.root / "rig.json").read_text(encoding="utf-8"))
    assert all("model" not in c for c in rig.get("fake", {}).get("cameras", []))
    found = session_cameras(session.root)
    assert [c["role"] for c in found] == ["reference", "test"]
    assert all(c.get("model") for c in found), found  # the fake bodies' default models
