"""Is a model's lead over a fair baseline more than the luck of the scenes?

A mean PSNR above the baseline's says little on a few scenes: the pairs of one scene share
its content (exposures of one picture), so they are not independent draws, and one scene
the baseline happens to suit, or not, moves the mean by decibels. The unit of evidence is
therefore the scene: per scene, the mean of the paired PSNR differences (model minus
baseline, the same pairs); over scenes, a one-sided Student-t bound at ``confidence``.

* ``clear`` is ``"above"`` when the lower bound is above 0 dB, ``"below"`` when the upper
  bound is under 0 dB, else None (the scenes disagree, or there are too few to tell).
* One scene gives no bound (no spread between scenes to measure): never clear.

Under the null (a model no better than the baseline, scene effects of any size) a clear
``"above"`` comes up in about ``1 - confidence`` of splits; the plain "mean above" rule
says above in half of them (``tests/models/test_evidence.py`` measures both, with injected
truth; ``benchmarks/verdict_evidence.py`` prints the rates and the power).

References
----------
Student (1908), "The probable error of a mean", Biometrika 6(1). Cluster (here: scene)
level analysis of correlated measurements: Donner and Klar (2000), *Design and Analysis of
Cluster Randomization Trials*, ch. 5.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

#: One-sided confidence of the bounds (a clear verdict is wrong about 5 % of the time).
CONFIDENCE = 0.95

Direction = Literal["above", "below"]


@dataclass(frozen=True)
class PairedEvidence:
    """Paired PSNR differences (model minus baseline, dB) summed up per scene."""

    pairs: int
    pairs_better: int
    scenes: int
    scenes_better: int
    #: mean over scenes of each scene's mean difference (dB)
    mean_db: float
    #: one-sided bounds at :attr:`confidence` over the scene means; None with one scene
    lower_db: float | None
    upper_db: float | None
    confidence: float = CONFIDENCE

    @property
    def clear(self) -> Direction | None:
        """``"above"`` / ``"below"`` when the bound excludes 0 dB, else None."""
        if self.lower_db is not None and self.lower_db > 0:
            return "above"
        if self.upper_db is not None and self.upper_db < 0:
            return "below"
        return None

    def describe(self) -> str:
        """``better on 1 of 2 scenes (4 of 8 pairs), 95 % bounds over scenes -26.1 .. +26.5
        dB`` (``one scene: ...`` when there is no bound)."""
        counts = (
            f"better on {self.scenes_better} of {self.scenes} scene"
            f"{'' if self.scenes == 1 else 's'} ({self.pairs_better} of {self.pairs} pairs)"
        )
        if self.lower_db is None or self.upper_db is None:
            return f"{counts}; one scene: no evidence beyond it"
        level = f"{100 * self.confidence:.0f} %"
        bounds = f"{self.lower_db:+.2f} .. {self.upper_db:+.2f} dB"
        return f"{counts}, {level} bounds over scenes {bounds}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "clear": self.clear}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairedEvidence:
        """The record :meth:`to_json` wrote (its ``clear`` is derived, not read)."""
        return cls(**{k: v for k, v in data.items() if k != "clear"})


def paired_evidence(
    rows: Iterable[tuple[str, float, float]], confidence: float = CONFIDENCE
) -> PairedEvidence | None:
    """The evidence of ``(scene, model PSNR, baseline PSNR)`` rows, one per pair scored by
    both (dB; capped values as the means use them). Rows with a non-finite PSNR are left
    out; None when no row is left.

    Raises
    ------
    ValueError
        ``confidence`` outside (0.5, 1).
    """
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence!r}")
    by_scene: dict[str, list[float]] = defaultdict(list)
    for scene, model, baseline in rows:
        if math.isfinite(model) and math.isfinite(baseline):
            by_scene[scene].append(model - baseline)
    if not by_scene:
        return None
    deltas = [d for values in by_scene.values() for d in values]
    means = [sum(v) / len(v) for v in by_scene.values()]
    n = len(means)
    mean = sum(means) / n
    lower = upper = None
    if n > 1:
        from scipy.stats import t as student_t

        spread = math.sqrt(sum((m - mean) ** 2 for m in means) / (n - 1))
        half = float(student_t.ppf(confidence, n - 1)) * spread / math.sqrt(n)
        lower, upper = mean - half, mean + half
    return PairedEvidence(
        pairs=len(deltas), pairs_better=sum(d > 0 for d in deltas), scenes=n,
        scenes_better=sum(m > 0 for m in means), mean_db=mean, lower_db=lower,
        upper_db=upper, confidence=confidence,
    )  # fmt: skip


def verdict_words(status: str | None, evidence: dict[str, Any] | None) -> str:
    """A table cell for an ``expokit eval`` verdict (``comparison`` ``status`` and its
    ``evidence`` JSON): ``clearly above; better on 12 of 12 scenes``, ``not clearly
    above; ...``, ``level; ...``, ``clearly below; ...`` or ``below; ...``; ``-`` without
    evidence (scores from before the verdict weighed the scenes)."""
    if evidence is None:
        return "-"
    words = {"above": "clearly above", "unclear": "not clearly above", "level": "level"}
    word = words.get(status or "", "below")
    if word == "below" and evidence.get("clear") == "below":
        word = "clearly below"
    scenes = int(evidence["scenes"])
    noun = "scene" if scenes == 1 else "scenes"
    return f"{word}; better on {evidence['scenes_better']} of {scenes} {noun}"
