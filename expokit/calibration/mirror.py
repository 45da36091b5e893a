"""Is the test camera's image mirrored? Try each flip and keep the one that explains the data.

Behind a beam splitter one camera sees the scene through a mirror, so its image is flipped
left-right (or top-bottom, depending on how the rig is built). ArUco/ChArUco detection and
SIFT matching both fail on mirrored images (markers and descriptors are chiral), so the
flip must be found before anything else:

* with a ChArUco board, the flip under which the board is detected in the test images
  (score: ChArUco corners found);
* otherwise, the flip under which SIFT matches between the reference and the flipped test
  image give the most homography inliers. A plain chessboard cannot decide it: its corner
  grid looks the same mirrored.

A vertical flip is a horizontal flip followed by a 180° rotation, and SIFT (and a ChArUco
board) is rotation invariant, so for a left-right mirrored image both "horizontal" and
"vertical" explain the data, the second with a homography that turns the image upside down.
Cameras on a rig are upright, so a candidate only scores when its homography is *upright*
(rotates the image by less than 90°, :func:`is_upright`). With the fourth candidate
``"both"`` (a 180° rotation, for a camera mounted upside down) exactly one flip gives an
upright mapping of a real image pair.

A flip is applied to the raw test image before undistortion and the homography; test-camera
intrinsics are expressed in the flipped frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Size = tuple[int, int]


class Flip(str, Enum):
    """A mirror flip of the test image."""

    NONE = "none"
    HORIZONTAL = "horizontal"  # left-right: x -> W - 1 - x
    VERTICAL = "vertical"  # top-bottom: y -> H - 1 - y
    BOTH = "both"  # both axes: a 180° rotation (camera mounted upside down), not a mirror

    def apply(self, image: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The flipped image (a copy; same shape and dtype)."""
        if self is Flip.HORIZONTAL:
            return np.ascontiguousarray(image[:, ::-1])
        if self is Flip.VERTICAL:
            return np.ascontiguousarray(image[::-1])
        if self is Flip.BOTH:
            return np.ascontiguousarray(image[::-1, ::-1])
        return image.copy()

    def matrix(self, size: Size) -> npt.NDArray[np.float64]:
        """3x3 map from raw to flipped pixel coordinates of an image of ``size`` (w, h).

        A flip is its own inverse, so the same matrix maps flipped back to raw.
        """
        w, h = size
        if self is Flip.HORIZONTAL:
            return np.array([[-1.0, 0, w - 1], [0, 1, 0], [0, 0, 1]])
        if self is Flip.VERTICAL:
            return np.array([[1.0, 0, 0], [0, -1, h - 1], [0, 0, 1]])
        if self is Flip.BOTH:
            return np.array([[-1.0, 0, w - 1], [0, -1, h - 1], [0, 0, 1]])
        return np.eye(3)


#: Candidates tried by automatic detection, in order (ties go to the earlier one).
FLIP_CANDIDATES: tuple[Flip, ...] = (Flip.NONE, Flip.HORIZONTAL, Flip.VERTICAL, Flip.BOTH)


def rotation_degrees(h: npt.NDArray[Any], size: Size) -> float:
    """In-plane rotation (degrees, -180..180) a homography applies at the image centre.

    The angle of the similarity closest to the homography's Jacobian at the centre of the
    source image of ``size`` = (width, height).
    """
    hm = np.asarray(h, np.float64)
    cx, cy = (size[0] - 1) / 2, (size[1] - 1) / 2
    u, v, w = hm @ np.array([cx, cy, 1.0])
    # d(u/w)/dx = (h00 - x' h20) / w etc.
    x, y = u / w, v / w
    jac = (
        np.array(
            [
                [hm[0, 0] - x * hm[2, 0], hm[0, 1] - x * hm[2, 1]],
                [hm[1, 0] - y * hm[2, 0], hm[1, 1] - y * hm[2, 1]],
            ]
        )
        / w
    )
    return float(np.degrees(np.arctan2(jac[1, 0] - jac[0, 1], jac[0, 0] + jac[1, 1])))


def is_upright(h: npt.NDArray[Any] | None, size: Size) -> bool:
    """True when ``h`` rotates an image of ``size`` by less than 90° (see module docstring)."""
    return h is not None and abs(rotation_degrees(h, size)) < 90.0


@dataclass(frozen=True)
class MirrorDecision:
    """The flip chosen for the test camera and the evidence.

    Attributes
    ----------
    flip
        The chosen flip.
    method
        ``"board"`` (ChArUco corners detected), ``"features"`` (SIFT homography inliers) or
        ``"fixed"`` (given by the user, not detected).
    scores
        Score of every candidate tried, by flip name.
    ambiguous
        True when the runner-up scored more than half the winner (the decision is weak).
    """

    flip: Flip
    method: str
    scores: Mapping[str, float] = field(default_factory=dict)
    ambiguous: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "flip": self.flip.value,
            "method": self.method,
            "scores": dict(self.scores),
            "ambiguous": self.ambiguous,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MirrorDecision:
        return cls(
            Flip(data["flip"]),
            str(data["method"]),
            {str(k): float(v) for k, v in dict(data.get("scores", {})).items()},
            bool(data.get("ambiguous", False)),
        )


def choose_flip(
    score: Callable[[Flip], float],
    method: str,
    min_score: float,
    candidates: tuple[Flip, ...] = FLIP_CANDIDATES,
) -> MirrorDecision | None:
    """Score every candidate flip and keep the best.

    Parameters
    ----------
    score
        Evidence for a flip (board corners found, feature inliers); higher is better.
    method
        Recorded in the decision (``"board"``, ``"features"``).
    min_score
        The winner needs at least this score; below it there is no decision.

    Returns
    -------
    MirrorDecision or None
        ``None`` when no candidate reaches ``min_score``.
    """
    scores = {flip: float(score(flip)) for flip in candidates}
    ranked = sorted(candidates, key=lambda f: -scores[f])  # stable: ties keep candidate order
    best = ranked[0]
    named = {f.value: scores[f] for f in candidates}
    if scores[best] < min_score:
        log.info("mirror by %s: no decision, scores %s (need %g)", method, named, min_score)
        return None
    runner_up = scores[ranked[1]] if len(ranked) > 1 else 0.0
    ambiguous = runner_up > 0.5 * scores[best]
    log.log(
        logging.WARNING if ambiguous else logging.INFO,
        "mirror by %s: %s (scores %s)%s",
        method,
        best.value,
        named,
        " - AMBIGUOUS" if ambiguous else "",
    )
    return MirrorDecision(best, method, named, ambiguous)
