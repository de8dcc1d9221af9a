"""Pipeline families: what every model of one diffusers pipeline family shares, one entry each.

A family says which diffusers class runs each task, which weighted component denoises (``unet`` or
``transformer``), which text encoders feed it and how many tokens each one sees, how guidance costs
(classifier-free guidance evaluates the denoiser twice per step; FLUX's distilled guidance once), and
the defaults a call runs at. Presets name a family and may override its defaults (``flux-schnell``
takes 4 steps where ``flux-dev`` takes 28). The engine, the estimator and the reports read these
facts from here, so a new family is one :class:`FamilySpec` entry plus its presets' config folders.
Nothing here imports diffusers: class names are strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from diffprof.errors import ModelError, unknown_choice

Task = Literal["txt2img", "img2img", "inpaint"]
Guidance = Literal["cfg", "distilled"]


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder of a family and the token sequence it sees.

    Attributes:
        component: the pipeline attribute holding the model (``text_encoder_3``).
        tokenizer: the attribute holding its tokenizer (``tokenizer_3``).
        kind: which encoder it is (``clip-l``, ``clip-g``, ``t5-xxl``, ``gemma-2-2b``); the tokenizer
            module builds the offline tokenizer (or stand-in) for it from this.
        max_length: tokens the pipeline pads every prompt to by default (77 for CLIP; FLUX's T5 512).
        length_argument: the pipeline call argument that changes ``max_length``
            (``max_sequence_length``), ``None`` when it is fixed by the tokenizer (CLIP's 77).
    """

    component: str
    tokenizer: str
    kind: str
    max_length: int
    length_argument: str | None = None


@dataclass(frozen=True)
class FamilySpec:
    """Everything the model layer and the engine need to know about one pipeline family.

    Attributes:
        name: the family's short name (``flux``), what :attr:`ModelPreset.family` holds.
        description: one line for listings.
        pipelines: diffusers pipeline class name per task; a task that is missing has no pipeline in diffusers.
        denoiser: the weighted component that runs once (or twice, with CFG) per step: ``unet`` or ``transformer``.
        text_encoders: the text encoders in pipeline order, with their sequence lengths.
        guidance: ``cfg`` (the denoiser runs on a conditional and an unconditional batch when the
            guidance scale is above 1) or ``distilled`` (guidance is an input of one evaluation: FLUX).
        default_steps, default_guidance: what a call runs at unless a preset or the user says otherwise.
        flow_matching: the scheduler integrates a flow (FlowMatchEuler, or DPM-Solver with flow
            sigmas) rather than a DDPM noise schedule; the schedulers suite offers the matching set.
        single_file: diffusers' ``from_single_file`` reads this family's original checkpoints.
        packing: latent pixels folded into one transformer token beyond the denoiser's own ``patch_size``
            (FLUX packs 2x2 latents; ``patch_size`` is 1 in its config).
        vae_components: the VAE's parts that run per call (``vae``; DC-AE is one module as well).
        pipeline_options: constructor arguments every pipeline of the family gets (SD: no safety checker).
        call_options: call arguments diffprof passes so a call computes what was asked (PixArt and
            SANA snap sizes to trained aspect-ratio bins unless ``use_resolution_binning=False``, and
            clean captions only where beautifulsoup4 and ftfy are installed: ``clean_caption=False``).
        tiny: the built-in tiny preset of the family (tests, CPU).
        size_multiple: what the pipelines' own input checks demand of each side, beyond the denoiser's
            token (SANA's: 32, even for a VAE that downsamples less).
        sets_sigmas: the pipelines hand the scheduler their own sigma schedule (FLUX: ``np.linspace(1, 1/n, n)``
            shifted by ``mu``), so only schedulers whose ``set_timesteps`` takes ``sigmas`` can run them.
    """

    name: str
    description: str
    pipelines: Mapping[str, str]
    denoiser: Literal["unet", "transformer"]
    text_encoders: tuple[TextEncoderSpec, ...]
    guidance: Guidance
    default_steps: int
    default_guidance: float
    flow_matching: bool
    single_file: bool
    tiny: str
    packing: int = 1
    vae_components: tuple[str, ...] = ("vae",)
    pipeline_options: Mapping[str, Any] = field(default_factory=dict)
    call_options: Mapping[str, Any] = field(default_factory=dict)
    sets_sigmas: bool = False
    size_multiple: int = 8

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks diffusers has a pipeline for in this family."""
        return tuple(self.pipelines)

    @property
    def components(self) -> tuple[str, ...]:
        """Components that hold weights, in pipeline order (what every weight source must provide)."""
        return (self.denoiser, *self.vae_components, *(t.component for t in self.text_encoders))

    @property
    def tokenizers(self) -> tuple[str, ...]:
        return tuple(t.tokenizer for t in self.text_encoders)

    def pipeline_class_name(self, task: str) -> str:
        """The diffusers class that runs ``task``; a :class:`ModelError` when diffusers has none."""
        if task not in self.pipelines:
            raise ModelError(f"the {self.name} family has no {task} pipeline in diffusers",
                             f"{self.name} models run: {', '.join(self.pipelines)}")
        return self.pipelines[task]

    def denoiser_evaluations(self, guidance_scale: float) -> int:
        """Denoiser forward passes per step (batch rows per prompt): 2 under CFG above scale 1, else 1."""
        return 2 if self.guidance == "cfg" and guidance_scale > 1.0 else 1


def _clip(component: str, tokenizer: str, kind: str = "clip-l") -> TextEncoderSpec:
    return TextEncoderSpec(component, tokenizer, kind, 77)


def _long(component: str, tokenizer: str, kind: str, length: int) -> TextEncoderSpec:
    return TextEncoderSpec(component, tokenizer, kind, length, "max_sequence_length")


_SD_OPTIONS = MappingProxyType({"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False})
# PixArt and SANA snap a requested size to a trained aspect-ratio bin (and resize the image back) unless told
# not to: a profile must compute the size it reports. clean_caption needs beautifulsoup4 + ftfy; without them
# the pipelines warn and skip it, so diffprof skips it on every machine alike.
NO_BINNING = MappingProxyType({"use_resolution_binning": False, "clean_caption": False})

FAMILIES: dict[str, FamilySpec] = {
    f.name: f
    for f in (
        FamilySpec(
            "sd", "Stable Diffusion 1.x / 2.x: UNet, one CLIP text encoder",
            {"txt2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
             "inpaint": "StableDiffusionInpaintPipeline"},
            "unet", (_clip("text_encoder", "tokenizer"),), "cfg", 50, 7.5, flow_matching=False, single_file=True,
            tiny="tiny-sd", pipeline_options=_SD_OPTIONS),
        FamilySpec(
            "sdxl", "SDXL: UNet, CLIP-L + OpenCLIP bigG text, size micro-conditioning",
            {"txt2img": "StableDiffusionXLPipeline", "img2img": "StableDiffusionXLImg2ImgPipeline",
             "inpaint": "StableDiffusionXLInpaintPipeline"},
            "unet", (_clip("text_encoder", "tokenizer"), _clip("text_encoder_2", "tokenizer_2", "clip-g")), "cfg",
            50, 5.0, flow_matching=False, single_file=True, tiny="tiny-sdxl"),
        FamilySpec(
            "sd3", "Stable Diffusion 3 / 3.5: MMDiT over CLIP-L + CLIP-G (77 each) + T5-XXL (256), flow matching",
            {"txt2img": "StableDiffusion3Pipeline", "img2img": "StableDiffusion3Img2ImgPipeline",
             "inpaint": "StableDiffusion3InpaintPipeline"},
            "transformer", (_clip("text_encoder", "tokenizer"), _clip("text_encoder_2", "tokenizer_2", "clip-g"),
                            _long("text_encoder_3", "tokenizer_3", "t5-xxl", 256)),
            "cfg", 28, 7.0, flow_matching=True, single_file=True, tiny="tiny-sd3"),
        FamilySpec(
            "flux", "FLUX.1: double + single-stream DiT over CLIP-L (77, pooled) + T5-XXL (512), distilled guidance",
            {"txt2img": "FluxPipeline", "img2img": "FluxImg2ImgPipeline", "inpaint": "FluxInpaintPipeline"},
            "transformer", (_clip("text_encoder", "tokenizer"), _long("text_encoder_2", "tokenizer_2", "t5-xxl", 512)),
            "distilled", 28, 3.5, flow_matching=True, single_file=True, tiny="tiny-flux", packing=2, sets_sigmas=True),
        FamilySpec(
            "pixart", "PixArt-Sigma: DiT with cross-attention to T5-XXL (300 tokens), DPM-Solver",
            {"txt2img": "PixArtSigmaPipeline"},
            "transformer", (_long("text_encoder", "tokenizer", "t5-xxl", 300),), "cfg", 20, 4.5,
            flow_matching=False, single_file=False, tiny="tiny-pixart", call_options=NO_BINNING),
        FamilySpec(
            "sana", "SANA: linear-attention DiT over Gemma-2 2B (300 tokens + instruction), 32x DC-AE, flow DPM-Solver",
            {"txt2img": "SanaPipeline"},
            "transformer", (_long("text_encoder", "tokenizer", "gemma-2-2b", 300),), "cfg", 20, 4.5,
            flow_matching=True, single_file=False, tiny="tiny-sana", call_options=NO_BINNING, size_multiple=32),
    )
}

#: Pipeline class name -> family, for folders and Hub repositories that no preset names.
CLASS_FAMILIES: dict[str, str] = {cls: f.name for f in FAMILIES.values() for cls in f.pipelines.values()}
CLASS_FAMILIES["PixArtAlphaPipeline"] = "pixart"  # same components, T5 at 120 tokens


def get_family(name: str) -> FamilySpec:
    """The family called ``name``; a :class:`ModelError` naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise unknown_choice("pipeline family", name, FAMILIES, ModelError) from None


def is_flow_config(config: Mapping[str, Any]) -> bool:
    """A scheduler config that integrates a flow: a FlowMatch* class, flow sigmas, or flow prediction
    (how a model with no preset is told to be a flow-matching one)."""
    return (str(config.get("_class_name", "")).startswith("FlowMatch") or bool(config.get("use_flow_sigmas"))
            or config.get("prediction_type") == "flow_prediction")


def family_of_class(class_name: str) -> str | None:
    """The family a diffusers pipeline class belongs to, ``None`` for classes no family covers."""
    return CLASS_FAMILIES.get(class_name)
