"""The models diffprof knows by name.

A preset ties a short name (``sd15``, ``sdxl``, ``flux-dev``, ``tiny-sd``) to what every weight source
needs: the Hub repository, the pipeline family (``families.py``: classes, denoiser, text encoders,
guidance), the native resolution, the defaults of its model card where they differ from the family's,
and a folder of diffusers configs shipped in the package (``configs/<name>/``). Those configs are copies of the real repositories' files, so a
``synthetic`` model has exactly the real architecture, and single-file checkpoints load with no
download. Adding a model is one :class:`ModelPreset` entry plus its config folder; a built-in model
whose weights ship in the package (``shapes-sd``, trained by ``scripts/train_shapes_sd.py``) also sets
``weights_dir``; its config folder is the shipped diffusers folder itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from diffprof.errors import ModelError, unknown_choice
from diffprof.models.families import FAMILIES as FAMILY_SPECS
from diffprof.models.families import FamilySpec

Family = Literal["sd", "sdxl", "sd3", "flux", "pixart", "sana"]
FAMILIES: tuple[Family, ...] = ("sd", "sdxl", "sd3", "flux", "pixart", "sana")


@dataclass(frozen=True)
class ModelPreset:
    """One named model.

    Attributes:
        name: what users type (``--model sd15``).
        family: ``sd`` (SD 1.x/2.x: one text encoder), ``sdxl`` (two encoders, micro-conditioning), or a
            diffusion-transformer family (``sd3``, ``flux``, ``pixart``, ``sana``); :attr:`spec` has its facts.
        hub_id: Hugging Face repository for ``weights="hub"``; ``None`` for built-in models.
        native_size: the resolution the model was trained at, in pixels (square).
        inpaint: the UNet takes 9 input channels (latents + mask + masked-image latents).
        prediction_type: what the denoiser predicts (``epsilon``, ``v_prediction``, or ``flow_prediction``
            for flow-matching models), as its scheduler says.
        description: one line for listings.
        builtin: weights come with diffprof (no download, no hub id).
        config_dir: package-relative (or absolute) folder of diffusers configs (``configs/<name>``).
        inpaint_variant: the 9-channel sibling used when ``inpaint=True`` is asked of this preset.
        weights_dir: package-relative (or absolute) diffusers folder of shipped weights (built-in models that
            are trained rather than random); ``None`` means built-in weights are random, from a seed.
        steps, guidance: the model card's steps and guidance scale where they differ from the family's
            defaults (``None``: the family's); see :attr:`default_steps` / :attr:`default_guidance`.
        max_sequence_length: the long text encoder's token count where it differs from the family's
            (FLUX.1-schnell: 256 T5 tokens, dev: 512).
    """

    name: str
    family: Family
    hub_id: str | None
    native_size: int
    inpaint: bool
    prediction_type: str
    description: str
    builtin: bool
    config_dir: str
    inpaint_variant: str | None = None
    weights_dir: str | None = None
    steps: int | None = None
    guidance: float | None = None
    max_sequence_length: int | None = None

    @property
    def spec(self) -> FamilySpec:
        """The preset's pipeline family: classes per task, denoiser, text encoders, guidance."""
        return FAMILY_SPECS[self.family]

    @property
    def denoiser(self) -> str:
        """``unet`` or ``transformer``: the component that runs every step."""
        return self.spec.denoiser

    @property
    def default_steps(self) -> int:
        return self.steps if self.steps is not None else self.spec.default_steps

    @property
    def default_guidance(self) -> float:
        return self.guidance if self.guidance is not None else self.spec.default_guidance

    @property
    def sequence_lengths(self) -> dict[str, int]:
        """Tokens each text encoder sees per prompt, ``{component: length}`` (CLIP 77; T5/Gemma per family)."""
        return {t.component: self.max_sequence_length if self.max_sequence_length and t.length_argument else t.max_length
                for t in self.spec.text_encoders}

    @property
    def config_path(self) -> Path:
        """The config folder on disk (diffusers' loaders need a real path)."""
        return _package_path(self.config_dir)

    @property
    def weights_path(self) -> Path | None:
        """Folder of shipped weights, or ``None`` when built-in weights are generated from a seed."""
        return _package_path(self.weights_dir) if self.weights_dir else None

    def component_config(self, component: str) -> dict[str, Any]:
        """A component's config as the real repository has it (``unet``, ``vae``, ``text_encoder`` ...)."""
        name = "scheduler_config.json" if component == "scheduler" else "config.json"
        return _read_json(self.config_path / component / name)

    def model_index(self) -> dict[str, Any]:
        """``model_index.json``: the pipeline class and its components."""
        return _read_json(self.config_path / "model_index.json")

    @property
    def text_encoders(self) -> tuple[str, ...]:
        """Names of the text-encoder components, in pipeline order."""
        return tuple(t.component for t in self.spec.text_encoders)

    def pad_token(self, tokenizer: str = "tokenizer") -> str:
        """The pad token of ``tokenizer`` (SD 2.x and SDXL's ``tokenizer_2`` pad with ``"!"``)."""
        folder = self.config_path / tokenizer
        # Hub repositories keep it in special_tokens_map.json; transformers 5 writes tokenizer_config.json only.
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (folder / name).is_file():
                pad = _read_json(folder / name)["pad_token"]
                return str(pad["content"] if isinstance(pad, dict) else pad)
        raise FileNotFoundError(f"{folder}: no special_tokens_map.json or tokenizer_config.json")

    @property
    def token_pixels(self) -> int:
        """Image pixels per denoiser token along each side (FLUX and SD3: 16; SANA: 32), transformers only."""
        config = self.component_config(self.denoiser)
        vae = self.component_config("vae")
        levels = vae.get("block_out_channels") or vae["encoder_block_out_channels"]
        return int(2 ** (len(levels) - 1) * config.get("patch_size", 1) * self.spec.packing)


def _package_path(relative: str) -> Path:
    """A folder inside the package (absolute paths pass through, for presets registered at run time)."""
    if Path(relative).is_absolute():
        return Path(relative)
    return Path(str(resources.files("diffprof.models").joinpath(relative)))


def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def _preset(name: str, family: Family, hub_id: str | None, size: int, description: str, *, inpaint: bool = False,
            prediction_type: str = "epsilon", builtin: bool = False, inpaint_variant: str | None = None,
            steps: int | None = None, guidance: float | None = None,
            max_sequence_length: int | None = None) -> ModelPreset:
    return ModelPreset(name=name, family=family, hub_id=hub_id, native_size=size, inpaint=inpaint,
                       prediction_type=prediction_type, description=description, builtin=builtin,
                       config_dir=f"configs/{name}", inpaint_variant=inpaint_variant, steps=steps, guidance=guidance,
                       max_sequence_length=max_sequence_length)


FLOW = "flow_prediction"


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        _preset("tiny-sd", "sd", None, 64, "built-in tiny SD 1.x-shaped pipeline (random weights; tests, CPU)",
                builtin=True, inpaint_variant="tiny-sd-inpaint"),
        _preset("tiny-sd-inpaint", "sd", None, 64, "built-in tiny SD inpainting pipeline (9-channel UNet)",
                builtin=True, inpaint=True),
        _preset("tiny-sdxl", "sdxl", None, 64, "built-in tiny SDXL-shaped pipeline (random weights; tests, CPU)",
                builtin=True, inpaint_variant="tiny-sdxl-inpaint"),
        _preset("tiny-sdxl-inpaint", "sdxl", None, 64, "built-in tiny SDXL inpainting pipeline (9-channel UNet)",
                builtin=True, inpaint=True),
        ModelPreset(name="shapes-sd", family="sd", hub_id=None, native_size=64, inpaint=False,
                    prediction_type="epsilon", builtin=True, config_dir="data/shapes-sd", weights_dir="data/shapes-sd",
                    description="built-in trained SD 1.x-family model of shapes scenes (64 px, 4x VAE, 4M UNet; "
                                "docs/shapes-sd)"),
        _preset("sd15", "sd", "stable-diffusion-v1-5/stable-diffusion-v1-5", 512,
                "Stable Diffusion 1.5 (860M UNet, CLIP ViT-L text)", inpaint_variant="sd15-inpaint"),
        _preset("sd15-inpaint", "sd", "stable-diffusion-v1-5/stable-diffusion-inpainting", 512,
                "Stable Diffusion 1.5 inpainting (9-channel UNet)", inpaint=True),
        _preset("sd21", "sd", "stabilityai/stable-diffusion-2-1", 768,
                "Stable Diffusion 2.1 768-v (v-prediction, OpenCLIP ViT-H text)", prediction_type="v_prediction",
                inpaint_variant="sd2-inpaint"),
        _preset("sd2-inpaint", "sd", "stabilityai/stable-diffusion-2-inpainting", 512,
                "Stable Diffusion 2 inpainting (9-channel UNet, epsilon)", inpaint=True),
        _preset("sdxl", "sdxl", "stabilityai/stable-diffusion-xl-base-1.0", 1024,
                "SDXL 1.0 base (2.6B UNet, CLIP ViT-L + OpenCLIP bigG text)", inpaint_variant="sdxl-inpaint"),
        _preset("sdxl-inpaint", "sdxl", "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", 1024,
                "SDXL 1.0 inpainting 0.1 (9-channel UNet)", inpaint=True),
        # Diffusion transformers: steps and guidance from the model cards (docs/models.md)
        _preset("tiny-sd3", "sd3", None, 64, "built-in tiny SD3-shaped pipeline (MMDiT-X, CLIP-L/G + T5; CPU)",
                builtin=True, prediction_type=FLOW),
        _preset("tiny-flux", "flux", None, 64, "built-in tiny FLUX.1-dev-shaped pipeline (double + single blocks; CPU)",
                builtin=True, prediction_type=FLOW),
        _preset("tiny-pixart", "pixart", None, 64, "built-in tiny PixArt-Sigma-shaped pipeline (T5 cross-attention; CPU)",
                builtin=True),
        _preset("tiny-sana", "sana", None, 64, "built-in tiny SANA-shaped pipeline (linear attention, DC-AE, Gemma-2; CPU)",
                builtin=True, prediction_type=FLOW),
        _preset("sd35-medium", "sd3", "stabilityai/stable-diffusion-3.5-medium", 1024,
                "Stable Diffusion 3.5 Medium (2.5B MMDiT-X, CLIP-L + CLIP-G + T5-XXL text)", prediction_type=FLOW,
                steps=40, guidance=4.5),
        _preset("sd35-large", "sd3", "stabilityai/stable-diffusion-3.5-large", 1024,
                "Stable Diffusion 3.5 Large (8.1B MMDiT, CLIP-L + CLIP-G + T5-XXL text)", prediction_type=FLOW,
                steps=28, guidance=3.5),
        _preset("flux-dev", "flux", "black-forest-labs/FLUX.1-dev", 1024,
                "FLUX.1 [dev] (11.9B guidance-distilled DiT, CLIP-L + T5-XXL text)", prediction_type=FLOW),
        _preset("flux-schnell", "flux", "black-forest-labs/FLUX.1-schnell", 1024,
                "FLUX.1 [schnell] (11.9B timestep-distilled DiT: 4 steps, no guidance, 256 T5 tokens)",
                prediction_type=FLOW, steps=4, guidance=0.0, max_sequence_length=256),
        _preset("pixart-sigma", "pixart", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", 1024,
                "PixArt-Sigma XL-2 1024 (0.6B DiT, T5-XXL text)"),
        _preset("sana", "sana", "Efficient-Large-Model/Sana_1600M_1024px_diffusers", 1024,
                "SANA 1600M 1024px (1.6B linear-attention DiT, Gemma-2 2B text, 32x DC-AE)", prediction_type=FLOW),
    )
}

DEFAULT_MODEL = "shapes-sd"


def get_preset(name: str) -> ModelPreset:
    """The preset called ``name``; a :class:`ModelError` naming the valid ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise unknown_choice("model", name, PRESETS, ModelError) from None


def variant_for(preset: ModelPreset, inpaint: bool | None) -> ModelPreset:
    """The preset to build when ``inpaint`` is asked of ``preset`` (``None``: the preset as it is).

    ``inpaint=True`` on a text-to-image preset gives its 9-channel sibling (``sd15`` -> ``sd15-inpaint``);
    ``inpaint=False`` on an inpainting preset is an error: a 9-channel UNet cannot run text-to-image.
    """
    if inpaint is None or inpaint == preset.inpaint:
        return preset
    if inpaint:
        if preset.denoiser == "transformer":
            raise ModelError(f"model {preset.name!r} has no 9-channel inpainting variant: {preset.family} models inpaint "
                             "with their text-to-image denoiser",
                             f"load it without inpaint=True and run task inpaint "
                             f"({preset.spec.pipelines.get('inpaint', 'no inpaint pipeline in diffusers')})")
        if preset.inpaint_variant is None:
            raise ModelError(f"model {preset.name!r} has no inpainting variant",
                             "pick an inpainting preset: " + ", ".join(n for n, p in PRESETS.items() if p.inpaint))
        return PRESETS[preset.inpaint_variant]
    base = next((p.name for p in PRESETS.values() if p.inpaint_variant == preset.name), None)
    raise ModelError(f"model {preset.name!r} is an inpainting model (9-channel UNet) and cannot run text-to-image",
                     f"use {base!r} for txt2img/img2img" if base else "use a text-to-image preset")
