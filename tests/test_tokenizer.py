"""The offline CLIP tokenizer gives the same ids as Stable Diffusion's tokenizers."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest
from transformers import CLIPTokenizer

from diffprof.models.tokenizer import (
    BANG_PAD_TOKEN,
    EOS_TOKEN,
    MODEL_MAX_LENGTH,
    VOCAB_FILE,
    VOCAB_SIZE,
    clip_merges,
    clip_tokenizer,
    clip_vocab,
)

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


def test_known_prompt_gives_the_sd_token_ids() -> None:
    assert clip_tokenizer()("a photo of a cat").input_ids == CAT_IDS


def test_vocabulary_layout() -> None:
    vocab = clip_vocab()
    merges = clip_merges()
    assert len(vocab) == VOCAB_SIZE == 49_408
    assert len(merges) == 48_894
    assert vocab["!"] == 0 and vocab["!</w>"] == 256  # 256 byte symbols, then the same with </w>
    assert vocab["<|startoftext|>"] == 49_406 and vocab[EOS_TOKEN] == 49_407
    assert merges[0] == ("i", "n") and vocab["in"] == 512  # first merge is the first merged token
    assert merges[-1] == ("jeky", "ll</w>") and vocab["jekyll</w>"] == 49_405


def test_shipped_file_is_the_original_and_has_its_license() -> None:
    folder = resources.files("diffprof.models").joinpath("data", "clip")
    digest = hashlib.sha256(folder.joinpath(VOCAB_FILE).read_bytes()).hexdigest()
    assert digest.startswith("924691ac")
    assert "MIT" in folder.joinpath("LICENSE").read_text() and "OpenAI" in folder.joinpath("LICENSE").read_text()


def test_pads_to_77_with_the_end_token_by_default() -> None:
    tokenizer = clip_tokenizer()
    assert tokenizer.model_max_length == MODEL_MAX_LENGTH == 77
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77
    assert ids[:7] == CAT_IDS and set(ids[7:]) == {49407}


def test_sdxl_second_tokenizer_pads_with_bang() -> None:
    tokenizer = clip_tokenizer(BANG_PAD_TOKEN)
    assert tokenizer.pad_token == "!" and tokenizer.pad_token_id == 0
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert ids[:7] == CAT_IDS and set(ids[7:]) == {0}


def test_long_prompts_truncate_to_77_with_the_end_token_last() -> None:
    ids = clip_tokenizer()("cat " * 100, truncation=True, max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407


@pytest.mark.parametrize("pad", [EOS_TOKEN, BANG_PAD_TOKEN])
def test_save_and_reload_gives_the_same_ids(tmp_path, pad: str) -> None:
    tokenizer = clip_tokenizer(pad)
    tokenizer.save_pretrained(tmp_path)
    reloaded = CLIPTokenizer.from_pretrained(tmp_path)
    prompt = "A Photo of a CAT, riding a bicycle!! 42 émoji 🐱"
    assert reloaded(prompt, padding="max_length", max_length=77).input_ids == tokenizer(
        prompt, padding="max_length", max_length=77).input_ids
    assert reloaded.model_max_length == 77 and reloaded.pad_token == pad


def test_each_call_builds_an_independent_tokenizer() -> None:
    first, second = clip_tokenizer(), clip_tokenizer()
    first.add_tokens(["<my-concept>"])  # what load_textual_inversion does in place
    assert len(first) == VOCAB_SIZE + 1 and len(second) == VOCAB_SIZE


def test_unknown_pad_token_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the CLIP vocabulary"):
        clip_tokenizer("<pad>")
