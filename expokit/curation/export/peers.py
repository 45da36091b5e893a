"""Checks of an export folder against the rules of the peers' own loader code.

Pure functions over a folder: they read the tree (names, and image sizes where a rule needs
them) and return the problems a peer's code would hit; they write nothing. The layout
constants the exporters follow (:data:`MSEC_SPLIT_FOLDERS`, :data:`MSEC_EXPERT_FOLDER`,
:data:`DIME_MIN_FRAMES`) live here because they *are* those peers' rules.

``msec``
    :func:`check_msec_peers`: MSEC (Afifi et al., CVPR 2021), UEC and RECNet loaders.
``dime``
    :func:`check_dime_peers`: VECNet/DIME (``data/VEC_dataset.py``, ``data/util.py``,
    ``test.py``).
``paired``
    :func:`check_paired_peers`: BasicSR's ``PairedImageDataset`` (``basicsr/data/data_util.py``)
    and LOL-style loaders (same names in two folders).
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from expokit.core.ev import MSEC_LADDER, ev_token

#: expokit split -> MSEC split folder.
MSEC_SPLIT_FOLDERS = {"train": "training", "val": "validation", "test": "testing"}
#: The folder most peer evaluation scripts hard-code for the test GT (a copy of GT_IMAGES).
MSEC_EXPERT_FOLDER = "expert_c_testing_set"
#: Fewest frames of a DIME clip (VECNet's 5-frame windows).
DIME_MIN_FRAMES = 5

# --------------------------------------------------------------------------- msec peer check


def _peer_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return (int(image.size[0]), int(image.size[1]))
    except (OSError, UnidentifiedImageError):
        return None


def check_msec_peers(out: str | Path) -> list[str]:
    """Problems a peer's loader would hit in the MSEC export at ``out`` (empty: none).

    The rules are those of the peers' own code (``docs``: field notes "Peers' loaders"):

    * ``training``, ``validation`` and ``testing`` each hold ``INPUT_IMAGES`` and
      ``GT_IMAGES``; ``testing`` also ``expert_c_testing_set`` (RECNet and UEC refuse a
      layout without ``testing/INPUT_IMAGES``; evaluation scripts hard-code expert C);
    * MSEC: every input is ``<name>_<EV>.JPG`` with EV in ``N1.5 N1 0 P1 P1.5``; its GT is
      the name minus the last ``_`` field plus ``.jpg`` in ``GT_IMAGES`` (and, for testing,
      in ``expert_c_testing_set``); no GT without inputs; the glob ``<name>*`` in
      ``INPUT_IMAGES`` finds exactly that scene's inputs (no name is a prefix of another);
    * UEC: files grouped by ``"_".join(file.split("_")[:-2]) + "_"`` form groups of exactly
      five, one per EV suffix, all of one image size;
    * RECNet: bucketing by the last ``_`` token, each of the five buckets holds every scene
      of the split (``0`` included).
    """
    root = Path(out)
    problems: list[str] = []
    tokens = [ev_token(ev) for ev in MSEC_LADDER]
    for split_folder in MSEC_SPLIT_FOLDERS.values():
        needed = ["INPUT_IMAGES", "GT_IMAGES"]
        if split_folder == "testing":
            needed.append(MSEC_EXPERT_FOLDER)
        for sub in needed:
            if not (root / split_folder / sub).is_dir():
                problems.append(
                    f"{split_folder}/{sub}/ is missing (the peers' loaders need it; a split "
                    "with no scene: rebuild the dataset so every split gets one)"
                )
        inputs_dir = root / split_folder / "INPUT_IMAGES"
        files = _peer_files(inputs_dir)
        if (root / split_folder / "INPUT_IMAGES").is_dir() and not files:
            problems.append(f"{split_folder}/INPUT_IMAGES/ holds no images")
        gts = set(_peer_files(root / split_folder / "GT_IMAGES"))
        experts = set(_peer_files(root / split_folder / MSEC_EXPERT_FOLDER))
        scenes: set[str] = set()
        buckets: dict[str, set[str]] = defaultdict(set)
        for file in files:
            stem, _, suffix = file.rpartition(".")
            name, _, token = stem.rpartition("_")
            if suffix != "JPG" or token not in tokens or not name:
                problems.append(
                    f"{split_folder}/INPUT_IMAGES/{file}: not <name>_<EV>.JPG with EV in "
                    f"{' '.join(tokens)}"
                )
                continue
            scenes.add(name)
            buckets[token].add(name)  # RECNet: bucket = last "_" token
            gt = "_".join(stem.split("_")[:-1]) + ".jpg"  # MSEC's GT rule
            if gt not in gts:
                problems.append(f"{split_folder}/INPUT_IMAGES/{file}: no GT_IMAGES/{gt}")
            if split_folder == "testing" and gt not in experts:
                problems.append(f"{split_folder}/INPUT_IMAGES/{file}: no {MSEC_EXPERT_FOLDER}/{gt}")
        for gt in sorted(gts):
            if gt.rsplit(".", 1)[0] not in scenes:
                problems.append(f"{split_folder}/GT_IMAGES/{gt}: a GT without inputs")
        # MSEC globs <name>* in INPUT_IMAGES: it must find that scene's five inputs only.
        for name in sorted(scenes):
            found = [f for f in files if f.startswith(name)]
            if len(found) != len(tokens) or any(not f.startswith(name + "_") for f in found):
                problems.append(
                    f"{split_folder}: glob {name}* finds {len(found)} file(s), not its "
                    f"{len(tokens)} inputs (a scene name is a prefix of another)"
                )
        # UEC: group key = file name minus its last two "_" fields, five per group.
        groups: dict[str, list[str]] = defaultdict(list)
        for file in files:
            groups["_".join(file.split("_")[:-2]) + "_"].append(file)
        for group, members in sorted(groups.items()):
            suffixes = sorted(f.rsplit("_", 1)[-1] for f in members)
            if suffixes != sorted(f"{t}.JPG" for t in tokens):
                problems.append(
                    f"{split_folder}: UEC group {group!r} has {len(members)} file(s) "
                    f"({' '.join(suffixes)}), not one of each of N1.5 N1 0 P1 P1.5"
                )
            sizes = {_image_size(inputs_dir / f) for f in members}
            if len(sizes) != 1 or None in sizes:
                shown = ", ".join("unreadable" if z is None else f"{z[0]}x{z[1]}" for z in sizes)
                problems.append(
                    f"{split_folder}: UEC group {group!r} has image sizes {shown}; UEC does "
                    "not resize, every EV of a scene needs one size"
                )
        # RECNet: compares per-EV buckets; every bucket must hold every scene.
        for token in tokens:
            if scenes and buckets[token] != scenes:
                lacking = sorted(scenes - buckets[token])
                problems.append(
                    f"{split_folder}: RECNet bucket {token!r} lacks {len(lacking)} scene(s) "
                    f"({', '.join(lacking[:5])})"
                )
    return problems


# --------------------------------------------------------------------------- dime peer check

#: Frame suffixes VECNet's ``read_img2`` decodes (``data/util.py``: ``.npy`` via ``np.load``,
#: ``.png``/``.jpg`` via ``cv2.imread``; anything else leaves ``img`` unbound and crashes).
DIME_READABLE_SUFFIXES = (".png", ".jpg", ".npy")
#: Test clip ids VECNet's ``test.py`` hard-codes as over-exposed (line 53); it divides the
#: "under" sums by ``len(test clips) - len(this list)`` (lines 110-111).
VECNET_OVER_CLIPS = ("091", "110", "111", "112", "113", "114", "116", "117", "118", "119")
DIME_SPLITS = ("train", "test")
_DIME_CLIP = re.compile(r"\d{3,}")
_DIME_FRAME = re.compile(r"\d+")


def _vecnet_glob(folder: Path) -> list[Path]:
    """VECNet's ``glob_file_list``: ``sorted(glob.glob(os.path.join(root, '*')))`` (names
    starting with ``.`` are not matched)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=str)


def _frame_size(path: Path) -> tuple[int, ...] | None:
    if path.suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        return tuple(int(v) for v in array.shape[:2][::-1])
    return _image_size(path)


def _dime_split_problems(
    split_dir: Path, split: str, suffixes: tuple[str, ...]
) -> tuple[list[str], int]:
    """Problems of one ``np/<split>`` folder and its number of (LQ, GT) clip pairs."""
    problems: list[str] = []
    where = f"np/{split}"
    lq_root, gt_root = split_dir / "LQ", split_dir / "GT"
    for sub in (lq_root, gt_root):
        if not sub.is_dir():
            problems.append(f"{where}/{sub.name}/ is missing (VECNet reads LQ and GT side by side)")
    if problems:
        return problems, 0
    lq_clips, gt_clips = _vecnet_glob(lq_root), _vecnet_glob(gt_root)
    for side, entries in (("LQ", lq_clips), ("GT", gt_clips)):
        for entry in entries:
            if not entry.is_dir():
                problems.append(
                    f"{where}/{side}/{entry.name}: a stray file; VECNet takes every entry of "
                    f"{side}/ as a clip folder"
                )
            elif not _DIME_CLIP.fullmatch(entry.name):
                problems.append(
                    f"{where}/{side}/{entry.name}: clip folders are zero-padded numbers (%03d)"
                )
    lq_names = [p.name for p in lq_clips if p.is_dir()]
    gt_names = [p.name for p in gt_clips if p.is_dir()]
    if lq_names != gt_names:
        only_lq = sorted(set(lq_names) - set(gt_names))
        only_gt = sorted(set(gt_names) - set(lq_names))
        problems.append(
            f"{where}: LQ and GT clip folders differ (only in LQ: {', '.join(only_lq) or '-'}; "
            f"only in GT: {', '.join(only_gt) or '-'}); VECNet pairs them by sorted position"
        )
    for clip in sorted(set(lq_names) & set(gt_names)):
        lq_frames = _vecnet_glob(lq_root / clip)
        gt_frames = _vecnet_glob(gt_root / clip)
        clip_where = f"{where}/{{LQ,GT}}/{clip}"
        bad = False
        for side, frames in (("LQ", lq_frames), ("GT", gt_frames)):
            for frame in frames:
                if not frame.is_file() or frame.suffix not in suffixes:
                    bad = True
                    problems.append(
                        f"{where}/{side}/{clip}/{frame.name}: a stray entry; frames are "
                        f"{'/'.join(suffixes)} files (VECNet reads every entry as a frame and "
                        "fails on anything it cannot decode)"
                    )
        lq = [p.name for p in lq_frames]
        gt = [p.name for p in gt_frames]
        if lq != gt:
            problems.append(
                f"{clip_where}: LQ ({len(lq)} frames) and GT ({len(gt)}) hold different frame "
                f"names (first difference: "
                f"{next((a, b) for a, b in itertools.zip_longest(lq, gt) if a != b)}); VECNet "
                "pairs frames by sorted position"
            )
            bad = True
        stems = [name.rsplit(".", 1)[0] for name in lq]
        if not all(_DIME_FRAME.fullmatch(s) for s in stems) or len({len(s) for s in stems}) > 1:
            problems.append(
                f"{clip_where}: frame names are not zero-padded numbers of one width, so "
                "their sorted order need not be frame order"
            )
        if min(len(lq), len(gt)) < DIME_MIN_FRAMES:
            problems.append(
                f"{clip_where}: {min(len(lq), len(gt))} frame(s); VECNet needs >= "
                f"{DIME_MIN_FRAMES} (5-frame windows, padding new_info reads index 4)"
            )
            bad = True
        if bad:
            continue
        sizes: dict[tuple[int, ...] | None, list[str]] = defaultdict(list)
        for side, frames in (("LQ", lq_frames), ("GT", gt_frames)):
            for frame in frames:
                sizes[_frame_size(frame)].append(f"{side}/{frame.name}")
        if None in sizes:
            problems.append(f"{clip_where}: unreadable frame(s) {', '.join(sizes[None][:3])}")
        elif len(sizes) > 1:
            shown = "; ".join(
                f"{'x'.join(map(str, size))}: {len(files)} ({files[0]})"
                for size, files in sizes.items()
                if size is not None
            )
            problems.append(
                f"{clip_where}: frames differ in size ({shown}); LQ and GT frames of a clip "
                "must all have one size"
            )
    return problems, len(set(lq_names) & set(gt_names))


def check_dime_peers(
    out: str | Path, *, suffixes: tuple[str, ...] = (".png",)
) -> tuple[list[str], list[str]]:
    """Problems VECNet's own data code would hit in the DIME export at ``out``.

    Returns ``(errors, warnings)``. The rules are those of VECNet's code
    (github.com/kravrolens/VECNet, ``data/VEC_dataset.py``, ``data/util.py``, ``test.py``):

    * clip folders ``np/{train,test}/{LQ,GT}/<%03d>/`` are listed with
      ``sorted(glob(root/'*'))`` and paired with ``zip`` by sorted position, so LQ and GT hold
      the same clip names and nothing else (a stray file becomes a "clip");
    * the frames of a clip are paired by sorted position too, and VECNet asserts equal
      counts: LQ and GT hold identical, zero-padded frame names, each a frame file
      (``suffixes``: PNG for expokit's export; VECNet reads ``.png``, ``.jpg``, ``.npy``);
    * at least :data:`DIME_MIN_FRAMES` frames per clip (``N_frames: 5`` with
      ``padding: new_info`` reads frame index 4 for the first frame of a clip);
    * one frame size per clip, LQ and GT alike;
    * the test split must not hold exactly 10 clips: ``test.py`` divides the per-clip
      "under" averages by ``len(clips) - 10`` (lines 110-111; ten hard-coded over-exposed ids
      on line 53).

    Warnings: a split folder absent (``test.py`` then divides by zero clips, line 106), fewer
    than 10 test clips (a negative divisor: meaningless "under" scores), test clips whose
    numbers VECNet's ``test.py`` counts as over-exposed (:data:`VECNET_OVER_CLIPS`).
    """
    root = Path(out)
    errors: list[str] = []
    warnings: list[str] = []
    counts: dict[str, int] = {}
    for split in DIME_SPLITS:
        split_dir = root / "np" / split
        if not split_dir.is_dir():
            warnings.append(
                f"np/{split}/ is missing: VECNet's "
                + (
                    "train.py has nothing to train on"
                    if split == "train"
                    else "test.py then divides by zero test clips (test.py line 106) and "
                    "train.py validates on np/test"
                )
            )
            continue
        problems, counts[split] = _dime_split_problems(split_dir, split, suffixes)
        errors += problems
    tests = counts.get("test")
    if tests == len(VECNET_OVER_CLIPS):
        errors.append(
            f"np/test holds exactly {tests} clips: VECNet's test.py divides the under-exposure "
            f"averages by (number of test clips - {len(VECNET_OVER_CLIPS)}) (test.py lines "
            "110-111), a division by zero; move a clip between splits or add one"
        )
    elif tests is not None and tests < len(VECNET_OVER_CLIPS):
        warnings.append(
            f"np/test holds {tests} clip(s): VECNet's test.py divides the under-exposure "
            f"averages by ({tests} - {len(VECNET_OVER_CLIPS)}) (lines 110-111), so its "
            "PSNR-under/SSIM-under are meaningless (its overall PSNR/SSIM are fine)"
        )
    if tests:
        over = sorted(
            p.name for p in _vecnet_glob(root / "np/test/GT") if p.name in VECNET_OVER_CLIPS
        )
        if over:
            warnings.append(
                f"np/test clips {', '.join(over)} are on VECNet's hard-coded over-exposed list "
                "(test.py line 53): its PSNR-over/SSIM-over count them as over-exposed"
            )
    return errors, warnings


# --------------------------------------------------------------------------- paired peer check

#: The paired layout's folders: BasicSR's ``dataroot_lq`` / ``dataroot_gt`` of a split.
PAIRED_FOLDERS = ("lq", "gt")
#: BasicSR's ``meta_info_file`` of a split, beside (never inside) its ``lq``/``gt`` folders.
PAIRED_META_INFO = "meta_info.txt"


def _basicsr_scandir(folder: Path) -> list[str]:
    """BasicSR's ``scandir(folder)`` (``basicsr/utils/misc.py``, not recursive): names of
    the plain files not starting with ``.``, sorted here for stable messages."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())


def check_paired_peers(out: str | Path) -> list[str]:
    """Problems BasicSR's ``PairedImageDataset`` or a LOL-style loader would hit in the
    ``paired`` export at ``out`` (empty: none).

    The rules are those of BasicSR's ``basicsr/data/data_util.py`` with
    ``filename_tmpl: '{}'``, for every split folder holding ``lq/`` or ``gt/``:

    * ``paired_paths_from_folder``: ``lq`` and ``gt`` hold equally many files, and for each
      ``gt`` file the ``lq`` file of the same name (template ``'{}'`` plus the GT's
      extension) exists; LOL-style loaders pair ``low``/``high`` the same way, by name;
    * ``paired_paths_from_meta_info_file``: the first space-separated token of each line of
      ``<split>/meta_info.txt`` is a file present in both folders, each listed once, and
      every pair is listed.
    """
    root = Path(out)
    problems: list[str] = []
    folders = sorted(root.iterdir()) if root.is_dir() else []
    splits = [p.name for p in folders if any((p / sub).is_dir() for sub in PAIRED_FOLDERS)]
    for split in splits:
        lq_dir, gt_dir = root / split / "lq", root / split / "gt"
        for folder in (lq_dir, gt_dir):
            if not folder.is_dir():
                problems.append(f"{split}/{folder.name}/ is missing (BasicSR reads both folders)")
        lq, gt = _basicsr_scandir(lq_dir), _basicsr_scandir(gt_dir)
        if len(lq) != len(gt):
            problems.append(
                f"{split}: lq holds {len(lq)} file(s), gt {len(gt)}; BasicSR asserts equal counts"
            )
        for name in sorted(set(gt) - set(lq)):
            problems.append(f"{split}/gt/{name}: no lq/{name} (pairs are matched by name)")
        for name in sorted(set(lq) - set(gt)):
            problems.append(f"{split}/lq/{name}: no gt/{name} (pairs are matched by name)")
        meta = root / split / PAIRED_META_INFO
        if not meta.is_file():
            continue
        try:
            listed = [line.split(" ")[0] for line in meta.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{split}/{PAIRED_META_INFO}: unreadable: {exc}")
            continue
        in_both = set(lq) & set(gt)
        for number, name in enumerate(listed, start=1):
            if name not in in_both:
                problems.append(
                    f"{split}/{PAIRED_META_INFO}, line {number}: {name!r} is not in both "
                    "lq/ and gt/"
                )
        seen: set[str] = set()
        repeated: set[str] = set()
        for name in listed:
            (repeated if name in seen else seen).add(name)
        if repeated:
            problems.append(
                f"{split}/{PAIRED_META_INFO} lists {', '.join(sorted(repeated)[:5])} twice"
            )
        unlisted = sorted(in_both - set(listed))
        if unlisted:
            problems.append(
                f"{split}/{PAIRED_META_INFO} does not list {len(unlisted)} pair(s) "
                f"({', '.join(unlisted[:5])})"
            )
    return problems
