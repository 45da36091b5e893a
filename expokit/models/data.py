"""PyTorch datasets over dataset format v1 (paired images, exposure sequences, video clips).

Every item is a ``dict[str, Tensor]`` following :mod:`expokit.models.base`: images
``(3, H, W)`` float32 RGB in ``[0, 1]`` (a :class:`torch.utils.data.DataLoader` adds the batch
dimension), masks ``(1, H, W)`` float32 in ``{0, 1}``, EVs as 0-d float32 (NaN when unknown)
and ``index`` (0-d int64), the item's position in the dataset, so evaluation can name the pair
(:meth:`PairedDataset.describe`).

* :class:`PairedDataset`: one manifest row = one item (``input``, ``target``, ``mask``).
* :class:`SequenceDataset`: per scene the distinct exposures; an item is two of them
  (``input`` -> ``target``) plus a ``reference`` (the target itself as UEC trains, or another
  scene's exposure at the target's EV as the evaluation protocol does) and ``ref_dark`` /
  ``ref_bright`` from another scene. Pairs are weighted by :class:`PairWeights`.
* :class:`ClipDataset`: ``N`` consecutive frame pairs of a clip centred on the frame to restore.

Randomness (crops, flips, the other scene chosen) is a function of ``(seed, index)`` only, so
an item is the same in any worker process and after a resume. Indices at or above
``len(dataset)`` are *draws*: ``index % len`` is the item and the whole index seeds its
augmentation (:class:`TrainSampler` yields such draws, one per sample ever drawn).

Files are read with OpenCV through :func:`expokit.core.images.decode_image` (BGR, 8 or 16
bit, upright per EXIF orientation) and converted to RGB float; no torchvision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from expokit.core.errors import ExpokitError, InputFileError, OutputError
from expokit.core.images import decode_image
from expokit.core.paths import output_folder_placement
from expokit.core.roots import LEGACY_MARKERS, root_kind
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.selection import PairSelection, SelectionError
from expokit.models.registry import model_class

if TYPE_CHECKING:
    import pandas as pd

    from expokit.curation.dataset.format import Dataset
    from expokit.curation.dataset.selection import PairSelection

Array = npt.NDArray[Any]
Item = dict[str, torch.Tensor]
Size = tuple[int, int]
DATA_KINDS = ("paired", "sequence", "clip")


class DataError(ExpokitError):
    """A dataset cannot feed a loader (missing split, no sequences or clips, bad files)."""


# --------------------------------------------------------------------------- files


def _decode(file: Path, what: str) -> Array:
    """``file`` decoded unchanged (depth and channels kept) and upright per its EXIF
    orientation, through the shared reader :func:`expokit.core.images.decode_image`;
    :class:`DataError` naming the file when it cannot be read (``cannot read <what>``) or
    decoded (the decoder's reason, ``not a readable image ...``)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DataError(f"{file}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return decode_image(data, file)
    except InputFileError as exc:
        where = f"{file}: " if what == "image" else f"{file}: {what}: "
        raise DataError(where + exc.problem) from None


def read_rgb(path: str | Path) -> Array:
    """An image file as ``(H, W, 3)`` RGB in its own dtype (uint8, uint16 or float32).

    Upright per the file's EXIF orientation (images a build wrote carry none); grey images
    are repeated to three channels and an alpha channel is dropped; OpenCV's BGR order is
    turned into RGB. Raises :class:`DataError` naming the file.
    """
    file = Path(path)
    image = _decode(file, "image")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[..., :3]
    if image.shape[2] != 3:
        raise DataError(f"{file}: expected 1, 3 or 4 channels, found {image.shape[2]}")
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise DataError(f"{file}: unsupported sample type {image.dtype}")
    return np.ascontiguousarray(image[..., ::-1])


def read_mask(path: str | Path) -> Array:
    """A valid-region mask file as ``(H, W)`` uint8 in ``{0, 1}`` (first channel, >= half;
    upright per its EXIF orientation, like :func:`read_rgb`)."""
    mask = _decode(Path(path), "mask")
    if mask.ndim == 3:
        mask = mask[..., 0]
    full = 1.0 if mask.dtype.kind == "f" else float(np.iinfo(str(mask.dtype)).max)
    return np.asarray(mask >= full / 2, np.uint8)


def to_float(image: Array) -> Array:
    """``(H, W, C)`` uint8/uint16/float image -> float32 in ``[0, 1]``."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def image_tensor(image: Array) -> torch.Tensor:
    """``(H, W, 3)`` image -> ``(3, H, W)`` float32 tensor in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(to_float(image).transpose(2, 0, 1)))


def mask_tensor(mask: Array) -> torch.Tensor:
    """``(H, W)`` {0, 1} mask -> ``(1, H, W)`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]


def _resize(array: Array, size: Size) -> Array:
    """``array`` resized to ``size`` = (H, W): bilinear for images, nearest for masks."""
    import cv2

    if array.shape[:2] == size:
        return array
    interpolation = cv2.INTER_NEAREST if array.ndim == 2 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(array, (size[1], size[0]), interpolation=interpolation))


# --------------------------------------------------------------------------- options


def _as_size(value: int | Sequence[int] | None, what: str) -> Size | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise DataError(f"{what}: expected a size in pixels, got {value!r}")
    if isinstance(value, int):
        height = width = value
    else:
        sizes = list(value)
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in sizes)
        if len(sizes) != 2 or not whole:
            raise DataError(f"{what}: expected N or [height, width] in pixels, got {value!r}")
        height, width = sizes
    if height < 1 or width < 1:
        raise DataError(f"{what}: sizes must be at least 1 pixel, got {value!r}")
    return height, width


def _is_int(value: object) -> bool:
    """An integer, not a bool (``true`` in a TOML file is not 1 frame)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ImageOptions:
    """How the images of an item are sized and augmented (shared by every dataset).

    Order: ``resize`` (every file to one size), then one random ``crop`` for all images of
    a scene, then flips. Images of *another* scene (references) get their own crop of the
    same size, or are resized to the item's size when there is no crop and no resize.

    Parameters
    ----------
    crop
        Random crop, ``N`` (square) or ``(height, width)``; an image smaller than it is an
        error (lower ``crop`` or set ``resize``). ``None``: whole images.
    resize
        Resize every file to ``N x N`` or ``(height, width)`` first (bilinear; nearest for
        masks). ``None``: native size.
    flip, vflip
        Random horizontal / vertical flips (probability 1/2, the same for the whole item).
    cache
        Keep decoded (resized) files in memory: worth it for small datasets read many
        times (exposure sequences); each loader worker holds its own copy.
    """

    crop: Size | None = None
    resize: Size | None = None
    flip: bool = False
    vflip: bool = False
    cache: bool = False

    @classmethod
    def make(
        cls,
        crop: int | Sequence[int] | None = None,
        resize: int | Sequence[int] | None = None,
        flip: bool = False,
        vflip: bool = False,
        cache: bool = False,
    ) -> ImageOptions:
        for name, value in (("flip", flip), ("vflip", vflip), ("cache", cache)):
            if not isinstance(value, bool):
                raise DataError(f"{name}: expected true or false, got {value!r}")
        return cls(_as_size(crop, "crop"), _as_size(resize, "resize"), flip, vflip, cache)


class _ImageStore:
    """Reads (and optionally caches) files below a dataset root, resized per the options."""

    def __init__(self, dataset: Dataset, options: ImageOptions) -> None:
        self.dataset = dataset
        self.options = options
        self._cache: dict[tuple[str, str], Array] = {}

    def _get(self, rel: str, kind: str, reader: Callable[[Path], Array]) -> Array:
        key = (kind, rel)
        if key in self._cache:
            return self._cache[key]
        path = self.dataset.path(rel)
        array = reader(path)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise DataError(f"{path}: holds NaN or infinite values")
        if self.options.resize is not None:
            array = _resize(array, self.options.resize)
        if self.options.cache:
            self._cache[key] = array
        return array

    def image(self, rel: str) -> Array:
        return self._get(rel, "image", read_rgb)

    def mask(self, rel: str | None, like: Array) -> Array:
        if rel is None:
            return np.ones(like.shape[:2], np.uint8)
        mask = self._get(rel, "mask", read_mask)
        if mask.shape[:2] != like.shape[:2]:
            raise DataError(
                f"{self.dataset.path(rel)}: mask is {mask.shape[1]}x{mask.shape[0]}, its image "
                f"{like.shape[1]}x{like.shape[0]}"
            )
        return mask


def _geometry(
    arrays: list[Array],
    options: ImageOptions,
    rng: np.random.Generator,
    *,
    size: Size | None,
    names: Sequence[str],
) -> list[Array]:
    """One crop (or resize to ``size``) and one flip decision applied to all ``arrays``."""
    height, width = arrays[0].shape[:2]
    for array, name in zip(arrays, names, strict=True):
        if array.shape[:2] != (height, width):
            raise DataError(
                f"{name} is {array.shape[1]}x{array.shape[0]}, but {names[0]} is "
                f"{width}x{height}: the images of one item must have one size"
            )
    if options.crop is not None:
        ch, cw = options.crop
        if ch > height or cw > width:
            raise DataError(
                f"{names[0]} is {width}x{height}, smaller than the crop {cw}x{ch}: lower the "
                "crop or set resize"
            )
        y = int(rng.integers(0, height - ch + 1))
        x = int(rng.integers(0, width - cw + 1))
        arrays = [a[y : y + ch, x : x + cw] for a in arrays]
    elif size is not None:
        arrays = [_resize(a, size) for a in arrays]
    flip_h = bool(rng.integers(0, 2)) and options.flip
    flip_v = bool(rng.integers(0, 2)) and options.vflip
    if flip_h:
        arrays = [a[:, ::-1] for a in arrays]
    if flip_v:
        arrays = [a[::-1] for a in arrays]
    return arrays


# --------------------------------------------------------------------------- manifests


def _text(value: Any) -> str | None:
    """A manifest cell as str, or None when null."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    return str(value)


def _ev(value: Any) -> float:
    text = _text(value)
    return float("nan") if text is None else float(value)


def check_output_folder(
    out: str | Path, dataset: str | Path | None = None, *, what: str = "output folder"
) -> Path:
    """Refuse an output folder that is, lies inside or holds a dataset; return ``out``.

    ``dataset`` is the command's own dataset (``None``: none); any expokit dataset root at
    or above ``out`` counts too. Writing a run, an evaluation or images into a dataset's
    ``images/`` (or anywhere below its root) would mix outputs into data that the manifest
    describes, and a later ``curate validate`` or build would trip over them.

    Raises
    ------
    OutputError
        Naming ``out`` and the dataset it is in (or holds).
    """
    target = Path(out).resolve()
    if dataset is not None:
        placement = output_folder_placement(out, dataset)
        if placement.relation in ("same", "inside"):
            raise OutputError(
                f"{what} {out} is inside the dataset {dataset}; choose a folder outside it"
            )
        if placement.relation == "holds":
            raise OutputError(f"{what} {out} holds the dataset {dataset}; choose another folder")
    for folder in (target, *target.parents):
        legacy = any((folder / name).is_file() for name in LEGACY_MARKERS["dataset"][:1])
        if folder.is_dir() and (root_kind(folder) == "dataset" or legacy):
            raise OutputError(
                f"{what} {out} is inside the expokit dataset {folder}; choose a folder outside it"
            )
    return Path(out)


def pair_selection(
    exclude_flags: str | Sequence[str] | None = None, passed_only: bool = False
) -> PairSelection:
    """The :class:`~expokit.curation.dataset.selection.PairSelection` of the loaders' options, or a
    :class:`DataError` naming the bad flag."""
    try:
        return PairSelection.parse(exclude_flags, passed_only)
    except SelectionError as exc:
        raise DataError(str(exc)) from None


def select_rows(
    dataset: Dataset,
    split: str | None,
    scenes: Sequence[str] | None = None,
    selection: PairSelection | None = None,
) -> pd.DataFrame:
    """The manifest rows of ``split`` (``None``: every row), optionally only ``scenes``, and
    only the pairs ``selection`` keeps by their QA flags (the rule ``curate export`` and
    ``eval`` use too).

    Raises :class:`DataError` for a split or scene the dataset lacks, listing those present,
    or a selection that keeps no row.
    """
    frame = dataset.manifest
    if split is not None:
        present = sorted(str(s) for s in frame["split"].dropna().unique())
        if split not in present:
            raise DataError(
                f"{dataset.root}: no split {split!r}; the dataset has splits: "
                f"{', '.join(present) or 'none'}"
            )
        frame = frame[frame["split"] == split]
    if scenes is not None:
        wanted = [str(s) for s in scenes]
        have = set(frame["scene_id"].astype(str))
        missing = [s for s in wanted if s not in have]
        if missing:
            where = f" split {split!r}" if split is not None else ""
            raise DataError(
                f"{dataset.root}{where}: no scene(s) {', '.join(missing)}; it has "
                f"{', '.join(sorted(have)) or 'none'}"
            )
        frame = frame[frame["scene_id"].astype(str).isin(wanted)]
    if frame.empty:
        raise DataError(f"{dataset.root}: no rows in split {split!r}")
    if selection is not None and not selection.everything:
        kept = selection.apply(frame)
        if kept.empty:
            raise DataError(
                f"{dataset.root}: {selection.describe()} keeps none of the {len(frame)} pairs "
                f"of split {split!r}; loosen --exclude-flags/--passed-only"
            )
        frame = kept
    return frame.reset_index(drop=True)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, index])


def _ev_tensor(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32)


class _Base(TorchDataset[Item]):
    """Shared construction: the dataset, the rows of a split, image options, seed."""

    kind: str = ""

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        *,
        crop: int | Sequence[int] | None = None,
        resize: int | Sequence[int] | None = None,
        flip: bool = False,
        vflip: bool = False,
        cache: bool = False,
        seed: int = 0,
        scenes: Sequence[str] | None = None,
        model: str | None = None,
        exclude_flags: str | Sequence[str] | None = None,
        passed_only: bool = False,
    ) -> None:
        self.dataset = load_dataset(root)
        self.root = self.dataset.root
        self.split = split
        self.options = ImageOptions.make(crop, resize, flip, vflip, cache)
        if not _is_int(seed):
            raise DataError(f"seed: expected an integer, got {seed!r}")
        self.seed = seed
        self.model = model
        self.selection = pair_selection(exclude_flags, passed_only)
        # A string is refused, not taken as one name: "scene0" iterated would be the scenes
        # s, c, e, ...; a list says which scenes without guessing.
        if scenes is not None and (
            isinstance(scenes, str)
            or not isinstance(scenes, Sequence)
            or not all(isinstance(s, str) for s in scenes)
        ):
            raise DataError(
                f"scenes (data_options.scenes): expected a list of scene ids, e.g. "
                f'["scene0"], got {scenes!r}'
            )
        self.rows = select_rows(self.dataset, split, scenes, self.selection)
        self.store = _ImageStore(self.dataset, self.options)

    def _needs(self, what: str) -> str:
        who = f"model {self.model!r}" if self.model else f"a {self.kind} loader"
        where = f"split {self.split!r} of {self.root}" if self.split else str(self.root)
        return f"{who} needs {what}; {where} has none"

    @property
    def weights(self) -> list[float] | None:
        """Sampling weight per item (``None``: uniform)."""
        return None

    def _locate(self, index: int) -> tuple[int, np.random.Generator]:
        if index < 0:
            raise IndexError(index)
        return index % len(self), _rng(self.seed, index)

    def __len__(self) -> int:
        raise NotImplementedError


# --------------------------------------------------------------------------- paired


class PairedDataset(_Base):
    """Input -> target pairs, one per manifest row (any dataset format v1).

    Items: ``input``, ``target`` ``(3, H, W)``; ``mask`` ``(1, H, W)`` from ``mask_path``
    (ones when null); ``input_ev``, ``target_ev``; ``index``. Keyword options as
    :class:`ImageOptions` plus ``seed``, ``scenes`` (only these scene ids),
    ``exclude_flags`` / ``passed_only`` (pairs chosen by their QA flags, as ``curate export``
    and ``eval`` choose them; see docs/qa.md).
    """

    kind = "paired"

    def __len__(self) -> int:
        return len(self.rows)

    def describe(self, index: int) -> dict[str, Any]:
        """Manifest facts of item ``index``: pair_id, scene_id, paths, EVs."""
        row = self.rows.iloc[index % len(self)]
        return {
            "pair_id": _text(row["pair_id"]),
            "scene_id": _text(row["scene_id"]),
            "input_path": _text(row["input_path"]),
            "target_path": _text(row["target_path"]),
            "input_ev": _ev(row["input_ev"]),
            "target_ev": _ev(row["target_ev"]),
        }

    def __getitem__(self, index: int) -> Item:
        real, rng = self._locate(index)
        row = self.rows.iloc[real]
        input_rel, target_rel = str(row["input_path"]), str(row["target_path"])
        image = self.store.image(input_rel)
        target = self.store.image(target_rel)
        mask = self.store.mask(_text(row["mask_path"]), image)
        image, target, mask = _geometry(
            [image, target, mask], self.options, rng, size=None,
            names=[input_rel, target_rel, str(_text(row["mask_path"]))],
        )  # fmt: skip
        return {
            "input": image_tensor(image),
            "target": image_tensor(target),
            "mask": mask_tensor(mask),
            "input_ev": _ev_tensor(_ev(row["input_ev"])),
            "target_ev": _ev_tensor(_ev(row["target_ev"])),
            "index": torch.tensor(real),
        }


# --------------------------------------------------------------------------- sequences


@dataclass(frozen=True)
class PairWeights:
    """Which (input, target) exposure pairs of a scene a :class:`SequenceDataset` yields,
    and how often.

    The weight of the pair (input ``i``, target ``j``), ``i != j``, is
    ``target weight(j) * input weight(i)`` with

    * target weight: ``middle_target`` when ``j`` is the scene's middle exposure (rank
      ``(n - 1) // 2`` of ``n`` sorted by EV, the builder's target), else ``other_target``;
    * input weight: ``extreme_input`` when ``i`` is among the ``extremes`` darkest or
      ``extremes`` brightest exposures, else ``other_input``.

    Pairs of weight 0 are left out; the sampler draws pairs with probability proportional to
    their weight. The default is every ordered pair, uniformly; :meth:`protocol` is the
    evaluation protocol (middle target, the two darkest and two brightest as inputs).
    """

    middle_target: float = 1.0
    other_target: float = 1.0
    extremes: int = 2
    extreme_input: float = 1.0
    other_input: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extremes":
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise DataError(f"pair weights: extremes must be an int >= 0, not {value!r}")
            elif (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise DataError(f"pair weights: {f.name} must be a number >= 0, got {value!r}")
        if self.middle_target == 0 and self.other_target == 0:
            raise DataError("pair weights: middle_target and other_target are both 0 (no pairs)")
        if self.extreme_input == 0 and self.other_input == 0:
            raise DataError("pair weights: extreme_input and other_input are both 0 (no pairs)")

    @classmethod
    def protocol(cls, extremes: int = 2) -> PairWeights:
        """Only the middle exposure as target and the ``extremes`` extremes as inputs."""
        return cls(
            middle_target=1.0, other_target=0.0, extremes=extremes, extreme_input=1.0,
            other_input=0.0,
        )  # fmt: skip

    @classmethod
    def from_value(cls, value: PairWeights | Mapping[str, Any] | None) -> PairWeights:
        if value is None:
            return cls()
        if isinstance(value, PairWeights):
            return value
        if not isinstance(value, Mapping):
            raise DataError(f"pair weights: expected a table of weights, got {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise DataError(
                f"pair weights: unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**dict(value))

    def weight(self, i: int, j: int, n: int) -> float:
        """Weight of input ``i`` -> target ``j`` among ``n`` exposures sorted by EV."""
        if i == j:
            return 0.0
        target = self.middle_target if j == (n - 1) // 2 else self.other_target
        extreme = i < self.extremes or i >= n - self.extremes
        return target * (self.extreme_input if extreme else self.other_input)


@dataclass(frozen=True)
class Exposure:
    """One distinct exposure of a sequence: image path, valid mask path (or None), EV."""

    path: str
    mask: str | None
    ev: float


@dataclass
class ExposureSequence:
    """The distinct exposures of one scene (sorted dark to bright)."""

    scene_id: str
    exposures: list[Exposure] = field(default_factory=list)

    @property
    def middle(self) -> int:
        return (len(self.exposures) - 1) // 2

    def nearest(self, ev: float) -> int:
        return int(np.argmin([abs(e.ev - ev) for e in self.exposures]))


def find_sequences(rows: pd.DataFrame, min_exposures: int = 3) -> list[ExposureSequence]:
    """Group manifest rows into exposure sequences.

    Rows sharing ``scene_id`` and ``target_path`` form one sequence: their inputs and the
    shared target, one file per EV (the target file wins a tie). Groups with fewer than
    ``min_exposures`` distinct EVs (e.g. a video frame: one input, one target) are not
    sequences. Raises :class:`DataError` for an exposure without an EV.
    """
    found: list[ExposureSequence] = []
    for (scene, target_rel), group in rows.groupby(["scene_id", "target_path"], sort=True):
        by_ev: dict[float, Exposure] = {}
        first = group.iloc[0]
        target_ev = _ev(first["target_ev"])
        if math.isnan(target_ev):
            raise DataError(f"{target_rel}: target of scene {scene} has no target_ev")
        by_ev[target_ev] = Exposure(str(target_rel), None, target_ev)
        for row in group.itertuples(index=False):
            ev = _ev(row.input_ev)
            if math.isnan(ev):
                raise DataError(f"{row.input_path}: input of scene {scene} has no input_ev")
            by_ev.setdefault(ev, Exposure(str(row.input_path), _text(row.mask_path), ev))
        if len(by_ev) >= min_exposures:
            found.append(ExposureSequence(str(scene), [by_ev[ev] for ev in sorted(by_ev)]))
    return found


class SequenceDataset(_Base):
    """Two exposures of one scene per item, for exposure-to-reference models (UEC).

    Items: ``input`` and ``target`` (two distinct exposures of one scene), ``mask`` (both
    images' valid masks), ``reference`` (see ``reference_from``), ``ref_dark`` and
    ``ref_bright`` (two exposures of another scene, darker first; when ``other_pairs``),
    ``input_ev``, ``target_ev``, ``index``.

    Parameters
    ----------
    pair_weights
        :class:`PairWeights` or a table of its fields: which pairs, how often.
    reference_from
        ``"same"``: ``reference`` is the target image (UEC training); ``"other"``: the
        exposure of another scene nearest the target's EV (the evaluation protocol).
    other_scene
        How the other scene is chosen: ``"random"`` (seeded per item) or ``"next"`` (the next
        scene in sorted order, cyclic: the evaluation protocol).
    other_pairs
        Add ``ref_dark`` / ``ref_bright`` (UEC's monotonicity term).
    min_exposures
        Fewest distinct exposures that make a scene a sequence (3).
    """

    kind = "sequence"

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        *,
        pair_weights: PairWeights | Mapping[str, Any] | None = None,
        reference_from: Literal["same", "other"] = "same",
        other_scene: Literal["random", "next"] = "random",
        other_pairs: bool = True,
        min_exposures: int = 3,
        **options: Any,
    ) -> None:
        super().__init__(root, split, **options)
        if reference_from not in ("same", "other"):
            raise DataError(f"reference_from: expected 'same' or 'other', got {reference_from!r}")
        if other_scene not in ("random", "next"):
            raise DataError(f"other_scene: expected 'random' or 'next', got {other_scene!r}")
        if not _is_int(min_exposures) or min_exposures < 2:
            raise DataError(f"min_exposures: expected an integer >= 2, got {min_exposures!r}")
        if not isinstance(other_pairs, bool):
            raise DataError(f"other_pairs: expected true or false, got {other_pairs!r}")
        self.pair_weights = PairWeights.from_value(pair_weights)
        self.reference_from = reference_from
        self.other_scene = other_scene
        self.other_pairs = other_pairs
        self.sequences = find_sequences(self.rows, min_exposures)
        if not self.sequences:
            raise DataError(
                self._needs(
                    f"multi-exposure sequences (scenes with at least {min_exposures} distinct "
                    "exposures, e.g. a dataset built from exposure sequences)"
                )
                + ": every scene has only one exposure pair"
            )
        scenes = sorted({s.scene_id for s in self.sequences})
        if (reference_from == "other" or self.other_pairs) and len(scenes) < 2:
            raise DataError(
                self._needs("sequences of at least two scenes (references from another scene)")
                + f" but one scene ({scenes[0]})"
            )
        self.pairs: list[tuple[int, int, int]] = []
        self._weights: list[float] = []
        for s, seq in enumerate(self.sequences):
            n = len(seq.exposures)
            for j in range(n):
                for i in range(n):
                    w = self.pair_weights.weight(i, j, n)
                    if w > 0:
                        self.pairs.append((s, i, j))
                        self._weights.append(w)
        if not self.pairs:
            raise DataError(self._needs("exposure pairs with a weight above 0"))

    @classmethod
    def evaluation_protocol(
        cls, root: str | Path, split: str | None = "test", *, size: int | None = 256, **kw: Any
    ) -> SequenceDataset:
        """The UEC evaluation protocol: middle exposure as target, the two darkest and two
        brightest as inputs, the middle exposure of the next scene (cyclic) as reference,
        everything resized to ``size x size``; no crop, no flip."""
        kw.setdefault("pair_weights", PairWeights.protocol())
        return cls(
            root, split, reference_from="other", other_scene="next", other_pairs=False,
            resize=size, **kw,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def weights(self) -> list[float] | None:
        return None if len(set(self._weights)) <= 1 else list(self._weights)

    def describe(self, index: int) -> dict[str, Any]:
        """Scene, files and EVs of item ``index`` (reference scene when deterministic)."""
        s, i, j = self.pairs[index % len(self)]
        seq = self.sequences[s]
        info: dict[str, Any] = {
            "pair_id": f"{seq.scene_id}/{seq.exposures[i].ev:+g}->{seq.exposures[j].ev:+g}",
            "scene_id": seq.scene_id,
            "input_path": seq.exposures[i].path,
            "target_path": seq.exposures[j].path,
            "input_ev": seq.exposures[i].ev,
            "target_ev": seq.exposures[j].ev,
        }
        if self.reference_from == "other" and self.other_scene == "next":
            other = self.sequences[self._next_scene(s)]
            info["reference_path"] = other.exposures[other.nearest(seq.exposures[j].ev)].path
        return info

    def _next_scene(self, s: int) -> int:
        scene = self.sequences[s].scene_id
        n = len(self.sequences)
        for step in range(1, n):
            if self.sequences[(s + step) % n].scene_id != scene:
                return (s + step) % n
        raise DataError(f"no scene other than {scene}")  # excluded in __init__

    def _other(self, s: int, rng: np.random.Generator) -> int:
        if self.other_scene == "next":
            return self._next_scene(s)
        scene = self.sequences[s].scene_id
        choices = [k for k, q in enumerate(self.sequences) if q.scene_id != scene]
        return choices[int(rng.integers(0, len(choices)))]

    def __getitem__(self, index: int) -> Item:
        real, rng = self._locate(index)
        s, i, j = self.pairs[real]
        seq = self.sequences[s]
        a, b = seq.exposures[i], seq.exposures[j]
        image, target = self.store.image(a.path), self.store.image(b.path)
        mask = self.store.mask(a.mask, image) * self.store.mask(b.mask, target)
        image, target, mask = _geometry(
            [image, target, mask], self.options, rng, size=None, names=[a.path, b.path, "mask"]
        )
        size = image.shape[:2]
        item: Item = {
            "input": image_tensor(image),
            "target": image_tensor(target),
            "mask": mask_tensor(mask),
            "input_ev": _ev_tensor(a.ev),
            "target_ev": _ev_tensor(b.ev),
            "index": torch.tensor(real),
        }
        if self.reference_from == "same":
            item["reference"] = item["target"]
        else:
            other = self.sequences[self._other(s, rng)]
            ref = other.exposures[other.nearest(b.ev)]
            (reference,) = _geometry(
                [self.store.image(ref.path)], self.options, rng, size=size, names=[ref.path]
            )
            item["reference"] = image_tensor(reference)
        if self.other_pairs:
            other = self.sequences[self._other(s, rng)]
            k, m = sorted(rng.choice(len(other.exposures), size=2, replace=False).tolist())
            dark, bright = other.exposures[k], other.exposures[m]
            pair = _geometry(
                [self.store.image(dark.path), self.store.image(bright.path)], self.options, rng,
                size=size, names=[dark.path, bright.path],
            )  # fmt: skip
            item["ref_dark"], item["ref_bright"] = image_tensor(pair[0]), image_tensor(pair[1])
        return item


# --------------------------------------------------------------------------- clips


@dataclass
class Clip:
    """The frame rows of one video clip, in frame order."""

    scene_id: str
    clip_id: str
    rows: list[dict[str, Any]]


def find_clips(rows: pd.DataFrame) -> list[Clip]:
    """Video clips: rows with a ``clip_id`` and a ``frame_index``, grouped and ordered.

    Raises :class:`DataError` for a clip whose frame indices repeat.
    """
    video = rows[rows["clip_id"].notna() & rows["frame_index"].notna()]
    clips: list[Clip] = []
    for (scene, clip), group in video.groupby(["scene_id", "clip_id"], sort=True):
        group = group.sort_values("frame_index")
        frames = group["frame_index"].astype(int).tolist()
        if len(set(frames)) != len(frames):
            raise DataError(f"clip {scene}/{clip}: frame indices repeat ({frames})")
        records = [{str(k): v for k, v in r.items()} for r in group.to_dict("records")]
        clips.append(Clip(str(scene), str(clip), records))
    return clips


class ClipDataset(_Base):
    """``num_frames`` consecutive frame pairs of a clip, centred on the frame to restore.

    Items: ``frames``, ``target_frames`` ``(N, 3, H, W)``, ``frame_mask`` ``(N, 1, H, W)``;
    ``input``, ``target``, ``mask`` = the centre frame's; ``input_ev``, ``target_ev`` (centre);
    ``index``. One item per frame of every clip; near a clip's ends the window repeats the
    first or last frame (``edge="clamp"``) or such centres are skipped (``edge="skip"``).
    """

    kind = "clip"

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        *,
        num_frames: int = 3,
        edge: Literal["clamp", "skip"] = "clamp",
        **options: Any,
    ) -> None:
        super().__init__(root, split, **options)
        if not _is_int(num_frames) or num_frames < 1 or num_frames % 2 == 0:
            raise DataError(f"num_frames: expected an odd number >= 1 (3 or 5), got {num_frames!r}")
        if edge not in ("clamp", "skip"):
            raise DataError(f"edge: expected 'clamp' or 'skip', got {edge!r}")
        self.num_frames = num_frames
        self.edge = edge
        self.clips = find_clips(self.rows)
        if not self.clips:
            raise DataError(
                self._needs("video clips (rows with clip_id and frame_index)")
                + ": it holds still pairs only"
            )
        half = num_frames // 2
        self.items: list[tuple[int, int]] = [
            (c, t)
            for c, clip in enumerate(self.clips)
            for t in range(len(clip.rows))
            if edge == "clamp" or half <= t < len(clip.rows) - half
        ]
        if not self.items:
            raise DataError(self._needs(f"clips of at least {num_frames} frames"))

    def __len__(self) -> int:
        return len(self.items)

    def describe(self, index: int) -> dict[str, Any]:
        c, t = self.items[index % len(self)]
        row = self.clips[c].rows[t]
        return {
            "pair_id": _text(row["pair_id"]),
            "scene_id": self.clips[c].scene_id,
            "clip_id": self.clips[c].clip_id,
            "frame_index": int(row["frame_index"]),
            "input_path": str(row["input_path"]),
            "target_path": str(row["target_path"]),
            "input_ev": _ev(row["input_ev"]),
            "target_ev": _ev(row["target_ev"]),
        }

    def __getitem__(self, index: int) -> Item:
        real, rng = self._locate(index)
        c, t = self.items[real]
        rows = self.clips[c].rows
        half = self.num_frames // 2
        window = [rows[min(max(k, 0), len(rows) - 1)] for k in range(t - half, t + half + 1)]
        arrays: list[Array] = []
        names: list[str] = []
        for row in window:
            image = self.store.image(str(row["input_path"]))
            arrays += [
                image,
                self.store.image(str(row["target_path"])),
                self.store.mask(_text(row["mask_path"]), image),
            ]
            names += [str(row["input_path"]), str(row["target_path"]), str(row["mask_path"])]
        arrays = _geometry(arrays, self.options, rng, size=None, names=names)
        frames = torch.stack([image_tensor(a) for a in arrays[0::3]])
        targets = torch.stack([image_tensor(a) for a in arrays[1::3]])
        masks = torch.stack([mask_tensor(a) for a in arrays[2::3]])
        centre = window[half]
        return {
            "frames": frames,
            "target_frames": targets,
            "frame_mask": masks,
            "input": frames[half],
            "target": targets[half],
            "mask": masks[half],
            "input_ev": _ev_tensor(_ev(centre["input_ev"])),
            "target_ev": _ev_tensor(_ev(centre["target_ev"])),
            "index": torch.tensor(real),
        }


# --------------------------------------------------------------------------- loaders

DATASETS: dict[str, type[_Base]] = {
    "paired": PairedDataset,
    "sequence": SequenceDataset,
    "clip": ClipDataset,
}


def data_kind(model_or_kind: str) -> str:
    """``"paired"``, ``"sequence"`` or ``"clip"`` for a data kind or a model name."""
    if model_or_kind in DATA_KINDS:
        return model_or_kind

    return str(model_class(model_or_kind).data_kind)


def open_dataset(
    model_or_kind: str, root: str | Path, split: str | None = "train", **options: Any
) -> _Base:
    """The dataset a model (or data kind) trains on; ``options`` go to its constructor.

    Unknown options are a :class:`DataError` naming the ones the kind accepts.
    """
    import inspect

    kind = data_kind(model_or_kind)
    cls = DATASETS[kind]
    accepted = set(inspect.signature(_Base.__init__).parameters) | set(
        inspect.signature(cls.__init__).parameters
    )
    accepted -= {"self", "root", "split", "options"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DataError(
            f"{kind} data: unknown option(s) {', '.join(unknown)}; accepted: "
            f"{', '.join(sorted(accepted))}"
        )
    if model_or_kind not in DATA_KINDS:
        options.setdefault("model", model_or_kind)
    return cls(root, split, **options)


class TrainSampler(Sampler[int]):
    """Endless, seeded, rank-aware draws for training (a ``DistributedSampler`` that never
    ends and can start mid-way).

    Epoch ``e`` is a permutation of the ``n`` items (uniform) or ``n`` draws with
    replacement proportional to ``weights``, the same on every rank (seeded by
    ``(seed, e)``); rank ``r`` of ``world_size`` takes positions ``r, r + world_size, ...``
    (the epoch padded by wrapping to a multiple of ``world_size``). Yields *draw indices*
    ``k * n + item`` with ``k`` the global draw number, so each draw seeds its own
    augmentation. ``start`` skips the first draws of this rank (a resumed run continues the
    same stream: ``start = step * batch_size``).
    """

    def __init__(
        self,
        n: int,
        *,
        weights: Sequence[float] | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ) -> None:
        if n < 1:
            raise DataError("cannot sample from an empty dataset")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} outside world size {world_size}")
        self.n = n
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and len(self.weights) != n:
            raise DataError(f"{len(self.weights)} weights for {n} items")
        self.seed, self.rank, self.world_size, self.start = seed, rank, world_size, start
        self.per_rank = -(-n // world_size)
        self._epoch: tuple[int, list[int]] | None = None

    def _order(self, epoch: int) -> list[int]:
        if self._epoch is None or self._epoch[0] != epoch:
            epoch_seed = (self.seed * 1_000_003 + epoch) & 0x7FFFFFFFFFFF
            generator = torch.Generator().manual_seed(epoch_seed)
            if self.weights is None:
                order = torch.randperm(self.n, generator=generator).tolist()
            else:
                order = torch.multinomial(
                    self.weights, self.n, replacement=True, generator=generator
                ).tolist()
            total = self.per_rank * self.world_size
            order = (order * (total // self.n + 1))[:total]
            self._epoch = (epoch, order)
        return self._epoch[1]

    def draw(self, position: int) -> int:
        """The draw index of this rank's ``position``-th sample."""
        epoch, j = divmod(position, self.per_rank)
        item = self._order(epoch)[j * self.world_size + self.rank]
        k = (epoch * self.per_rank + j) * self.world_size + self.rank
        return k * self.n + item

    def __iter__(self) -> Iterator[int]:
        position = self.start
        while True:
            yield self.draw(position)
            position += 1


def collate(items: list[Item]) -> dict[str, torch.Tensor]:
    """Stack items into a batch; images of different sizes are a :class:`DataError`."""
    first = items[0]
    batch: dict[str, torch.Tensor] = {}
    for key in first:
        shapes = {tuple(item[key].shape) for item in items}
        if len(shapes) > 1:
            raise DataError(
                f"batch key {key!r}: items of different sizes {sorted(shapes)}; set crop or "
                "resize so every item of a batch has one size"
            )
        batch[key] = torch.stack([item[key] for item in items])
    return batch


def batch_loader(
    dataset: TorchDataset[Item],
    *,
    train: bool = True,
    batch_size: int = 8,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start: int = 0,
    worker_init_fn: Callable[[int], None] | None = None,
) -> DataLoader[Item]:
    """Batches of an opened dataset: endless seeded draws (``train``) or every item once;
    ``worker_init_fn`` runs first in each worker process (picklable where workers spawn)."""
    sampler: Sampler[int] | None = None
    if train:
        weights = getattr(dataset, "weights", None)
        sampler = TrainSampler(
            len(dataset), weights=weights, seed=seed, rank=rank,  # type: ignore[arg-type]
            world_size=world_size, start=start,
        )  # fmt: skip
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        # Its own generator: creating an iterator must not draw from the global torch RNG
        # (a resumed run would then differ from an uninterrupted one).
        generator=torch.Generator().manual_seed(seed * 1009 + rank),
        persistent_workers=num_workers > 0 and train,
        worker_init_fn=worker_init_fn,
        drop_last=False,
    )


def make_loader(
    model_or_kind: str,
    root: str | Path,
    split: str | None = "train",
    *,
    train: bool = True,
    batch_size: int = 8,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start: int = 0,
    options: Mapping[str, Any] | None = None,
) -> DataLoader[Item]:
    """A :class:`~torch.utils.data.DataLoader` of batches for a model (or data kind).

    ``train=True``: an endless :class:`TrainSampler` stream (weighted when the dataset
    weights its items; rank ``rank`` of ``world_size``; ``start`` draws skipped).
    ``train=False``: every item once, in order (evaluation; pass ``batch_size=1`` when the
    images differ in size). ``options`` go to the dataset (crop, resize, flip, cache,
    pair_weights, reference_from, num_frames, ...); ``seed`` seeds both. The dataset is
    ``loader.dataset`` (its ``describe(index)`` names an item's files).
    """
    dataset = open_dataset(model_or_kind, root, split, seed=seed, **dict(options or {}))
    return batch_loader(
        dataset, train=train, batch_size=batch_size, num_workers=num_workers, seed=seed,
        rank=rank, world_size=world_size, start=start,
    )  # fmt: skip
