"""Shooting with the fake rig: sync, naming, journal, faults, resume, bad input."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from expokit.capture.backends.base import CameraNotFound, NotSupported, SettingValueError
from expokit.capture.backends.fake import body_for
from expokit.capture.commands import apply_settings, doctor, resume, shoot
from expokit.capture.journal import read_journal
from expokit.capture.rig_config import RetryPolicy, RigConfig, RoleConfig, load_rig_config
from expokit.capture.runner import Rig, Shooter
from expokit.capture.session import Session
from expokit.core.errors import OutputError
from tests.capture.conftest import write_rig


def events(session: Session, kind: str) -> list[dict]:
    return [e for e in read_journal(session.root / "journal.jsonl")[0] if e["event"] == kind]


def test_pairs_named_journaled_and_checked(rig_config: RigConfig) -> None:
    session, report = shoot(rig_config, "pair", count=3, progress=False)
    names = sorted(p.name for p in session.files_dir.iterdir())
    sid = session.session_id
    assert names == sorted(
        f"{sid}_{i:04d}_{role}_{tok}.jpg"
        for i in (1, 2, 3)
        for role, tok in (("reference", "0"), ("test", "N2"))
    )
    assert report.shots_done == 3 and report.files == 6 and not report.shots_failed
    assert len(events(session, "planned")) == 3 and len(events(session, "shot_done")) == 3
    downloads = events(session, "downloaded")
    assert all(len(d["sha256"]) == 64 and d["size"] > 0 for d in downloads)
    checks = events(session, "exif_check")
    assert len(checks) == 6 and all(c["ok"] for c in checks)
    test_check = next(c for c in checks if c["role"] == "test")
    assert test_check["exif"]["exposure_time_s"] == pytest.approx(1 / 500)  # ev_offset -2
    triggered = events(session, "triggered")
    assert all(t["t_after"] >= t["t_before"] for t in triggered)
    saved = load_rig_config(rig_config.source) if rig_config.source else None
    assert (session.root / "rig.json").exists() and saved is not None


def test_threaded_trigger_is_synchronized_sequential_is_not(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    threaded = load_rig_config(write_rig(tmp_path / "t", "threaded", latency=0.1))
    _, report = shoot(threaded, "pair", count=3, progress=False)
    assert max(report.skews_s) < 0.05  # released together by the barrier
    (tmp_path / "s").mkdir()
    sequential = load_rig_config(write_rig(tmp_path / "s", "sequential", latency=0.1))
    session, report = shoot(sequential, "pair", count=2, progress=False)
    assert not report.skews_s  # sequential shots are not counted as synchronized
    triggered = events(session, "triggered")
    # Each of the 2 shots triggers both bodies exactly once.
    assert Counter((t["index"], t["role"]) for t in triggered) == {
        (i, r): 1 for i in (1, 2) for r in ("reference", "test")
    }
    by_index: dict[int, list[float]] = {}
    for t in triggered:
        by_index.setdefault(t["index"], []).append(t["t_before"])
    assert sorted(by_index) == [1, 2]
    assert all(max(v) - min(v) >= 0.09 for v in by_index.values())  # one after the other


def test_bracket_ladder_on_test_role(rig_config: RigConfig) -> None:
    session, report = shoot(rig_config, "bracket", progress=False)
    plans = events(session, "planned")
    assert [p["roles"]["test"]["ev"] for p in plans] == [-3.0, -2.0, -1.0]
    assert [p["roles"]["test"]["settings"]["shutterspeed"] for p in plans] == [
        "1/1000",
        "1/500",
        "1/250",
    ]
    assert report.shots_done == 3


def test_video_pair(rig_config: RigConfig) -> None:
    session, report = shoot(rig_config, "video", seconds=0.3, progress=False)
    files = sorted(p.name for p in session.files_dir.iterdir())
    assert len(files) == 2 and all(f.endswith(".avi") for f in files)
    assert report.shots_done == 1


def test_busy_is_retried_with_backoff(rig_config: RigConfig) -> None:
    rig_config.fake["cameras"][1]["faults"] = {"busy": 2}
    session, report = shoot(rig_config, "pair", count=2, progress=False)
    retries = events(session, "retry")
    assert len(retries) == 2 and all(r["code"] == -110 for r in retries)
    assert report.shots_done == 2 and report.retries == 2


def test_disconnect_reconnects_by_serial_and_reapplies(rig_config: RigConfig) -> None:
    rig_config.fake["cameras"][1]["faults"] = {
        "disconnect_after_triggers": 1,
        "replug_after_s": 0.1,
    }
    session, report = shoot(rig_config, "pair", count=3, progress=False)
    assert report.reconnects == 1 and report.shots_done == 3 and not report.shots_failed
    (reconnected,) = events(session, "reconnected")
    assert reconnected["role"] == "test" and reconnected["port"] != "usb:fake,002"
    assert len(list(session.files_dir.iterdir())) == 6


def test_exhausted_retries_fail_the_shot_then_resume_finishes(rig_config: RigConfig) -> None:
    rig_config.fake["cameras"][0]["faults"] = {"io_error": 10}
    session, report = shoot(rig_config, "pair", count=2, progress=False)
    assert report.shots_failed == [1, 2]  # attempts=4 per shot, 10 errors
    assert len(events(session, "error")) >= 2
    assert body_for("REF-1").spec.faults.io_error == 10 - 2 * 4
    # The cable is fixed: the fake bus is rebuilt from rig.json, without the fault.
    saved = json.loads((session.root / "rig.json").read_text())
    saved["fake"]["cameras"][0]["faults"] = {}
    (session.root / "rig.json").write_text(json.dumps(saved))
    session2, report2 = resume(session.root, progress=False)
    assert report2.shots_done == 2 and not report2.shots_failed
    partial = [
        e for e in events(session2, "triggered") if e["seq"] > events(session, "error")[-1]["seq"]
    ]
    assert {t["role"] for t in partial} == {"reference"}  # test files were already there
    state = session2.state()
    assert not state.pending
    downloaded = Counter((e["index"], e["role"]) for e in events(session2, "downloaded"))
    assert set(downloaded) == {(i, r) for i in (1, 2) for r in ("reference", "test")}
    assert max(downloaded.values()) == 1  # nothing downloaded twice


def test_ignored_setting_is_flagged_by_exif(rig_config: RigConfig) -> None:
    rig_config.fake["cameras"][1]["faults"] = {"ignore_settings": ["shutterspeed"]}
    session, report = shoot(rig_config, "pair", count=1, progress=False)
    assert report.exif_mismatches == 1
    (bad,) = [c for c in events(session, "exif_check") if c["ok"] is False]
    assert bad["role"] == "test" and bad["mismatches"][0]["setting"] == "shutter"


def test_orphan_file_is_adopted_not_overwritten(rig_config: RigConfig) -> None:
    with Rig(rig_config) as rig:
        session = Session.create(rig_config)
        (plan,) = Shooter(rig, session, progress=False).plan_pairs(1)
        orphan = session.files_dir / session.filename(plan, "test", ".JPG")
        orphan.write_bytes(b"written just before a crash")
        report = Shooter(rig, session, progress=False).run([plan])
        session.close()
    assert orphan.read_bytes() == b"written just before a crash"
    recovered = [e for e in events(session, "downloaded") if e.get("recovered")]
    assert [e["role"] for e in recovered] == ["test"] and report.shots_done == 1
    triggers = events(session, "triggered")
    assert [t["role"] for t in triggers] == ["reference"]  # only the missing role fired


def _no_session_created(config: RigConfig) -> bool:
    root = config.output_root
    return not root.exists() or not any(root.iterdir())


def test_bad_input_fails_before_any_shot(rig_config: RigConfig, tmp_path: Path) -> None:
    missing = dataclasses.replace(
        rig_config, roles={**rig_config.roles, "test": RoleConfig("NOPE")}
    )
    with pytest.raises(CameraNotFound, match=r"test camera serial NOPE .*REF-1.*TST-2"):
        shoot(missing, "pair", progress=False)
    unknown = dataclasses.replace(
        rig_config,
        roles={**rig_config.roles, "test": RoleConfig("TST-2", {"white_balance": "auto"})},
    )
    with pytest.raises(NotSupported, match="white_balance not supported by Fake Canon EOS 5D"):
        shoot(unknown, "pair", progress=False)
    bad_value = dataclasses.replace(
        rig_config, roles={**rig_config.roles, "reference": RoleConfig("REF-1", {"iso": "125"})}
    )
    with pytest.raises(SettingValueError, match="allowed: 100, 200"):
        shoot(bad_value, "pair", progress=False)
    assert _no_session_created(rig_config)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        shoot(dataclasses.replace(rig_config, output_root=blocker), "pair", progress=False)


def test_doctor_and_apply(rig_config: RigConfig) -> None:
    checks = {c.name: c for c in doctor(rig_config)}
    assert checks["cameras"].status == "ok" and checks["test settings"].status == "ok"
    assert "shutterspeed=1/500" in checks["test settings"].detail
    assert apply_settings(rig_config) == {"reference": [], "test": []}
    rig_config.fake["cameras"][0]["faults"] = {"claim_failure": True}
    checks = {c.name: c for c in doctor(rig_config)}
    assert checks["roles"].status == "fail" and "-53" in checks["roles"].detail


def test_retry_policy_delays() -> None:
    assert RetryPolicy(attempts=4, backoff_s=0.1, backoff_factor=2).delays() == pytest.approx(
        [0.1, 0.2, 0.4]
    )
