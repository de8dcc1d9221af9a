"""CLIP score: how well images match their prompts, by a CLIP model's own judgement.

``score = max(100 * cos(image_embedding, text_embedding), 0)`` per (image, prompt) pair, as in
Hessel et al. 2021 and torchmetrics' ``CLIPScore``; published SD numbers (e.g. MLPerf SDXL 31.78)
use ``openai/clip-vit-large-patch14``.

Images are preprocessed here (shortest side resized bicubic to the model's input size, centre
crop, CLIP mean/std) rather than by ``CLIPImageProcessor``, whose default backend in recent
transformers needs torchvision, which we never install. The two agree to float rounding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from diffprof.errors import InputError, ModelError
from diffprof.quality.images import ImageLike, as_image_list, to_uint8_rgb

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
#: OpenAI CLIP's normalisation, used when the model folder has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_score_from_embeddings(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> list[float]:
    """``max(100 * cosine, 0)`` row by row: the standard CLIP score of paired embeddings."""
    img = torch.nn.functional.normalize(image_embeds.double(), dim=-1)
    txt = torch.nn.functional.normalize(text_embeds.double(), dim=-1)
    return [float(v) for v in (100.0 * (img * txt).sum(dim=-1)).clamp(min=0.0)]


_FOLDER_HINT = "pass --clip-model PATH to a local CLIP folder (config.json, weights, tokenizer files)"


def _unavailable(model: str, cause: BaseException) -> ModelError:
    """The one-line error for a CLIP model that cannot be loaded, worded by what ``model`` looks like."""
    path = Path(model).expanduser()
    if path.is_dir():
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        return ModelError(f"could not load a CLIP model from folder {model!r}: {first}", _FOLDER_HINT)
    if model.startswith(("/", "./", "../", "~")) or path.suffix:
        return ModelError(f"no CLIP model folder at {model!r}", _FOLDER_HINT)
    return ModelError(
        f"CLIP model {model!r} is not available offline", f"{_FOLDER_HINT} or connect to the Hugging Face Hub"
    )


def _preprocessor_config(model: str) -> dict[str, Any]:
    """The folder's (or cached hub repo's) preprocessor_config.json, or {} when there is none."""
    path = Path(model) / "preprocessor_config.json"
    if path.is_file():
        return json.loads(path.read_text())
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "preprocessor_config.json")
        if isinstance(cached, str):
            return json.loads(Path(cached).read_text())
    except Exception:  # noqa: BLE001, S110 - a malformed id or no cache: CLIP's defaults apply
        pass
    return {}


class ClipScorer:
    """A CLIP model ready to score (image, prompt) pairs.

    Args:
        model (`str`, defaults to ``openai/clip-vit-large-patch14``): hub id or local folder with a
            ``CLIPModel`` and its tokenizer.
        device (`str`, defaults to ``"cpu"``): where the model runs.
        batch_size (`int`, defaults to 16): pairs embedded per forward pass.
    """

    def __init__(
        self, model: str = DEFAULT_CLIP_MODEL, device: str | torch.device = "cpu", batch_size: int = 16
    ) -> None:
        from transformers import AutoTokenizer, CLIPModel

        try:
            self.model = CLIPModel.from_pretrained(model).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model)
        except (OSError, ValueError) as exc:  # transformers raises OSError for missing/offline repos
            raise _unavailable(model, exc) from None
        self.name = model
        self.device = torch.device(device)
        self.model.to(self.device)  # type: ignore[arg-type]  # transformers' stub types .to() narrowly
        self.batch_size = max(1, int(batch_size))
        cfg = _preprocessor_config(model)
        self.image_size = int(self.model.config.vision_config.image_size)
        self.mean = tuple(cfg.get("image_mean", CLIP_MEAN))
        self.std = tuple(cfg.get("image_std", CLIP_STD))
        self.max_length = int(
            min(
                self.model.config.text_config.max_position_embeddings,
                getattr(self.tokenizer, "model_max_length", 77) or 77,
            )
        )

    # 1. Image preprocessing: resize shortest side, centre crop, normalise.
    def preprocess(self, images: Sequence[ImageLike] | np.ndarray) -> torch.Tensor:
        """Images as the model's ``pixel_values`` ``(N, 3, S, S)``."""
        s = self.image_size
        batch = []
        for item in as_image_list(images):
            img = Image.fromarray(to_uint8_rgb(item))
            w, h = img.size
            scale = s / min(w, h)
            nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
            img = img.resize((nw, nh), Image.Resampling.BICUBIC)
            left, top = (nw - s) // 2, (nh - s) // 2
            img = img.crop((left, top, left + s, top + s))
            batch.append(np.asarray(img, dtype=np.float32) / 255.0)
        x = (np.stack(batch) - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    @torch.inference_mode()
    def embed_images(self, images: Sequence[ImageLike] | np.ndarray) -> torch.Tensor:
        """Projected image embeddings ``(N, projection_dim)`` (not normalised)."""
        pixels = self.preprocess(images).to(self.device, self.model.dtype)
        out = self.model.vision_model(pixel_values=pixels)
        return self.model.visual_projection(out.pooler_output).float().cpu()

    @torch.inference_mode()
    def embed_texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Projected text embeddings ``(N, projection_dim)``; prompts beyond the context are truncated."""
        tokens = self.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        out = self.model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask"))
        return self.model.text_projection(out.pooler_output).float().cpu()

    def score(self, images: Sequence[ImageLike] | np.ndarray, prompts: Sequence[str]) -> list[float]:
        """CLIP score of each image against its own prompt (0-100, higher = closer)."""
        items = as_image_list(images)
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(items) != len(prompts):
            raise InputError(f"{len(items)} images but {len(prompts)} prompts", "pass one prompt per image")
        scores: list[float] = []
        for i in range(0, len(items), self.batch_size):
            chunk = slice(i, i + self.batch_size)
            scores += clip_score_from_embeddings(
                self.embed_images(items[chunk]), self.embed_texts(list(prompts[chunk]))
            )
        return scores
