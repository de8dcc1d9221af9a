"""Stand-in tokenizers for the T5-XXL and Gemma-2 vocabularies, which cannot be had offline.

The T5 SentencePiece model (32,000 pieces + 100 sentinels) and Gemma-2's (256,000 pieces) are not in
any registry package we can install (see docs/models.md), and the Hub cannot be reached. What a
profile needs from a tokenizer is the token sequence the text encoder sees: its length and padding,
and ids inside the embedding table. The pipelines pad T5 and Gemma prompts to a fixed length
(FLUX 512, SD3 256, PixArt-Sigma and SANA 300), so time and memory depend on those lengths, not on
which ids fill them. A stand-in keeps them: it is a real ``tokenizers`` Unigram tokenizer with the
real special tokens at the real ids, the real vocabulary size, and English subword pieces taken from
the CLIP BPE vocabulary that ships with diffprof (MIT; lower-cased, as CLIP is), so a prompt splits
into about as many tokens as with the real vocabulary (it matters for SANA, whose instruction prefix
is tokenized and lengthens what Gemma sees).
Ids differ from the real model's: text is not encoded as the real tokenizer would, and quality
metrics on a stand-in's images mean nothing beyond random weights.

Every stand-in carries ``init_kwargs["diffprof_stand_in"]`` (saved in ``tokenizer_config.json``), so
:func:`stand_ins_of` finds it in a pipeline built here or in a folder materialized from one; loaded
pipelines report them (``LoadedPipeline.stand_ins``). Real tokenizers load from the Hub or a folder.
"""

from __future__ import annotations

import functools
from typing import Any

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import PreTrainedTokenizerFast

from diffprof.models.tokenizer import clip_vocab

MARKER = "diffprof_stand_in"
SPACE = "\u2581"  # SentencePiece's word-start symbol

#: kind -> (the real vocabulary's size, special tokens in id order, the real tokenizer's length limit, what it
#: replaces). T5's stand-in has all 32,100 ids; Gemma's has its specials and ~49,000 pieces of the 256,000
#: (the text encoder keeps all 256,000 embedding rows; a larger tokenizer would only take longer to build).
VOCABULARIES: dict[str, tuple[int, tuple[str, ...], int, str]] = {
    "t5-xxl": (32_100, ("<pad>", "</s>", "<unk>"), 512, "T5 v1.1 SentencePiece vocabulary (google/t5-v1_1-xxl)"),
    "gemma-2-2b": (256_000, ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>"), 8192,
                   "Gemma-2 SentencePiece vocabulary (google/gemma-2-2b-it)"),
}
_T5_SENTINELS = 100


@functools.cache
def _pieces() -> tuple[str, ...]:
    """English subword pieces in SentencePiece form, most frequent first, from the CLIP vocabulary.

    A CLIP token that ends a word (``photo</w>``) becomes a word-start piece (``▁photo``); one that
    does not (``pho``) stays a word-inner piece. Single characters come first so any ASCII text splits.
    """
    ascii_chars = [chr(c) for c in range(33, 127)]
    seen: dict[str, None] = dict.fromkeys([SPACE, *ascii_chars, *(SPACE + c for c in ascii_chars)])
    for token in clip_vocab():  # id order = merge order = frequency order
        if token.startswith("<|"):
            continue
        piece = SPACE + token[:-4] if token.endswith("</w>") else token
        if piece != SPACE:
            seen.setdefault(piece, None)
    return tuple(seen)


def _unigram_vocab(kind: str) -> list[tuple[str, float]]:
    size, specials, _, _ = VOCABULARIES[kind]
    sentinels = [f"<extra_id_{i}>" for i in reversed(range(_T5_SENTINELS))] if kind == "t5-xxl" else []
    pieces = list(_pieces()[: size - len(specials) - len(sentinels)])
    # Scores close to each other: the segmentation with the fewest pieces wins, ties go to the more frequent.
    vocab = [(s, 0.0) for s in specials] + [(p, -10.0 - i * 1e-6) for i, p in enumerate(pieces)]
    return vocab + [(s, 0.0) for s in sentinels]


@functools.cache
def _backend(kind: str) -> Tokenizer:
    """The ``tokenizers`` backend of a stand-in, built once per process (Gemma's 256,000 pieces: ~1 s)."""
    _, specials, _, _ = VOCABULARIES[kind]
    backend = Tokenizer(Unigram(_unigram_vocab(kind), unk_id=specials.index("<unk>"), byte_fallback=False))
    backend.normalizer = normalizers.Lowercase()  # the CLIP pieces are lower-case
    scheme = "never" if kind == "gemma-2-2b" else "first"
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme=scheme, split=True)
    backend.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme=scheme, split=True)
    if kind == "gemma-2-2b":
        backend.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                               special_tokens=[("<bos>", specials.index("<bos>"))])
    else:
        backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                               special_tokens=[("</s>", specials.index("</s>"))])
    return backend


def stand_in_tokenizer(kind: str, *, model_max_length: int | None = None) -> PreTrainedTokenizerFast:
    """A tokenizer with ``kind``'s vocabulary size, special tokens and ids, marked as a stand-in.

    Args:
        kind (`str`): ``t5-xxl`` (T5EncoderModel of SD3, FLUX, PixArt) or ``gemma-2-2b`` (SANA).
        model_max_length (`int`, *optional*): defaults to the real tokenizer's (512 for T5, 8192 Gemma).

    T5 appends ``</s>``; Gemma prepends ``<bos>`` and puts no word-start symbol before the first word,
    as the real tokenizers do. Each call returns a new tokenizer (pipelines may add tokens to theirs).
    """
    if kind not in VOCABULARIES:
        raise ValueError(f"no stand-in for {kind!r}; stand-ins: {', '.join(VOCABULARIES)}")
    size, _, limit, replaces = VOCABULARIES[kind]
    if kind == "gemma-2-2b":
        names: dict[str, Any] = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>",
                                 "unk_token": "<unk>", "mask_token": "<mask>"}
    else:
        names = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                 "additional_special_tokens": [f"<extra_id_{i}>" for i in range(_T5_SENTINELS)]}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=_backend(kind), model_max_length=model_max_length or limit,
                                        padding_side="right", **names, **{MARKER: f"{kind}: stands in for the {replaces}"})
    if len(tokenizer) > size or (kind == "t5-xxl" and len(tokenizer) != size):  # a broken CLIP data file
        raise RuntimeError(f"{kind} stand-in has {len(tokenizer)} tokens for a vocabulary of {size}")
    return tokenizer


def stand_in_note(tokenizer: Any) -> str | None:
    """What ``tokenizer`` stands in for, or ``None`` for a real tokenizer."""
    note = getattr(tokenizer, "init_kwargs", {}).get(MARKER)
    return str(note) if note else None


def stand_ins_of(pipeline: Any) -> dict[str, str]:
    """``{tokenizer attribute: what it stands in for}`` for every stand-in tokenizer of ``pipeline``."""
    found = {}
    for name in getattr(pipeline, "components", {}):
        note = stand_in_note(getattr(pipeline, name, None)) if name.startswith("tokenizer") else None
        if note:
            found[name] = note
    return found
