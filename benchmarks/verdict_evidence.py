"""How often each rule says a model is above the fair baseline, on splits with known truth.

Run from the repository root (not a test; ``tests/models/test_evidence.py`` asserts the
rates)::

    python benchmarks/verdict_evidence.py [--trials 2000] [--seed 0]

Each simulated test split has ``scenes`` scenes of 4 pairs; the model is ``effect`` dB
better than the baseline on average; each scene suits one of the two by N(0, 2 dB) (as a
scene whose level matches the training mean suits a global gain), each pair adds
N(0, 1 dB). Two rules are compared in the same run:

mean
    a higher mean PSNR over the pairs (the verdict before ``models/evidence.py``);
clear
    ``expokit.models.evidence``: a one-sided 95 % Student-t bound over the scene means
    above 0 dB (what ``expokit eval`` now calls "clearly above").

With ``effect`` 0 the "above" rate is the false-positive rate; otherwise it is the power.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from expokit.models.evidence import paired_evidence

SCENE_SD_DB = 2.0
PAIR_SD_DB = 1.0
PAIRS_PER_SCENE = 4


def simulated_split(
    rng: np.random.Generator, scenes: int, effect: float, pairs: int = PAIRS_PER_SCENE
) -> list[tuple[str, float, float]]:
    """``(scene, model PSNR, baseline PSNR)`` rows of one split with known truth."""
    scene_effect = rng.normal(0.0, SCENE_SD_DB, scenes)
    rows = []
    for s in range(scenes):
        for _ in range(pairs):
            baseline = 28.0 + rng.normal(0.0, 3.0)
            model = baseline + effect + scene_effect[s] + rng.normal(0.0, PAIR_SD_DB)
            rows.append((f"scene-{s}", model, baseline))
    return rows


def above_rates(
    rng: np.random.Generator, scenes: int, effect: float, trials: int
) -> tuple[float, float]:
    """Fractions of ``trials`` splits the mean rule and the clear rule call above."""
    mean = clear = 0
    for _ in range(trials):
        evidence = paired_evidence(simulated_split(rng, scenes, effect))
        assert evidence is not None
        mean += evidence.mean_db > 0
        clear += evidence.clear == "above"
    return mean / trials, clear / trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"{'true lead (dB)':>15} {'scenes':>7} {'mean rule':>10} {'clear rule':>11}")
    for effect in (0.0, 0.5, 1.0, 2.0):
        for scenes in (2, 3, 5, 10, 20):
            mean, clear = above_rates(rng, scenes, effect, args.trials)
            print(f"{effect:>15.1f} {scenes:>7} {mean:>10.3f} {clear:>11.3f}")
    print("true lead 0: the rate is the false-positive rate (clear rule: nominal 0.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
