"""Init images and masks for img2img and inpainting: load and validate user files, or make
deterministic defaults so every task can be benchmarked without bringing data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffprof.errors import InputError


def load_image(path: str | Path, what: str = "image") -> Image.Image:
    """Open an image file as RGB; a missing or non-image file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {str(path)!r} does not exist", "give the path of a PNG or JPEG file")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{what} file {str(path)!r} is not an image PIL can read", "use PNG, JPEG or WebP") from exc


def load_mask(path: str | Path) -> Image.Image:
    return load_image(path, "mask").convert("L")


def default_init_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth colour field with a filled ellipse: structure for img2img to preserve."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 215, size=3)
    img = np.stack([base[c] + 40 * np.sin((x / width + c / 3) * np.pi) * np.cos(y / height * np.pi) for c in range(3)], -1)
    cy, cx, r = height / 2, width / 2, min(width, height) / 4
    inside = ((x - cx) / r) ** 2 + ((y - cy) / r) ** 2 <= 1
    img[inside] = rng.uniform(0, 255, size=3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def default_mask(width: int, height: int) -> Image.Image:
    """White (repaint) centred square covering a quarter of the image."""
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    return Image.fromarray(mask, "L")


def check_mask_matches(image: Image.Image, mask: Image.Image) -> None:
    if image.size != mask.size:
        raise InputError(
            f"mask is {mask.size[0]}x{mask.size[1]} but the image is {image.size[0]}x{image.size[1]}",
            "resize the mask to the image's size",
        )
