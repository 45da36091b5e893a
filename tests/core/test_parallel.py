"""Process pools: a dying worker is named, the rest finish, orphans exit with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from expokit.core.parallel import WorkerDiedError, map_unordered
from tests.core._workers import square_or_die


def _on_error(item: tuple[int, str], exc: BaseException) -> str:
    return f"failed {item[0]}: {type(exc).__name__}: {exc}"


@pytest.mark.slow
def test_a_dying_worker_is_named_and_the_others_finish() -> None:
    items = [(i, "die" if i == 3 else ("raise" if i == 5 else "ok")) for i in range(8)]
    results = dict(
        map_unordered(square_or_die, items, workers=2, on_error=_on_error, progress=False)
    )
    assert sorted(results) == list(range(8))
    assert results[3].startswith("failed 3: WorkerDiedError: worker process died (SIGKILL")
    assert results[5] == "failed 5: ValueError: bad item 5"
    for i in (0, 1, 2, 4, 6, 7):
        assert results[i] == i * i, (i, results[i])


def test_worker_died_error_is_an_expokit_error() -> None:
    from expokit.core.errors import ExpokitError

    assert issubclass(WorkerDiedError, ExpokitError)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from expokit.core.parallel import map_unordered
        from tests.core._workers import sleep_and_report
        items = [({str(tmp_path)!r}, 60.0)] * 4
        for _ in map_unordered(sleep_and_report, items, workers=2,
                               on_error=lambda i, e: None, progress=False):
            pass
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("*.pid"))) < 2:
        assert time.monotonic() < deadline, "workers did not start"
        assert parent.poll() is None
        time.sleep(0.1)
    workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert all(_alive(pid) for pid in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)], "orphan workers survived the parent"
