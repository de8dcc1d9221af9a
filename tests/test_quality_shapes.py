"""The shapes-sd scene generator: prompts, rendering, datasets."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from PIL import Image

from diffprof.errors import InputError
from diffprof.quality.shapes import (
    COLORS,
    PALETTE,
    POSITION_CENTERS,
    POSITIONS,
    SHAPES,
    SIZE_RADII,
    SIZES,
    SceneSpec,
    dataset,
    degrade,
    parse_prompt,
    prompt_for,
    random_scene,
    render_scene,
)

ALL_SPECS = [
    SceneSpec(size, color, shape, position, background)
    for size, color, shape, position, background in itertools.product(SIZES, COLORS, SHAPES, POSITIONS, COLORS)
    if color != background
]


def test_prompt_template_exact() -> None:
    spec = SceneSpec("large", "orange", "triangle", "bottom_right", "blue")
    assert prompt_for(spec) == "a large orange triangle at the bottom right on a blue background"
    assert (
        prompt_for(SceneSpec("small", "red", "circle", "center", "white"))
        == "a small red circle in the center on a white background"
    )


def test_every_prompt_round_trips() -> None:
    assert len(ALL_SPECS) == 2 * 8 * 3 * 5 * 7
    for spec in ALL_SPECS:
        assert parse_prompt(prompt_for(spec)) == spec


@pytest.mark.parametrize(
    "prompt",
    [
        "A Small Red Circle In The Center On A Blue Background",
        "a small red circle in the center on a blue background.",
        "  a  small red   circle in the center on an blue background ",
    ],
)
def test_parse_tolerates_case_spacing_article_and_period(prompt: str) -> None:
    assert parse_prompt(prompt) == SceneSpec("small", "red", "circle", "center", "blue")


def test_parse_rejects_prompts_outside_the_template() -> None:
    with pytest.raises(InputError) as err:
        parse_prompt("a photo of a cat")
    assert "not a shapes prompt" in err.value.message
    assert "background" in (err.value.hint or "")  # the hint shows the template


def test_parse_names_the_bad_word_and_the_fix() -> None:
    with pytest.raises(InputError) as err:
        parse_prompt("a small red circel in the center on a blue background")
    assert "circel" in err.value.message and "circle" in (err.value.hint or "")
    with pytest.raises(InputError) as err:
        parse_prompt("a small pink circle in the center on a blue background")
    assert "pink" in err.value.message and "valid:" in (err.value.hint or "")
    with pytest.raises(InputError) as err:
        parse_prompt("a small red circle at the middle left on a blue background")
    assert "middle left" in err.value.message


def test_scene_spec_validates() -> None:
    with pytest.raises(InputError):
        SceneSpec("medium", "red", "circle", "center", "blue")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        SceneSpec("small", "red", "circle", "centre", "blue")  # type: ignore[arg-type]


def test_random_scene_is_uniform_deterministic_and_never_invisible() -> None:
    rng = np.random.default_rng(0)
    specs = [random_scene(rng) for _ in range(3000)]
    assert all(s.color != s.background for s in specs)
    for name, choices in [
        ("size", SIZES),
        ("color", COLORS),
        ("shape", SHAPES),
        ("position", POSITIONS),
        ("background", COLORS),
    ]:
        counts = {c: sum(getattr(s, name) == c for s in specs) for c in choices}
        expected = len(specs) / len(choices)
        assert all(abs(n - expected) < 0.25 * expected for n in counts.values()), (name, counts)
    again = np.random.default_rng(0)
    assert [random_scene(again) for _ in range(3000)] == specs


def test_palette_colours_are_far_apart() -> None:
    rgb = {k: np.array(v, float) for k, v in PALETTE.items()}
    for a, b in itertools.combinations(rgb, 2):
        assert np.linalg.norm(rgb[a] - rgb[b]) > 100, (a, b)


@pytest.mark.parametrize("size", [64, 128])
def test_render_without_jitter_is_the_canonical_scene(size: int) -> None:
    spec = SceneSpec("large", "green", "square", "top_left", "purple")
    img = render_scene(spec, size=size)
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (size, size)
    px = np.asarray(img)
    assert tuple(px[-1, -1]) == PALETTE["purple"]
    cx, cy = (int(v * size) for v in POSITION_CENTERS["top_left"])
    assert tuple(px[cy, cx]) == PALETTE["green"]
    # The square covers (2r)^2 of the image: alpha recovered from the green channel.
    g_fg, g_bg = PALETTE["green"][1], PALETTE["purple"][1]
    alpha = (px[:, :, 1].astype(float) - g_bg) / (g_fg - g_bg)
    assert alpha.sum() / size**2 == pytest.approx((2 * SIZE_RADII["large"]) ** 2, rel=0.02)


def test_render_area_matches_each_shape() -> None:
    size = 128
    r = SIZE_RADII["large"] * size
    expected = {"circle": np.pi * r**2, "square": 4 * r**2, "triangle": 2 * r**2}
    for shape, area in expected.items():
        px = np.asarray(render_scene(SceneSpec("large", "white", shape, "center", "black"), size=size)).astype(float)
        alpha = (px[:, :, 0] - 15) / (245 - 15)
        assert alpha.sum() == pytest.approx(area, rel=0.02), shape


def test_edges_are_anti_aliased() -> None:
    px = np.asarray(render_scene(SceneSpec("large", "white", "circle", "center", "black")))
    levels = np.unique(px[:, :, 0])
    assert len(levels) >= 6  # edge pixels in between, not just foreground and background
    assert levels.min() == 15 and levels.max() == 245


def test_render_jitter_is_deterministic_per_rng() -> None:
    spec = SceneSpec("small", "blue", "triangle", "center", "yellow")
    a = np.asarray(render_scene(spec, rng=np.random.default_rng(3)))
    b = np.asarray(render_scene(spec, rng=np.random.default_rng(3)))
    c = np.asarray(render_scene(spec, rng=np.random.default_rng(4)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.asarray(render_scene(spec)))


@pytest.mark.parametrize("size", [16, 2000, 64.0])
def test_render_rejects_bad_sizes(size: object) -> None:
    with pytest.raises(InputError):
        render_scene(SceneSpec("small", "blue", "triangle", "center", "yellow"), size=size)  # type: ignore[arg-type]


def test_dataset_shapes_prompts_and_determinism() -> None:
    images, prompts = dataset(50, seed=7, size=64)
    assert images.shape == (50, 64, 64, 3) and images.dtype == np.uint8
    assert len(prompts) == 50 and all(isinstance(parse_prompt(p), SceneSpec) for p in prompts)
    again, prompts_again = dataset(50, seed=7, size=64)
    assert np.array_equal(images, again) and prompts == prompts_again
    _, other_prompts = dataset(50, seed=8, size=64)
    assert other_prompts != prompts
    big, _ = dataset(3, seed=7, size=128)
    assert big.shape == (3, 128, 128, 3)
    assert dataset(0)[0].shape == (0, 64, 64, 3)


def test_dataset_background_matches_prompt() -> None:
    images, prompts = dataset(40, seed=1)
    for img, prompt in zip(images, prompts):
        bg = np.array(PALETTE[parse_prompt(prompt).background], float)
        assert np.abs(img[0, 0].astype(float) - bg).max() <= 12  # colour jitter bound


def test_dataset_is_fast() -> None:
    start = time.perf_counter()
    images, _ = dataset(5000, seed=0, size=64)
    elapsed = time.perf_counter() - start
    assert images.shape[0] == 5000
    assert elapsed < 10.0, f"{elapsed:.1f} s for 5,000 images (about 0.6 s expected)"


def test_degrade_changes_images_deterministically() -> None:
    images, _ = dataset(4, seed=2)
    a = degrade(images, np.random.default_rng(0))
    b = degrade(images, np.random.default_rng(0))
    assert a.shape == images.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - images).mean() > 3
