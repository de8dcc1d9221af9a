"""One conversion for every image a quality measure accepts.

Pipelines hand back PIL images (``output_type="pil"``) or float arrays in [0, 1]
(``output_type="np"``); our own generator makes uint8 arrays. Every metric converts through
:func:`to_float_rgb` so they all agree on the scale (0-255) and reject the same bad inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from diffprof.errors import InputError

#: What the quality measures accept as one image.
ImageLike = Image.Image | np.ndarray


def to_float_rgb(image: ImageLike) -> np.ndarray:
    """``image`` as a float64 ``(H, W, 3)`` array on the 0-255 scale.

    uint8 arrays and PIL images are taken as they are; float arrays are taken to be in [0, 1]
    (diffusers' ``output_type="np"``) and scaled by 255 without rounding. Grayscale is repeated
    to three channels; an alpha channel is dropped.
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64)
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"expected a PIL image or a numpy array, got {type(image).__name__}",
            "convert tensors with .cpu().numpy() (HWC, floats in [0, 1]) or pass PIL images",
        )
    array = image
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(
            f"expected an image array of shape (H, W, 3), got {array.shape}",
            "pass one HWC image at a time; batches go in a list or an NHWC array",
        )
    array = array[:, :, :3]
    if array.dtype == np.uint8:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (float(np.nanmin(array)) < -1e-3 or float(np.nanmax(array)) > 1 + 1e-3):
            raise InputError(
                f"float image values must lie in [0, 1], got [{float(np.nanmin(array)):.3g}, {float(np.nanmax(array)):.3g}]",
                "pass uint8 images (0-255) or floats in [0, 1] as diffusers' output_type='np' gives",
            )
        return np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0
    raise InputError(f"unsupported image dtype {array.dtype}", "pass uint8 (0-255) or float (0-1) images")


def to_uint8_rgb(image: ImageLike) -> np.ndarray:
    """``image`` as a uint8 ``(H, W, 3)`` array (floats rounded)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    return np.clip(np.rint(to_float_rgb(image)), 0, 255).astype(np.uint8)


def as_image_list(images: Any) -> list[ImageLike]:
    """A batch as a list of single images: an NHWC array, a list of arrays/PIL images, or one image."""
    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        return [images]
    if isinstance(images, Sequence):
        return list(images)
    raise InputError(
        f"expected images as an NHWC array or a list of images, got {type(images).__name__}",
        "pass pipeline output .images (a list of PIL images) or a numpy array",
    )
