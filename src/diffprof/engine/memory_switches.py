"""The switches for big models' memory: where weights live (group offload, T5 only offloaded or dropped)
and how they are stored (int8 weights, float8 storage). Entries of the one registry
(:data:`diffprof.engine.switches.REGISTRY` places each where its label part goes), kept here so the
registry module stays readable; their steps are in :mod:`diffprof.engine.weights`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from diffprof.engine import weights
from diffprof.engine.switch import FamilyRule, Group, Phase, Step, Switch, conflict, needs_cuda, needs_package
from diffprof.errors import unknown_choice
from diffprof.models.families import FAMILIES

GroupLevel = Literal["block", "leaf"]
GROUP_LEVELS = ("block", "leaf")
OFFLOAD = Group("offload", lambda seen: f"{' and '.join(seen)} exclude each other",
                "each offload mode places every component itself; pick one")
WEIGHTS = Group("weights", lambda seen: f"{' and '.join(seen)} both change how the denoiser's weights are stored; choose one",
                "keep one of fp8, int8_weights and layerwise_casting")
#: What a user's switch yields to in a cell with these (see :func:`~diffprof.engine.switches.yield_to`).
OFFLOADS = ("model_cpu_offload", "sequential_cpu_offload", "group_offload")
#: Families whose pipelines have a T5-XXL text encoder (SD3's is optional, FLUX's and PixArt's are not).
T5_FAMILIES = tuple(f.name for f in FAMILIES.values() if any(t.kind == "t5-xxl" for t in f.text_encoders))
NEEDS_TORCHAO = "pip install torchao"
OFFLOAD_ON_CPU = "drop the offload switch when running on the CPU"


def _step(phase: Phase, run: Any) -> tuple[Step, ...]:
    return (Step(phase, run),)


def _group_level(opts: Any, value: str) -> Mapping[str, Any]:
    level = value or "block"
    if level not in GROUP_LEVELS:
        raise unknown_choice("group offload level", level, GROUP_LEVELS)
    return {"offload": "group", "group_offload": level}


def _offload_name(opts: Any) -> str:
    return {"model": "model_cpu_offload", "sequential": "sequential_cpu_offload", "group": "group_offload"}.get(opts.offload, str(opts.offload))


def _group_token(opts: Any) -> str | None:
    if opts.offload != "group":
        return None
    return "group_offload" if opts.group_offload == "block" else f"group_offload={opts.group_offload}"


GROUP_OFFLOAD = Switch(
    "group_offload", "offload every component in groups on CUDA streams (diffusers group offloading): group_offload = one block of the "
    "denoiser a group, group_offload=leaf = each layer (text encoders stream layer by layer either way); the next group is copied while "
    "the current one computes: a fraction of the memory, at the cost of the copies the compute cannot hide", group=OFFLOAD, places=True, listed_as="group_offload[=leaf]",
    parse_value=_group_level, format_value=_group_token, apply=_step(Phase.PLACE, weights.group_offload),
    requires=(needs_cuda("group_offload needs a CUDA device: it streams weights from host memory on CUDA streams", OFFLOAD_ON_CPU),),
)

T5_OFFLOAD = Switch(
    "t5_offload", "keep only the T5 text encoder in host memory, streamed to the GPU layer by layer as it encodes (leaf-level group "
    "offload on a CUDA stream); everything else stays resident, so compile and the loop's CUDA graph still apply",
    {"t5_offload": True}, places=True, apply=_step(Phase.PLACE, weights.t5_offload),
    requires=(needs_cuda("t5_offload needs a CUDA device: it streams T5's weights from host memory on a CUDA stream", OFFLOAD_ON_CPU),),
    conflicts=(conflict(lambda o: o.offload != "none", lambda o: f"t5_offload is part of {_offload_name(o)} already: every component, T5 included, is offloaded",
                        "drop t5_offload, or the other offload switch"),),
    yields_to=OFFLOADS, families=FamilyRule(T5_FAMILIES, {}, "{family} pipelines have no T5 text encoder diffprof knows of",
                                            "drop t5_offload for this model"),
)

DROP_T5 = Switch(
    "drop_t5", "run SD3 without its T5-XXL encoder (4.7 B parameters, 9.5 GB at bf16): the pipeline feeds zeros of T5's length in its "
    "place, so T5's memory and time go and the transformer's stay; at a quality cost", {"drop_t5": True},
    apply=_step(Phase.COMPONENTS, weights.drop_t5),
    conflicts=(conflict(lambda o: o.t5_offload, "drop_t5 leaves no T5 to offload", "choose drop_t5 or t5_offload"),),
    families=FamilyRule(("sd3",), {"flux": "FLUX's transformer reads T5's token embeddings as its whole text context (CLIP gives it only a "
                                           "pooled vector), so FluxPipeline cannot run without text_encoder_2"},
                        "{family} pipelines cannot run without their text encoders",
                        "keep T5 in host memory with t5_offload (streamed to the GPU only while it encodes), or cache its embeddings with text_cache"),
)

INT8_WEIGHTS = Switch(
    "int8_weights", "int8 weight-only quantization of the denoiser's linear layers (torchao): half the bf16 weight memory, "
    "activations in the compute precision; fast compiled, slower eager", {"int8_weights": True}, group=WEIGHTS,
    apply=_step(Phase.QUANTIZE, weights.quantize_int8),
    requires=(needs_package("torchao", "int8_weights needs the torchao package, which is not installed", NEEDS_TORCHAO),),
)

LAYERWISE_CASTING = Switch(
    "layerwise_casting", "store the denoiser's weights as float8 e4m3 and cast each layer to the compute precision as it runs "
    "(diffusers enable_layerwise_casting): about half the bf16 weight memory, a cast per layer per call",
    {"layerwise_casting": True}, group=WEIGHTS, apply=_step(Phase.QUANTIZE, weights.layerwise_casting),
)
