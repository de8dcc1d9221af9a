"""The shapes detector: attributes read back from pixels, adherence, features."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from diffprof.errors import InputError
from diffprof.quality.detector import (
    FEATURE_DIM,
    FEATURE_NAMES,
    adherence,
    adherence_details,
    attribute_accuracy,
    detect,
    detector_features,
)
from diffprof.quality.shapes import (
    ATTRIBUTES,
    COLORS,
    PALETTE,
    SHAPES,
    SceneSpec,
    dataset,
    degrade,
    parse_prompt,
    prompt_for,
    render_scene,
)

TARGET = 0.99


def _assert_accurate(acc: dict[str, float]) -> None:
    low = {k: v for k, v in acc.items() if v < TARGET}
    assert not low, f"below {TARGET:.0%}: {low}"


def test_accuracy_on_jittered_scenes() -> None:
    images, prompts = dataset(400, seed=101, size=64)
    _assert_accurate(attribute_accuracy(images, prompts))


@pytest.mark.parametrize(
    "level",
    [
        {"noise": 10.0, "blur": 0.8, "color_shift": 15.0, "blobs": 2},  # what a small model gets wrong
        {"noise": 15.0, "blur": 1.2, "color_shift": 20.0, "blobs": 4},  # worse
    ],
)
def test_accuracy_under_noise_blur_colour_shift_and_specks(level: dict) -> None:
    images, prompts = dataset(300, seed=202, size=64)
    noisy = degrade(images, np.random.default_rng(0), **level)
    _assert_accurate(attribute_accuracy(noisy, prompts))


def test_accuracy_at_128px() -> None:
    images, prompts = dataset(100, seed=303, size=128)
    noisy = degrade(images, np.random.default_rng(1), noise=10.0, blur=1.0, color_shift=15.0, blobs=3)
    _assert_accurate(attribute_accuracy(images, prompts))
    _assert_accurate(attribute_accuracy(noisy, prompts))


def test_each_attribute_value_is_detected() -> None:
    """One image per value of every attribute (the others fixed): no value the detector cannot say."""
    base = SceneSpec("large", "red", "circle", "center", "white")
    cases = [replace(base, size="small")] + [replace(base, shape=s) for s in SHAPES]
    cases += [replace(base, position=p) for p in ("top_left", "top_right", "bottom_left", "bottom_right")]
    cases += [replace(base, color=c) for c in COLORS if c != "white"] + [
        replace(base, color="black", background=c) for c in COLORS if c != "black"
    ]
    rng = np.random.default_rng(5)
    for spec in cases:
        found = detect(render_scene(spec, size=64, rng=rng))
        assert found.spec == spec
        assert all(0.5 < c <= 1.0 for c in found.confidence.values()), found.confidence


def test_adherence_counts_matching_attributes() -> None:
    spec = SceneSpec("small", "yellow", "triangle", "bottom_left", "blue")
    image = render_scene(spec, rng=np.random.default_rng(0))
    assert adherence(image, spec) == 1.0
    assert adherence(image, prompt_for(spec)) == 1.0
    wrong_colour = replace(spec, color="orange")
    assert adherence(image, wrong_colour) == pytest.approx(0.8)
    assert adherence_details(image, wrong_colour) == {
        "size": True,
        "color": False,
        "shape": True,
        "position": True,
        "background": True,
    }
    wrong_three = replace(spec, shape="square", size="large", position="center")
    assert adherence(image, wrong_three) == pytest.approx(0.4)


def test_attribute_accuracy_scores_a_model_that_gets_one_attribute_wrong() -> None:
    images, prompts = dataset(20, seed=12)
    wrong = [prompt_for(replace(parse_prompt(p), size="large" if "small" in p else "small")) for p in prompts]
    acc = attribute_accuracy(images, wrong)
    assert acc["size"] == 0.0 and acc["all"] == 0.0
    assert acc["color"] == acc["shape"] == acc["position"] == acc["background"] == 1.0
    assert acc["adherence"] == pytest.approx(0.8)


def test_empty_image_matches_only_the_background() -> None:
    blank = np.full((64, 64, 3), PALETTE["green"], dtype=np.uint8)
    found = detect(blank)
    assert not found.found and found.spec is None
    assert found.background == "green" and found.shape is None and found.confidence["shape"] == 0.0
    assert adherence(blank, "a large red square in the center on a green background") == pytest.approx(0.2)


def test_largest_object_wins_over_a_second_smaller_one() -> None:
    big = np.asarray(render_scene(SceneSpec("large", "blue", "square", "top_left", "white"))).copy()
    small = np.asarray(render_scene(SceneSpec("small", "red", "circle", "bottom_right", "white")))
    mask = np.any(small != np.array(PALETTE["white"], np.uint8), axis=2)
    big[mask] = small[mask]
    assert detect(big).spec == SceneSpec("large", "blue", "square", "top_left", "white")


def test_inputs_pil_uint8_and_float_agree() -> None:
    image = render_scene(SceneSpec("large", "purple", "triangle", "top_right", "orange"), rng=np.random.default_rng(2))
    as_uint8 = np.asarray(image)
    as_float = as_uint8.astype(np.float32) / 255.0
    assert detect(image) == detect(as_uint8)
    from_float = detect(as_float)  # float32 /255 rounds: same answer, confidences to ~1e-8
    assert from_float.spec == detect(image).spec == SceneSpec("large", "purple", "triangle", "top_right", "orange")
    assert from_float.confidence == pytest.approx(detect(image).confidence, abs=1e-6)


def test_bad_inputs_raise_input_errors() -> None:
    with pytest.raises(InputError):
        detect(np.zeros((64, 64, 5), np.uint8))
    with pytest.raises(InputError):
        detect(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError):
        detect(np.full((64, 64, 3), 3.0))  # floats outside [0, 1]
    with pytest.raises(InputError):
        adherence(np.zeros((64, 64, 3), np.uint8), "a photo of a cat")
    with pytest.raises(InputError):
        attribute_accuracy(
            np.zeros((2, 64, 64, 3), np.uint8), ["a small red circle in the center on a blue background"]
        )


def test_features_are_fixed_length_deterministic_and_informative() -> None:
    images, prompts = dataset(30, seed=9)
    feats = detector_features(images)
    assert feats.shape == (30, FEATURE_DIM) == (30, len(FEATURE_NAMES))
    assert np.isfinite(feats).all()
    assert np.array_equal(feats, detector_features(list(images)))
    shape_cols = [FEATURE_NAMES.index(f"p_shape_{s}") for s in SHAPES]
    predicted = [SHAPES[i] for i in feats[:, shape_cols].argmax(axis=1)]
    assert predicted == [parse_prompt(p).shape for p in prompts]
    found = FEATURE_NAMES.index("found")
    assert feats[:, found].min() == 1.0
    assert detector_features(np.zeros((0, 64, 64, 3), np.uint8)).shape == (0, FEATURE_DIM)
    blank = detector_features([Image.new("RGB", (64, 64), PALETTE["red"])])
    assert blank[0, found] == 0.0


def test_detection_fields_follow_attribute_order() -> None:
    found = detect(render_scene(SceneSpec("small", "white", "square", "center", "black")))
    assert list(found.confidence) == list(ATTRIBUTES)
