"""Read a shapes scene back from pixels: prompt adherence for ``shapes-sd`` without a model.

Analysis by synthesis, in phases per image:

1. background: the median colour of a 2-pixel border (objects rarely touch it);
2. object: on a lightly smoothed copy, pixels far from the background form connected components;
   the one with the most contrast mass is the object (stray specks lose);
3. colour: the median of the object's core pixels, named by the nearest palette entry;
4. coverage: every pixel near the object gets an *alpha*, its colour projected on the
   background->object line. Alpha sums to the object's area however blurred the edges are;
5. shape: for each shape, the template of that area centred on the alpha centroid is drawn with
   the generator's own coverage function; the shape whose (smoothed) template best matches the
   (smoothed) alpha wins;
6. size and position: the fitted half-extent against a threshold between the two sizes, and the
   fitted centre against the five position centres.

Each attribute also gets a probability over its choices (soft distances), which both give the
confidence of a detection and make up part of :func:`detector_features`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from diffprof.errors import InputError
from diffprof.quality.images import ImageLike, as_image_list, to_float_rgb
from diffprof.quality.shapes import (
    ATTRIBUTES,
    COLORS,
    PALETTE,
    POSITION_CENTERS,
    POSITIONS,
    SHAPE_AREA,
    SHAPES,
    SIZE_RADII,
    SIZES,
    SceneSpec,
    coverage,
    parse_prompt,
)

#: Half-extent (fraction of side) between small and large: the geometric mean of the jittered
#: size ranges' inner ends (small <= 0.11, large >= 0.18).
SIZE_THRESHOLD = float(np.sqrt(SIZE_RADII["small"] * 1.1 * SIZE_RADII["large"] * 0.9))

#: Contrast (RGB distance on the smoothed image) above which a pixel may belong to the object.
#: Noise of sigma 15 smooths to ~7; the closest palette pair is ~105 apart.
OBJECT_CONTRAST = 30.0
#: Components smaller than this fraction of the image are specks, not objects.
MIN_OBJECT_FRACTION = 0.002
#: Softness of the per-attribute probabilities (colour: RGB distance; position: fraction of side;
#: size: log radius; shape: template residual per unit area).
COLOR_SIGMA = 30.0
POSITION_SIGMA = 0.08
SIZE_SOFTNESS = 0.06
SHAPE_TEMPERATURE = 0.005

_CHOICES: dict[str, tuple[str, ...]] = {
    "size": SIZES,
    "color": COLORS,
    "shape": SHAPES,
    "position": POSITIONS,
    "background": COLORS,
}

_PALETTE_RGB = np.array([PALETTE[c] for c in COLORS], dtype=np.float64)
_POSITION_XY = np.array([POSITION_CENTERS[p] for p in POSITIONS], dtype=np.float64)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def _color_probs(rgb: np.ndarray) -> np.ndarray:
    d2 = ((_PALETTE_RGB - rgb) ** 2).sum(axis=1)
    return _softmax(-d2 / (2 * COLOR_SIGMA**2))


@dataclass(frozen=True, eq=False)
class SceneAnalysis:
    """Everything measured about one image: the raw material of detections and features.

    Probabilities are arrays over ``SIZES``, ``COLORS``, ``SHAPES``, ``POSITIONS`` and ``COLORS``
    (background); when no object was found the object's are uniform and ``found`` is False.
    Geometry is in fractions of the image side.
    """

    found: bool
    background_rgb: np.ndarray
    object_rgb: np.ndarray
    probs: dict[str, np.ndarray]
    area: float = 0.0  # object area / image area
    center: tuple[float, float] = (0.5, 0.5)
    radius: float = 0.0  # fitted half-extent of the chosen shape
    spread: tuple[float, float] = (0.0, 0.0)  # alpha-weighted std in x and y
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(len(SHAPES)))  # per shape, per unit area
    noise: float = 0.0  # robust std of the background pixels, 0-255 scale


@dataclass(frozen=True)
class Detection:
    """The scene an image shows, as far as pixels tell; object attributes are None if none was found."""

    background: str
    size: str | None
    color: str | None
    shape: str | None
    position: str | None
    confidence: dict[str, float]

    @property
    def found(self) -> bool:
        return self.shape is not None

    @property
    def spec(self) -> SceneSpec | None:
        """The detection as a :class:`SceneSpec`, or None when no object was found."""
        if not self.found:
            return None
        return SceneSpec(self.size, self.color, self.shape, self.position, self.background)  # type: ignore[arg-type]

    def get(self, attribute: str) -> str | None:
        return getattr(self, attribute)


def analyse(image: ImageLike) -> SceneAnalysis:
    """Measure one image (see the module docstring for the phases)."""
    return _analyse(to_float_rgb(image))


def _analyse(img: np.ndarray) -> SceneAnalysis:
    """:func:`analyse` of a float ``(H, W, 3)`` array on the 0-255 scale."""
    h, w, _ = img.shape
    side = float(min(h, w))
    if min(h, w) < 16:
        raise InputError(f"image of {w}x{h} px is too small to analyse", "the detector needs at least 16 px a side")

    # 1. Background: median of a 2-px border.
    border = np.concatenate(
        [img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)]
    )
    bg = np.median(border, axis=0)
    noise = float(1.4826 * np.median(np.abs(border - bg)))
    nothing = SceneAnalysis(
        found=False,
        background_rgb=bg,
        object_rgb=bg,
        probs={name: np.full(len(_CHOICES[name]), 1 / len(_CHOICES[name])) for name in ATTRIBUTES}
        | {"background": _color_probs(bg)},
        noise=noise,
    )

    # 2. Object: the connected region of contrast with the largest contrast mass.
    smooth = ndimage.gaussian_filter(img, sigma=(1.0, 1.0, 0.0))
    contrast = np.sqrt(((smooth - bg) ** 2).sum(axis=2))
    labels, count = ndimage.label(contrast > OBJECT_CONTRAST, structure=np.ones((3, 3)))
    if count == 0:
        return nothing
    mass = ndimage.sum(contrast, labels, index=np.arange(1, count + 1))
    best = int(np.argmax(mass)) + 1
    region = labels == best
    if region.sum() < MIN_OBJECT_FRACTION * h * w:
        return nothing

    # 3. Colour: the median of the core, the region's most contrasted pixels, read from a 3x3
    #    median-filtered copy of the region's box so a speck inside the object cannot be the core;
    #    only the top contrast counts so blurred rims stay out.
    ys, xs = np.nonzero(region)
    by0, by1, bx0, bx1 = max(0, ys.min() - 1), ys.max() + 2, max(0, xs.min() - 1), xs.max() + 2
    despeckled = ndimage.median_filter(img[by0:by1, bx0:bx1], size=(3, 3, 1))
    box_region = region[by0:by1, bx0:bx1]
    box_contrast = np.sqrt(((despeckled - bg) ** 2).sum(axis=2))
    core = box_region & (box_contrast >= 0.9 * np.percentile(box_contrast[box_region], 95))
    fg = np.median(img[by0:by1, bx0:bx1][core], axis=0)

    # 4. Coverage: alpha in a window around the region.
    margin = 3 + int(np.ceil(0.04 * side))
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + margin + 1)
    #    Alpha is measured from the *local* background, the mean of the window's pixels away from
    #    the region: it follows background gradients and cancels the bias that clipping at 0/255
    #    gives noise on black or white (the border median above does neither).
    patch = img[y0:y1, x0:x1]
    ring = ~ndimage.binary_dilation(region, iterations=3)[y0:y1, x0:x1]
    local_bg = patch[ring].mean(axis=0) if ring.sum() >= 10 else bg
    direction = fg - local_bg
    span2 = float(direction @ direction)
    if span2 < OBJECT_CONTRAST**2:
        return nothing
    alpha = np.clip(((patch - local_bg) @ direction) / span2, -0.5, 1.5)
    area = float(alpha.sum())
    if area <= 1.0:
        return nothing
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    cx, cy = float((alpha * gx).sum() / area), float((alpha * gy).sum() / area)
    sx = float(np.sqrt(max((alpha * (gx - cx) ** 2).sum() / area, 0.0)))
    sy = float(np.sqrt(max((alpha * (gy - cy) ** 2).sum() / area, 0.0)))

    # 5. Shape: best-matching template of the measured area at the measured centroid.
    smooth_alpha = ndimage.gaussian_filter(alpha, 1.0)
    residuals = np.empty(len(SHAPES))
    fits: list[tuple[float, float, float]] = []
    for i, shape in enumerate(SHAPES):
        r = float(np.sqrt(area / SHAPE_AREA[shape]))
        ty = cy - r / 3 if shape == "triangle" else cy  # a triangle's centroid sits r/3 below its box centre
        template = coverage(shape, gx - cx, gy - ty, r)
        residuals[i] = float(((smooth_alpha - ndimage.gaussian_filter(template, 1.0)) ** 2).sum()) / area
        fits.append((cx, ty, r))
    k = int(np.argmin(residuals))
    fx, fy, fr = fits[k]

    # 6. Size and position from the winning fit.
    radius = fr / side
    p_large = 1.0 / (1.0 + np.exp(-np.log(radius / SIZE_THRESHOLD) / SIZE_SOFTNESS))
    centre = np.array([fx / w, fy / h])
    d2 = ((_POSITION_XY - centre) ** 2).sum(axis=1)
    return SceneAnalysis(
        found=True,
        background_rgb=bg,
        object_rgb=fg,
        probs={
            "size": np.array([1.0 - p_large, p_large]),
            "color": _color_probs(fg),
            "shape": _softmax(-(residuals - residuals.min()) / SHAPE_TEMPERATURE),
            "position": _softmax(-d2 / (2 * POSITION_SIGMA**2)),
            "background": _color_probs(bg),
        },
        area=area / (h * w),
        center=(float(centre[0]), float(centre[1])),
        radius=radius,
        spread=(sx / side, sy / side),
        residuals=residuals,
        noise=noise,
    )


def detect(image: ImageLike) -> Detection:
    """The scene an image shows, with a per-attribute confidence (probability of the chosen value)."""
    a = analyse(image)
    chosen: dict[str, str | None] = {}
    confidence: dict[str, float] = {}
    for name in ATTRIBUTES:
        p = a.probs[name]
        if not a.found and name != "background":
            chosen[name], confidence[name] = None, 0.0
            continue
        i = int(np.argmax(p))
        chosen[name], confidence[name] = _CHOICES[name][i], float(p[i])
    return Detection(confidence=confidence, **chosen)  # type: ignore[arg-type]


SpecLike = SceneSpec | str


def _as_spec(prompt_or_spec: SpecLike) -> SceneSpec:
    if isinstance(prompt_or_spec, SceneSpec):
        return prompt_or_spec
    return parse_prompt(prompt_or_spec)


def adherence_details(image: ImageLike, prompt_or_spec: SpecLike) -> dict[str, bool]:
    """Per attribute, whether the image shows what the prompt asks (a missing object matches nothing
    but the background)."""
    spec = _as_spec(prompt_or_spec)
    found = detect(image)
    return {name: found.get(name) == value for name, value in spec.items()}


def adherence(image: ImageLike, prompt_or_spec: SpecLike) -> float:
    """Fraction of the five prompt attributes the image shows (1.0 = fully adherent)."""
    details = adherence_details(image, prompt_or_spec)
    return sum(details.values()) / len(details)


# --------------------------------------------------------------------------- features
def _feature_names() -> list[str]:
    names = ["found", "area", "center_x", "center_y", "radius", "spread_x", "spread_y", "noise"]
    names += [f"residual_{s}" for s in SHAPES]
    names += [f"object_{c}" for c in "rgb"] + [f"background_{c}" for c in "rgb"]
    for attribute in ATTRIBUTES:
        names += [f"p_{attribute}_{v}" for v in _CHOICES[attribute]]
    names += [f"hist_{c}{b}" for c in "rgb" for b in range(HIST_BINS)]
    return names


HIST_BINS = 8
#: Names of the columns of :func:`detector_features`, in order.
FEATURE_NAMES: tuple[str, ...] = tuple(_feature_names())
FEATURE_DIM = len(FEATURE_NAMES)


def image_features(image: ImageLike) -> np.ndarray:
    """One image's feature vector (see :data:`FEATURE_NAMES`)."""
    img = to_float_rgb(image)
    a = _analyse(img)
    hist = [np.histogram(img[:, :, c], bins=HIST_BINS, range=(0, 256))[0] / img[:, :, 0].size for c in range(3)]
    parts = [
        np.array([float(a.found), a.area, *a.center, a.radius, *a.spread, a.noise / 255.0]),
        np.minimum(a.residuals, 1.0),
        a.object_rgb / 255.0,
        a.background_rgb / 255.0,
        *(a.probs[name] for name in ATTRIBUTES),
        *hist,
    ]
    return np.concatenate(parts).astype(np.float64)


def detector_features(images: np.ndarray | Sequence[ImageLike]) -> np.ndarray:
    """A fixed-length feature vector per image, ``(N, FEATURE_DIM)``: the offline feature extractor
    for FID/KID on shapes scenes (geometry, colours, attribute probabilities, colour histograms)."""
    items = as_image_list(images)
    if not items:
        return np.zeros((0, FEATURE_DIM))
    return np.stack([image_features(x) for x in items])


def attribute_accuracy(images: np.ndarray | Sequence[ImageLike], specs: Sequence[SpecLike]) -> dict[str, float]:
    """Per-attribute accuracy of :func:`detect` on labelled images, plus ``all`` (all five right) and
    ``adherence`` (the mean of :func:`adherence` over the images).

    Against the prompts an image was generated from, this is a model's prompt adherence; against
    the generator's own labels, the detector's accuracy.
    """
    items = as_image_list(images)
    if len(items) != len(specs):
        raise InputError(f"{len(items)} images but {len(specs)} prompts", "pass one prompt or spec per image")
    hits: dict[str, int] = {name: 0 for name in (*ATTRIBUTES, "all")}
    for image, spec in zip(items, specs):
        details = adherence_details(image, spec)
        for name, ok in details.items():
            hits[name] += int(ok)
        hits["all"] += int(all(details.values()))
    n = max(len(items), 1)
    out = {name: count / n for name, count in hits.items()}
    out["adherence"] = sum(out[name] for name in ATTRIBUTES) / len(ATTRIBUTES)
    return out
