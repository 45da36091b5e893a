"""Which pairs of a dataset a command uses, by their QA flags: one rule for every reader.

``curate export``, ``train``, ``eval`` and the PyTorch datasets take the same selection
(``--passed-only`` / ``--exclude-flags a,b``), so a pair dropped for training is dropped for
evaluation and export too. Flags never delete rows: a selection only chooses among them.
The report and the card show how many pairs each choice keeps (:func:`selection_counts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expokit.core.errors import ExpokitError
from expokit.curation.dataset.flags import QA_FLAGS, flag_list

if TYPE_CHECKING:
    import pandas as pd

#: The manifest column selections read (format v2; v1 called it ``flags``).
FLAGS_COLUMN = "qa_flags"


class SelectionError(ExpokitError):
    """A flag selection names an unknown flag or is given in a wrong form."""


@dataclass(frozen=True)
class PairSelection:
    """Pairs kept by their QA flags.

    Attributes
    ----------
    exclude_flags
        Drop pairs carrying any of these flags (names from :data:`QA_FLAGS`).
    passed_only
        Keep only pairs with no flag at all (overrides ``exclude_flags``).
    """

    exclude_flags: tuple[str, ...] = ()
    passed_only: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.passed_only, bool):
            raise SelectionError(f"passed_only: expected true or false, got {self.passed_only!r}")
        flags = self.exclude_flags
        if isinstance(flags, str) or not all(isinstance(f, str) for f in flags):
            raise SelectionError(f"exclude_flags: expected a list of flag names, got {flags!r}")
        unknown = sorted(set(flags) - set(QA_FLAGS))
        if unknown:
            raise SelectionError(
                f"unknown QA flag(s) {', '.join(unknown)}; known: {', '.join(QA_FLAGS)}"
            )
        object.__setattr__(self, "exclude_flags", tuple(dict.fromkeys(flags)))

    @classmethod
    def parse(cls, exclude_flags: str | Iterable[str] | None, passed_only: bool = False) -> Any:
        """From a command line: ``"a,b"`` (or a list) and the ``--passed-only`` switch."""
        if exclude_flags is None:
            names: tuple[str, ...] = ()
        elif isinstance(exclude_flags, str):
            names = tuple(f.strip() for f in exclude_flags.split(",") if f.strip())
        elif isinstance(exclude_flags, Iterable):
            names = tuple(exclude_flags)
        else:
            raise SelectionError(
                f"exclude_flags: expected a list of flag names, got {exclude_flags!r}"
            )
        return cls(names, passed_only)  # a bool, checked by __post_init__ (not truthiness)

    @property
    def everything(self) -> bool:
        """True when nothing is dropped."""
        return not self.passed_only and not self.exclude_flags

    def keeps(self, flags: str | None) -> bool:
        """Whether a pair whose ``qa_flags`` cell is ``flags`` is kept."""
        found = flag_list(flags)
        if self.passed_only:
            return not found
        return not set(found) & set(self.exclude_flags)

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """Boolean Series over ``frame``'s rows: True where the pair is kept."""
        import pandas as pd

        if FLAGS_COLUMN not in frame.columns:
            raise SelectionError(f"the manifest has no {FLAGS_COLUMN!r} column")
        return pd.Series(
            [self.keeps(v) for v in frame[FLAGS_COLUMN].tolist()], index=frame.index, dtype=bool
        )

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` this selection keeps (all of them when :attr:`everything`)."""
        return frame if self.everything else frame[self.mask(frame)]

    def describe(self) -> str:
        """One phrase: ``all pairs``, ``passed QA only`` or ``without flags a, b``."""
        if self.passed_only:
            return "passed QA only (no flag)"
        if self.exclude_flags:
            return "without flags " + ", ".join(self.exclude_flags)
        return "all pairs"

    def to_dict(self) -> dict[str, Any]:
        return {"exclude_flags": list(self.exclude_flags), "passed_only": self.passed_only}

    @classmethod
    def from_dict(cls, data: Any) -> PairSelection:
        """Inverse of :meth:`to_dict` (a config file's table); unknown keys are an error."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise SelectionError(f"selection: expected a table, got {data!r}")
        unknown = sorted(set(data) - {"exclude_flags", "passed_only"})
        if unknown:
            raise SelectionError(
                f"selection: unknown key(s) {', '.join(unknown)}; known: exclude_flags, passed_only"
            )
        flags = data.get("exclude_flags") or ()
        if isinstance(flags, str):
            return cls.parse(flags, data.get("passed_only", False))
        return cls(tuple(flags), data.get("passed_only", False))


def selection_counts(frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    """What each selection keeps: ``(option, meaning, pairs kept)`` for all pairs,
    ``--passed-only`` and ``--exclude-flags F`` for each flag present (most frequent first).
    """
    rows: list[tuple[str, str, int]] = [("(none)", "all pairs", len(frame))]
    if FLAGS_COLUMN not in frame.columns or not len(frame):
        return rows
    cells = frame[FLAGS_COLUMN].tolist()
    passed = sum(1 for v in cells if not flag_list(v))
    rows.append(("--passed-only", "pairs with no flag", passed))
    present: dict[str, int] = {}
    for value in cells:
        for flag in flag_list(value):
            present[flag] = present.get(flag, 0) + 1
    for flag, count in sorted(present.items(), key=lambda kv: (-kv[1], kv[0])):
        rows.append((f"--exclude-flags {flag}", f"without {flag}", len(frame) - count))
    return rows
