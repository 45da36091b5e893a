"""The demo tests the shipped weights on scenes they never saw: the held-out rule
(expokit.demo.held_out_splits and the clips' scene seeds), the training script's use of it,
and the record of the shipped weights' cards (meta.json ``card.scenes``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from expokit.curation.rendering.render_layout import assign_names
from expokit.demo import (
    DEMO_TEST_GENERATED,
    DemoConfig,
    TrainedScenes,
    clip_content,
    clip_scene_seeds,
    clip_splits,
    demo_raw_dir,
    demo_scene_names,
    demo_split_lists,
    demo_test_contents,
    demo_test_scenes,
    generated_raw_name,
    generated_raws,
    held_out_splits,
    scene_content,
    shipped_label,
)
from expokit.models.checkpoint import pretrained_dir, read_meta, shipped_models

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_shipped_weights.py"
RETRAIN = "python scripts/train_shipped_weights.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """``scripts/train_shipped_weights.py`` as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("train_shipped_weights", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while loading
    spec.loader.exec_module(module)
    return module


def shipped_scene_names(script: ModuleType) -> list[str]:
    """The MSEC names of the DNGs the script trains the still models on."""
    generated = [
        Path(generated_raw_name(kind, seed))
        for kind, seeds in script.GENERATED.items()
        for seed in seeds
    ]
    return sorted(
        assign_names([*sorted(demo_raw_dir().glob("*.dng")), *generated], "msec").values()
    )


def test_demo_scene_names_are_the_render_names(tmp_path: Path) -> None:
    raws = [*sorted(demo_raw_dir().glob("*.dng")), *generated_raws(tmp_path)]
    assert demo_scene_names() == tuple(sorted(assign_names(raws, "msec").values()))
    assert set(demo_test_scenes()) <= set(demo_scene_names()) and demo_test_scenes()


def test_scene_content_names_what_a_scene_shows() -> None:
    # chart and gradient are one picture whatever the seed or size: one content
    assert scene_content("generated-chart-4_DNG") == scene_content("synthetic-chart_DNG")
    assert scene_content("generated-gradient-3_DNG") == "gradient"
    assert scene_content("generated-texture-1_DNG") != scene_content("generated-texture-2_DNG")
    assert scene_content("synthetic-texture_DNG") == "texture-0"
    assert scene_content("IMG-0001_CR2") == "IMG-0001_CR2"


def test_held_out_splits_keep_the_demo_test_scenes_out_of_training(script: ModuleType) -> None:
    names = shipped_scene_names(script)
    lists = held_out_splits(names).lists
    test, val = set(lists["test"]), set(lists["val"])
    train = set(names) - test - val
    tested = set(demo_test_contents()["msec"])
    assert tested and {scene_content(n) for n in demo_test_scenes()} == tested
    assert {n for n in names if scene_content(n) in tested} == test  # exactly those to test
    assert not {scene_content(n) for n in train | val} & tested
    assert train and val and not val & test
    # the demo's own test scene that ships (same file in both datasets) is held out
    assert set(demo_test_scenes()) & set(names) <= test


def test_shipped_video_clips_film_other_scenes_than_the_demo_test_clips(
    script: ModuleType,
) -> None:
    demo = DemoConfig()
    tested = demo_test_contents(demo)["rig"]
    assert tested == tuple(clip_content(seed) for seed in clip_scene_seeds(demo)[-3:])
    assert len(set(tested)) == demo.test_clips == 3  # a verdict on one clip is never clear
    shipped = {clip_content(seed) for seed in clip_scene_seeds(script.video_config())}
    assert len(shipped) == script.VIDEO_CLIPS
    assert not shipped & set(demo_test_contents()["rig"])
    # the default still films scene seed + clip, as the demo always did
    assert clip_scene_seeds(DemoConfig(clips=3, seed=5, test_clips=1)) == (5, 6, 7)


def test_the_clip_splits_keep_a_training_clip() -> None:
    clips = ("a", "b", "c", "d")
    assert clip_splits(clips, DemoConfig()) == {"train": ("a",), "test": ("b", "c", "d")}
    assert clip_splits(clips, DemoConfig(test_clips=1)) == {
        "train": ("a", "b", "c"), "test": ("d",)
    }  # fmt: skip
    for clips_, test in ((3, 3), (4, 0), (1, 1)):
        with pytest.raises(ValueError, match="test_clips must be at least 1 and leave"):
            DemoConfig(clips=clips_, test_clips=test)


def test_the_script_refuses_training_data_that_shows_a_demo_test_scene(
    script: ModuleType,
) -> None:
    splits = {"train": ("synthetic-chart_DNG",), "test": ("generated-chart-1_DNG",)}
    content = {name: scene_content(name) for names in splits.values() for name in names}
    with pytest.raises(SystemExit, match="chart"):
        script.trained_scenes(splits, content, demo_test_contents()["msec"])
    splits = {"train": ("synthetic-texture_DNG",), "test": ("synthetic-chart_DNG",)}
    content = {name: scene_content(name) for names in splits.values() for name in names}
    scenes = script.trained_scenes(splits, content, demo_test_contents()["msec"])
    assert scenes.seen == ("texture-0",) and scenes.test == ("synthetic-chart_DNG",)
    assert TrainedScenes.from_card({"scenes": scenes.to_card()}, "meta.json") == scenes


def test_shipped_label_says_whether_the_card_confirms_unseen_scenes() -> None:
    unseen = TrainedScenes(train=("a", "b"), val=(), test=("c",), seen=("texture-0",))
    seen = TrainedScenes(train=("a",), val=(), test=(), seen=("chart",))
    label, held_out = shipped_label({"scenes": unseen.to_card()}, 7, ("chart",), "msec", "m")
    assert held_out is True and "trained on 2 synthetic DNG scenes" in label
    assert label.endswith("never saw these scenes)")
    label, held_out = shipped_label({"scenes": seen.to_card()}, 7, ("chart",), "msec", "m")
    assert held_out is False and "SAW chart" in label
    label, held_out = shipped_label({}, 7, ("chart",), "rig", "m")
    assert held_out is None and "does not record" in label


@pytest.mark.parametrize("name", shipped_models())
def test_shipped_weights_never_saw_the_demo_test_scenes(name: str) -> None:
    """Fails when a shipped card records a train or val scene showing a demo test scene."""
    meta = read_meta(pretrained_dir(name))
    scenes = TrainedScenes.from_card(meta.extra.get("card", {}), f"{name}/meta.json")
    if scenes is None:
        pytest.skip(f"{name}: weights made before cards recorded their scenes; {RETRAIN}")
    tested = demo_test_contents()["rig" if name == "video" else "msec"]
    assert not scenes.saw(tested), (name, scenes.saw(tested))
    assert scenes.train and set(scenes.train).isdisjoint(scenes.test)


def test_the_demo_test_scenes_show_distinct_pictures_unseen_in_its_train_split() -> None:
    # The demo scores reference-taking methods with another *test* scene as the reference:
    # two test scenes of one picture would hand every such method its own target.
    names = demo_scene_names()
    assert len({scene_content(n) for n in names}) == len(names)  # no picture twice
    lists = demo_split_lists(names)
    test = [scene_content(n) for n in lists["test"]]
    # two by the every-fourth rule, six generated for the test split only (a verdict
    # weighs the scenes: two cannot show a lead clearly)
    assert len(test) == 2 + len(DEMO_TEST_GENERATED) and len(set(test)) == len(test)
    assert {f"{kind}-{seed}" for kind, seed in DEMO_TEST_GENERATED} <= set(test)
    train = {scene_content(n) for n in names if n not in lists["test"] + lists["val"]}
    assert not train & set(test)


def test_the_held_out_scenes_of_the_cards_are_never_trained_on(script: ModuleType) -> None:
    # HELD_OUT scores the still weights beyond their 3 test scenes: no seed of it is in the
    # generated training data, nor in the demo's test-only scenes (those score them too).
    for kind, seeds in script.HELD_OUT.items():
        assert not set(seeds) & set(script.GENERATED.get(kind, ())), kind
        assert not {(kind, s) for s in seeds} & set(DEMO_TEST_GENERATED), kind
    for kind, seed in DEMO_TEST_GENERATED:
        assert seed not in script.GENERATED.get(kind, ()), (kind, seed)


def test_a_card_row_says_its_verdict_with_the_scenes(script: ModuleType) -> None:
    evidence = {"scenes": 12, "scenes_better": 12, "clear": "above"}
    assert script.verdict_words({"status": "above", "evidence": evidence}) == (
        "clearly above; better on 12 of 12 scenes"
    )
    unclear = {"status": "unclear", "evidence": {**evidence, "scenes_better": 1, "clear": None}}
    assert script.verdict_words(unclear) == "not clearly above; better on 1 of 12 scenes"
    below = {"status": "below", "evidence": {**evidence, "scenes_better": 0, "clear": "below"}}
    assert script.verdict_words(below) == "clearly below; better on 0 of 12 scenes"
    assert script.verdict_words({"psnr": 30.0}) == "-"  # scored before verdicts weighed scenes
