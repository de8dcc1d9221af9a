"""CLIP score with a tiny random CLIP saved locally (no hub access)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffprof.errors import InputError, ModelError
from diffprof.quality.clip_score import ClipScorer, clip_score_from_embeddings
from diffprof.quality.shapes import dataset


@pytest.fixture(scope="module")
def scorer(tiny_clip: Path) -> ClipScorer:
    return ClipScorer(str(tiny_clip), batch_size=4)


def test_score_from_embeddings_is_clipped_cosine() -> None:
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    txt = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [4.0, 3.0]])
    assert clip_score_from_embeddings(img, txt) == pytest.approx([100.0, 0.0, 96.0])


def test_scores_equal_a_direct_model_computation(scorer: ClipScorer) -> None:
    """Cross-check against transformers' own CLIP image processor (PIL backend) and the model's towers."""
    from transformers import CLIPImageProcessor

    images, prompts = dataset(10, seed=3)
    scores = scorer.score(images, prompts)
    assert len(scores) == 10 and all(0.0 <= s <= 100.0 for s in scores)

    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pixels = processor(images=[Image.fromarray(x) for x in images], return_tensors="pt")["pixel_values"]
    assert torch.allclose(scorer.preprocess(images), pixels, atol=1e-5)
    model, tok = scorer.model, scorer.tokenizer
    with torch.no_grad():
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        ids = tok(prompts, padding="max_length", max_length=77, return_tensors="pt")
        txt = model.text_projection(
            model.text_model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).pooler_output
        )
    cos = torch.nn.functional.cosine_similarity(img, txt).double()
    assert scores == pytest.approx((100 * cos).clamp(min=0).tolist(), abs=1e-4)


def test_scores_are_deterministic_batch_independent_and_paired(scorer: ClipScorer) -> None:
    images, prompts = dataset(6, seed=5)
    a = scorer.score(images, prompts)
    assert scorer.score(list(images), prompts) == pytest.approx(a, abs=1e-6)
    one_by_one = [scorer.score(images[i : i + 1], [prompts[i]])[0] for i in range(6)]
    assert one_by_one == pytest.approx(a, abs=1e-4)
    # Each image is scored against its own prompt: swapping prompts changes the scores.
    assert scorer.score(images, prompts[::-1]) != pytest.approx(a, abs=1e-3)


def test_non_square_and_float_images(scorer: ClipScorer) -> None:
    wide = np.random.default_rng(0).integers(0, 256, (40, 90, 3)).astype(np.uint8)
    assert scorer.preprocess([wide]).shape == (1, 3, 32, 32)
    assert scorer.score([wide / 255.0], ["a small red circle"]) == pytest.approx(
        scorer.score([wide], ["a small red circle"]), abs=1e-4
    )


def test_mismatched_lengths(scorer: ClipScorer) -> None:
    images, prompts = dataset(3, seed=1)
    with pytest.raises(InputError, match="3 images but 2 prompts"):
        scorer.score(images, prompts[:2])


def test_unavailable_models_raise_one_line_model_errors(tmp_path: Path) -> None:
    cases = {
        "diffprof-tests/no-such-clip": "not available offline",  # conftest sets HF_HUB_OFFLINE=1
        str(tmp_path / "missing"): "no CLIP model folder",
        str(tmp_path): "could not load a CLIP model from folder",
    }
    for model, message in cases.items():
        with pytest.raises(ModelError) as err:
            ClipScorer(model)
        assert message in err.value.message
        assert "--clip-model PATH" in (err.value.hint or "")
        assert "\n" not in str(err.value)
