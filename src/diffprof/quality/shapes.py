"""Procedural scenes for ``shapes-sd``: one coloured shape on a plain background, and its prompt.

No pretrained text-to-image model can be downloaded here, so diffprof trains its own small one on
these scenes. The scene space is small and fully described by five attributes, so a generated
image's prompt adherence can be read back exactly by :mod:`diffprof.quality.detector`.

Prompts follow one template::

    a {small|large} {color} {circle|square|triangle} {position phrase} on a {color} background

Rendering is vectorised numpy over a batch: each pixel's coverage is ``clip(0.5 - d, 0, 1)``
where ``d`` is the signed distance (in pixels) from the pixel centre to the shape's edge, which
anti-aliases edges without supersampling. The same coverage function serves the detector's
shape templates, so generator and detector agree on what a "square" is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Literal, get_args

import numpy as np
from PIL import Image

from diffprof.errors import InputError, unknown_choice

Size = Literal["small", "large"]
Color = Literal["red", "orange", "yellow", "green", "blue", "purple", "white", "black"]
Shape = Literal["circle", "square", "triangle"]
Position = Literal["center", "top_left", "top_right", "bottom_left", "bottom_right"]

SIZES: tuple[Size, ...] = get_args(Size)
COLORS: tuple[Color, ...] = get_args(Color)
SHAPES: tuple[Shape, ...] = get_args(Shape)
POSITIONS: tuple[Position, ...] = get_args(Position)

#: RGB of each colour word. Chosen far apart (every pair >= 100 apart in RGB) so that jitter,
#: noise and a diffusion model's colour drift still land nearest the intended entry.
PALETTE: dict[Color, tuple[int, int, int]] = {
    "red": (225, 25, 30),
    "orange": (250, 135, 10),
    "yellow": (245, 235, 40),
    "green": (30, 165, 60),
    "blue": (30, 70, 225),
    "purple": (135, 40, 185),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}

#: How each position reads in a prompt.
POSITION_PHRASES: dict[Position, str] = {
    "center": "in the center",
    "top_left": "at the top left",
    "top_right": "at the top right",
    "bottom_left": "at the bottom left",
    "bottom_right": "at the bottom right",
}

#: Shape centre of each position, as fractions of the image side (x, y), y pointing down.
POSITION_CENTERS: dict[Position, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top_left": (0.28, 0.28),
    "top_right": (0.72, 0.28),
    "bottom_left": (0.28, 0.72),
    "bottom_right": (0.72, 0.72),
}

#: Half-extent of the shape (circle radius, half side of square and triangle) as a fraction of
#: the image side. With the size jitter below, small stays <= 0.11 and large >= 0.18.
SIZE_RADII: dict[Size, float] = {"small": 0.10, "large": 0.20}

#: Area of each shape in units of its half-extent squared (used by the detector to size a fit).
SHAPE_AREA: dict[Shape, float] = {"circle": float(np.pi), "square": 4.0, "triangle": 2.0}

#: Jitter ranges: centre offset (fraction of side), radius scale, colour offset per channel.
POSITION_JITTER = 0.025
RADIUS_JITTER = (0.9, 1.1)
COLOR_JITTER = 12

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024

PROMPT_TEMPLATE = "a {size} {color} {shape} {position phrase} on a {background} background"

_PROMPT_RE = re.compile(
    r"^\s*an?\s+(?P<size>\S+)\s+(?P<color>\S+)\s+(?P<shape>\S+)\s+(?P<position>(?:in|at)\s+the\s+.+?)"
    r"\s+on\s+an?\s+(?P<background>\S+)\s+background\s*\.?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SceneSpec:
    """What one scene shows: the five attributes its prompt names."""

    size: Size
    color: Color
    shape: Shape
    position: Position
    background: Color

    def __post_init__(self) -> None:
        for name, choices in (
            ("size", SIZES),
            ("color", COLORS),
            ("shape", SHAPES),
            ("position", POSITIONS),
            ("background", COLORS),
        ):
            value = getattr(self, name)
            if value not in choices:
                raise unknown_choice(f"scene {name}", str(value), choices, InputError)

    def items(self) -> Iterator[tuple[str, str]]:
        """``(attribute, value)`` pairs in prompt order."""
        for f in fields(self):
            yield f.name, getattr(self, f.name)


#: Attribute names in prompt order.
ATTRIBUTES: tuple[str, ...] = tuple(f.name for f in fields(SceneSpec))


def random_scene(rng: np.random.Generator) -> SceneSpec:
    """A uniformly drawn scene whose shape colour differs from its background."""
    color = COLORS[int(rng.integers(len(COLORS)))]
    others = [c for c in COLORS if c != color]
    return SceneSpec(
        size=SIZES[int(rng.integers(len(SIZES)))],
        color=color,
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        position=POSITIONS[int(rng.integers(len(POSITIONS)))],
        background=others[int(rng.integers(len(others)))],
    )


def prompt_for(spec: SceneSpec) -> str:
    """The prompt of a scene, exactly in the training template."""
    return (
        f"a {spec.size} {spec.color} {spec.shape} {POSITION_PHRASES[spec.position]} on a {spec.background} background"
    )


def parse_prompt(prompt: str) -> SceneSpec:
    """The scene a template prompt describes (case, spacing, 'an' and a final '.' tolerated)."""
    match = _PROMPT_RE.match(prompt) if isinstance(prompt, str) else None
    if match is None:
        raise InputError(
            f"prompt {prompt!r} is not a shapes prompt",
            f"expected '{PROMPT_TEMPLATE}', e.g. '{prompt_for(SceneSpec('small', 'red', 'circle', 'center', 'blue'))}'",
        )
    words = {k: v.lower() for k, v in match.groupdict().items()}
    phrase = " ".join(words["position"].split())
    by_phrase = {p: k for k, p in POSITION_PHRASES.items()}
    if phrase not in by_phrase:
        raise unknown_choice("position phrase", phrase, by_phrase, InputError)
    words["position"] = by_phrase[phrase]
    return SceneSpec(**words)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- geometry
def signed_distance(shape: Shape, dx: np.ndarray, dy: np.ndarray, r: np.ndarray | float) -> np.ndarray:
    """Signed distance (pixels, negative inside) from offsets ``(dx, dy)`` to a shape of half-extent ``r``.

    The triangle points up: apex at ``(0, -r)``, base from ``(-r, r)`` to ``(r, r)``. Distances
    are exact along edges (what anti-aliasing needs), approximate near corners.
    """
    if shape == "circle":
        return np.hypot(dx, dy) - r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - r
    if shape == "triangle":
        slanted = (2.0 * np.abs(dx) - dy - r) * (1.0 / np.sqrt(5.0))
        return np.maximum(dy - r, slanted)
    raise unknown_choice("shape", shape, SHAPES, InputError)


def coverage(shape: Shape, dx: np.ndarray, dy: np.ndarray, r: np.ndarray | float) -> np.ndarray:
    """Fraction of each pixel covered by the shape: anti-aliased edges one pixel wide."""
    return np.clip(0.5 - signed_distance(shape, dx, dy, r), 0.0, 1.0)


@dataclass(frozen=True)
class Jitter:
    """Per-scene variation so training images are not copies of one another (arrays of length N)."""

    offset: np.ndarray  # (N, 2) centre offset, fraction of side
    scale: np.ndarray  # (N,) radius multiplier
    color: np.ndarray  # (N, 3) RGB offset of the shape
    background: np.ndarray  # (N, 3) RGB offset of the background

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int) -> Jitter:
        return cls(
            offset=rng.uniform(-POSITION_JITTER, POSITION_JITTER, size=(n, 2)),
            scale=rng.uniform(*RADIUS_JITTER, size=n),
            color=rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=(n, 3)).astype(np.float32),
            background=rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=(n, 3)).astype(np.float32),
        )

    @classmethod
    def none(cls, n: int) -> Jitter:
        return cls(np.zeros((n, 2)), np.ones(n), np.zeros((n, 3), np.float32), np.zeros((n, 3), np.float32))


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise InputError(
            f"image size must be an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, got {size!r}",
            "shapes-sd is trained at 64 (default) or 128",
        )


def render_batch(specs: list[SceneSpec], size: int, jitter: Jitter) -> np.ndarray:
    """Render scenes to a uint8 ``(N, size, size, 3)`` array; ``jitter`` holds one row per scene."""
    _check_size(size)
    n = len(specs)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    grid = (np.arange(size, dtype=np.float32) + 0.5)[None, :]  # pixel centres
    centres = np.array([POSITION_CENTERS[s.position] for s in specs], dtype=np.float32).reshape(n, 2)
    cx = (centres[:, 0] + jitter.offset[:, 0]) * size
    cy = (centres[:, 1] + jitter.offset[:, 1]) * size
    radius = np.array([SIZE_RADII[s.size] for s in specs], dtype=np.float32) * jitter.scale * size
    fg = np.array([PALETTE[s.color] for s in specs], dtype=np.float32).reshape(n, 3) + jitter.color
    bg = np.array([PALETTE[s.background] for s in specs], dtype=np.float32).reshape(n, 3) + jitter.background
    fg, bg = np.clip(fg, 0, 255), np.clip(bg, 0, 255)
    for shape in SHAPES:
        idx = np.array([i for i, s in enumerate(specs) if s.shape == shape], dtype=np.int64)
        for chunk in np.array_split(idx, max(1, len(idx) // 512)):
            if len(chunk) == 0:
                continue
            dx = (grid - cx[chunk, None])[:, None, :].astype(np.float32)  # (n, 1, W)
            dy = (grid - cy[chunk, None])[:, :, None].astype(np.float32)  # (n, H, 1)
            alpha = coverage(shape, dx, dy, radius[chunk, None, None].astype(np.float32))[..., None]
            pixels = bg[chunk, None, None, :] + alpha * (fg[chunk, None, None, :] - bg[chunk, None, None, :])
            out[chunk] = np.rint(pixels).astype(np.uint8)
    return out


def render_scene(spec: SceneSpec, size: int = 64, rng: np.random.Generator | None = None) -> Image.Image:
    """One scene as an RGB PIL image; ``rng`` adds jitter (deterministic for a seeded generator)."""
    jitter = Jitter.draw(rng, 1) if rng is not None else Jitter.none(1)
    return Image.fromarray(render_batch([spec], size, jitter)[0], mode="RGB")


def dataset(n: int, seed: int = 0, size: int = 64, jitter: bool = True) -> tuple[np.ndarray, list[str]]:
    """``n`` random scenes as uint8 NHWC images and their prompts; same seed, same data.

    About 10 µs per 64 px image on one core, so tens of thousands take seconds.
    """
    if n < 0:
        raise InputError(f"number of scenes must be >= 0, got {n}", "ask for 0 or more scenes")
    _check_size(size)
    rng = np.random.default_rng(seed)
    specs = [random_scene(rng) for _ in range(n)]
    images = render_batch(specs, size, Jitter.draw(rng, n) if jitter else Jitter.none(n))
    return images, [prompt_for(s) for s in specs]


def degrade(
    images: np.ndarray,
    rng: np.random.Generator,
    noise: float = 10.0,
    blur: float = 0.8,
    color_shift: float = 15.0,
    blobs: int = 2,
) -> np.ndarray:
    """Imperfections of the kind a small diffusion model makes, for testing the detector.

    Per image: a global colour shift and gain (each channel offset up to ``color_shift``, gain
    within +-5%), a Gaussian blur of ``blur`` pixels sigma, up to ``blobs`` specks of a random
    colour 1-2 px across, and Gaussian pixel noise of ``noise`` (0-255 scale). Deterministic for
    a seeded ``rng``.
    """
    from scipy.ndimage import gaussian_filter

    out = np.empty_like(images)
    n, h, w, _ = images.shape
    for i in range(n):
        x = images[i].astype(np.float32)
        x = x * rng.uniform(0.95, 1.05, size=3).astype(np.float32) + rng.uniform(
            -color_shift, color_shift, size=3
        ).astype(np.float32)
        if blur > 0:
            x = gaussian_filter(x, sigma=(blur, blur, 0))
        for _ in range(int(rng.integers(0, blobs + 1))):
            y0, x0, k = int(rng.integers(h)), int(rng.integers(w)), int(rng.integers(1, 3))
            x[y0 : y0 + k, x0 : x0 + k] = rng.uniform(0, 255, size=3)
        if noise > 0:
            x = x + rng.normal(0.0, noise, size=x.shape).astype(np.float32)
        out[i] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return out
