"""The real CLIP tokenizer, offline.

Every Stable Diffusion pipeline needs CLIP's BPE tokenizer, and the Hub copy cannot be downloaded
here. OpenAI's BPE file ships (MIT, notice beside it) in ``data/clip/``; this module turns it into a
``transformers.CLIPTokenizer`` whose ids are identical to the SD 1.5 / SD 2 / SDXL tokenizers
(checked against stable-diffusion-v1-5's ``tokenizer/vocab.json`` and ``merges.txt``). Token ids
matter for profiling: they fix the sequence length and padding the text encoder really sees.

Conversion (the Hugging Face layout): vocab = the 256 byte-to-unicode characters, the same 256 with
``</w>``, the first 48,894 merges each joined into one token, then ``<|startoftext|>`` and
``<|endoftext|>`` (49,408 entries); merges = those 48,894 merges.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources
from typing import Any

from transformers import CLIPTokenizer

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49_408
MODEL_MAX_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
#: SD 2.x and SDXL's second tokenizer pad with "!" (id 0); SD 1.x pads with the end token.
BANG_PAD_TOKEN = "!"

# 256 byte symbols + 256 end-of-word symbols + merges + 2 specials = the CLIP vocabulary size.
_NUM_MERGES = VOCAB_SIZE - 2 * 256 - 2


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable character table, in CLIP's vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


@functools.cache
def _vocabulary() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(tokens in id order, merges) read once per process from the shipped BPE file (~60 ms)."""
    with resources.files("diffprof.models").joinpath("data", "clip", VOCAB_FILE).open("rb") as raw:
        lines = gzip.decompress(raw.read()).decode("utf-8").split("\n")
    # Line 0 is a header; CLIP uses the next 48,894 merges.
    merges = tuple((left, right) for left, right in (line.split() for line in lines[1 : 1 + _NUM_MERGES]))
    chars = _bytes_to_unicode()
    tokens = (*chars, *(c + "</w>" for c in chars), *(a + b for a, b in merges), BOS_TOKEN, EOS_TOKEN)
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:  # a corrupted data file
        raise RuntimeError(f"CLIP vocabulary has {len(tokens)} entries ({len(set(tokens))} unique), want {VOCAB_SIZE}")
    return tokens, merges


def clip_vocab() -> dict[str, int]:
    """The CLIP vocabulary as ``{token: id}`` (a fresh dict: callers may keep or change it)."""
    tokens, _ = _vocabulary()
    return {token: index for index, token in enumerate(tokens)}


def clip_merges() -> list[tuple[str, str]]:
    """The 48,894 BPE merges in priority order."""
    return list(_vocabulary()[1])


def clip_tokenizer(pad_token: str = EOS_TOKEN) -> CLIPTokenizer:
    """A CLIP tokenizer with ``model_max_length=77``, offline.

    Args:
        pad_token (`str`, defaults to ``"<|endoftext|>"``): SD 1.x pads with the end token;
            SD 2.x and SDXL's ``tokenizer_2`` pad with ``"!"`` (:data:`BANG_PAD_TOKEN`).

    The parsed vocabulary is cached per process; each call builds a new tokenizer (~25 ms) rather
    than sharing one, because pipelines may change theirs in place (``load_textual_inversion`` adds
    tokens) and that must not leak into every other pipeline built in the process.
    """
    vocab = clip_vocab()
    if pad_token not in vocab:
        raise ValueError(f"pad token {pad_token!r} is not in the CLIP vocabulary")
    return CLIPTokenizer(
        vocab=vocab,
        merges=clip_merges(),  # type: ignore[arg-type]  # (left, right) pairs, as tokenizers' BPE takes
        pad_token=pad_token,
        model_max_length=MODEL_MAX_LENGTH,
    )


def text_tokenizer(kind: str, pad_token: str = EOS_TOKEN) -> Any:
    """The offline tokenizer for a text encoder of ``kind`` (``families.TextEncoderSpec.kind``).

    CLIP (``clip-l``, ``clip-g``) is the real vocabulary; ``t5-xxl`` and ``gemma-2-2b`` are stand-ins
    with the real lengths and special tokens (:mod:`diffprof.models.stand_ins`), marked as such.
    """
    if kind in ("clip-l", "clip-g"):
        return clip_tokenizer(pad_token)
    from diffprof.models.stand_ins import stand_in_tokenizer  # stand_ins builds on this module's vocabulary

    return stand_in_tokenizer(kind)
