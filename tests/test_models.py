"""Model presets, architectures and weight sources: every path runs offline on tiny models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.loaders.single_file_utils import (
    CHECKPOINT_KEY_NAMES,
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from PIL import Image
from safetensors.torch import save_file

import diffprof
from diffprof.errors import ConfigError, InputError, ModelError
from diffprof.models import (
    DEFAULT_MODEL,
    PRESETS,
    ModelPreset,
    build_models,
    build_tiny,
    get_preset,
    load_pipeline,
    parameter_count,
    save_single_file,
)
from diffprof.models.ldm import match_preset, signature_of, to_ldm
from diffprof.models.materialize import materialize
from diffprof.models.pipelines import weightless_components
from diffprof.models.presets import variant_for

# UNet (SD 1.x/2.x, SDXL) presets; the diffusion-transformer presets are tested in test_models_dit.py
UNET_PRESETS = [name for name, p in PRESETS.items() if p.denoiser == "unet"]
REAL_PRESETS = [name for name in UNET_PRESETS if not PRESETS[name].builtin]
PROMPT = "a photo of a cat"


def image(pipeline, seed: int = 0, **kwargs) -> np.ndarray:
    """A 64 px, 2-step generation, as numbers."""
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    kwargs = {"height": 64, "width": 64, **kwargs}
    return pipeline(PROMPT, num_inference_steps=2, generator=generator, output_type="np", **kwargs).images


def inpaint_inputs() -> dict[str, Image.Image]:
    pixels = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    return {"image": Image.fromarray(pixels), "mask_image": Image.fromarray(mask)}


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return module.state_dict()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = state(a), state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tiny_sd():
    return build_tiny("tiny-sd", seed=0)


@pytest.fixture(scope="module")
def tiny_sdxl():
    return build_tiny("tiny-sdxl", seed=0)


# --- presets ------------------------------------------------------------------------------------------


def test_presets_cover_the_models_and_default() -> None:
    assert {"sd15", "sd21", "sdxl", "sd15-inpaint", "sd2-inpaint", "sdxl-inpaint", "tiny-sd", "tiny-sdxl"} <= set(PRESETS)
    assert DEFAULT_MODEL == "shapes-sd" and PRESETS[DEFAULT_MODEL].builtin
    assert get_preset("sd21").hub_id == "stabilityai/stable-diffusion-2-1"
    assert get_preset("sdxl").native_size == 1024 and get_preset("sd21").prediction_type == "v_prediction"


def test_unknown_preset_names_the_valid_ones() -> None:
    with pytest.raises(ModelError) as caught:
        get_preset("sd1.5")
    assert "unknown model 'sd1.5'" in caught.value.message
    assert "did you mean 'sd15'" in caught.value.hint
    assert all(name in caught.value.hint for name in PRESETS)


@pytest.mark.parametrize("name", UNET_PRESETS)
def test_preset_fields_agree_with_its_configs(name: str) -> None:
    preset = get_preset(name)
    index, unet, vae = preset.model_index(), preset.component_config("unet"), preset.component_config("vae")
    scheduler = preset.component_config("scheduler")
    assert ("XL" in index["_class_name"]) == (preset.family == "sdxl")
    assert ("Inpaint" in index["_class_name"]) == preset.inpaint == (unet["in_channels"] == 9)
    vae_scale = 2 ** (len(vae["block_out_channels"]) - 1)
    # SD's VAEs downsample 8x; shapes-sd's 3-level VAE 4x (64 px <-> 16x16 latents)
    assert vae_scale == (4 if name == "shapes-sd" else 8) and unet["sample_size"] * vae_scale == preset.native_size
    assert scheduler.get("prediction_type", "epsilon") == preset.prediction_type
    assert (preset.hub_id is None) == preset.builtin
    for encoder in preset.text_encoders:
        assert preset.component_config(encoder)["vocab_size"] == 49_408
    if preset.inpaint_variant:
        sibling = PRESETS[preset.inpaint_variant]
        assert sibling.inpaint and sibling.family == preset.family
        assert variant_for(preset, True) is sibling


def test_inpaint_false_on_an_inpainting_preset_is_refused() -> None:
    with pytest.raises(ModelError, match="inpainting model"):
        variant_for(get_preset("sd15-inpaint"), False)


def test_pad_tokens_follow_the_real_tokenizers() -> None:
    assert weightless_components(get_preset("sd15"))["tokenizer"].pad_token == "<|endoftext|>"
    assert weightless_components(get_preset("sd21"))["tokenizer"].pad_token == "!"
    parts = weightless_components(get_preset("sdxl"))
    assert parts["tokenizer"].pad_token == "<|endoftext|>" and parts["tokenizer_2"].pad_token == "!"
    assert isinstance(parts["scheduler"], EulerDiscreteScheduler)


# --- full-size architectures (meta device) ------------------------------------------------------------


def counts(name: str) -> dict[str, int]:
    return {part: parameter_count(model) for part, model in build_models(get_preset(name), device="meta").items()}


def test_sd15_parameter_counts() -> None:
    got = counts("sd15")
    assert got["unet"] == pytest.approx(859.5e6, rel=1e-3)
    assert got["text_encoder"] == pytest.approx(123.06e6, rel=1e-3)  # CLIP ViT-L/14 text
    assert got["vae"] == pytest.approx(83.65e6, rel=1e-3)


def test_sdxl_parameter_counts() -> None:
    got = counts("sdxl")
    assert got["unet"] == pytest.approx(2567e6, rel=1e-3)
    assert got["text_encoder"] == pytest.approx(123.06e6, rel=1e-3)
    assert got["text_encoder_2"] == pytest.approx(694.66e6, rel=1e-3)  # OpenCLIP bigG text + projection
    assert got["vae"] == pytest.approx(83.65e6, rel=1e-3)


def test_sd21_and_inpainting_parameter_counts() -> None:
    sd21 = counts("sd21")
    assert sd21["unet"] == pytest.approx(865.9e6, rel=1e-3)
    assert sd21["text_encoder"] == pytest.approx(340.4e6, rel=1e-3)  # OpenCLIP ViT-H text, 23 layers
    # inpainting adds 5 input channels to conv_in: 320 * 5 * 3 * 3 weights
    assert counts("sd15-inpaint")["unet"] - counts("sd15")["unet"] == 320 * 5 * 9
    assert counts("sdxl-inpaint")["unet"] - counts("sdxl")["unet"] == 320 * 5 * 9


@pytest.mark.parametrize("name", REAL_PRESETS)
def test_single_file_layout_is_what_diffusers_reads(name: str) -> None:
    """Our original-layout names convert back, through diffusers' own code, to every parameter."""
    preset = get_preset(name)
    models = build_models(preset, device="meta")
    checkpoint = to_ldm(SimpleNamespace(**models))
    assert match_preset(signature_of({k: tuple(v.shape) for k, v in checkpoint.items()})) is preset

    def assert_round_trip(model: torch.nn.Module, converted: dict[str, torch.Tensor]) -> None:
        expected = {k.removeprefix("text_model."): tuple(v.shape) for k, v in model.state_dict().items()
                    if not k.endswith("position_ids")}
        got = {k.removeprefix("text_model."): tuple(v.shape) for k, v in converted.items() if v is not None}
        assert got == expected

    assert_round_trip(models["unet"], convert_ldm_unet_checkpoint(checkpoint, dict(models["unet"].config)))
    assert_round_trip(models["vae"], convert_ldm_vae_checkpoint(checkpoint, dict(models["vae"].config)))
    if preset.family == "sdxl":
        assert_round_trip(models["text_encoder"], convert_ldm_clip_checkpoint(checkpoint))
        assert_round_trip(models["text_encoder_2"], convert_open_clip_checkpoint(
            models["text_encoder_2"], checkpoint, prefix="conditioner.embedders.1.model."))
    elif models["text_encoder"].config.hidden_act == "quick_gelu":
        assert_round_trip(models["text_encoder"], convert_ldm_clip_checkpoint(checkpoint))
    else:
        assert_round_trip(models["text_encoder"], convert_open_clip_checkpoint(models["text_encoder"], checkpoint))
    # names diffusers itself uses to recognize real checkpoints
    markers = {"sd": ["v1"] if name.startswith("sd15") else ["v2", "open_clip"], "sdxl": ["xl_base", "open_clip_sdxl", "clip_sdxl"]}
    for marker in markers[preset.family]:
        assert CHECKPOINT_KEY_NAMES[marker] in checkpoint


# Tensor names (and shapes) of the original checkpoints (v1-5-pruned-emaonly, v2-1_768-ema-pruned,
# sd_xl_base_1.0), as the original training code lays them out; other tools need exactly these.
REAL_NAMES = {
    "sd15": {
        "model.diffusion_model.time_embed.0.weight": (1280, 320),
        "model.diffusion_model.input_blocks.1.0.in_layers.0.weight": (320,),
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
        "model.diffusion_model.middle_block.2.out_layers.3.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.8.2.conv.weight": (640, 640, 3, 3),
        "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight": (2560, 320),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "first_stage_model.encoder.down.0.downsample.conv.weight": (128, 128, 3, 3),
        "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.encoder.norm_out.weight": (512,),
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "first_stage_model.decoder.mid.block_2.conv2.weight": (512, 512, 3, 3),
        "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
        "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight": (768, 768),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
    },
    "sd21": {
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
        "cond_stage_model.model.positional_embedding": (77, 1024),
        "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight": (3072, 1024),
        "cond_stage_model.model.transformer.resblocks.22.mlp.c_fc.weight": (4096, 1024),
        "cond_stage_model.model.ln_final.weight": (1024,),
    },
    "sdxl": {
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn1.to_q.weight": (640, 640),
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": (1280, 2048),
        "model.diffusion_model.middle_block.1.transformer_blocks.9.ff.net.2.weight": (1280, 5120),
        "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (640, 640, 3, 3),
        "model.diffusion_model.output_blocks.8.0.skip_connection.weight": (320, 640, 1, 1),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "conditioner.embedders.1.model.text_projection": (1280, 1280),
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_bias": (3840,),
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.out_proj.weight": (1280, 1280),
    },
}


@pytest.mark.parametrize("name", list(REAL_NAMES))
def test_single_file_names_are_the_original_ones(name: str) -> None:
    shapes = {k: tuple(v.shape) for k, v in to_ldm(SimpleNamespace(**build_models(get_preset(name), device="meta"))).items()}
    assert {key: shapes.get(key) for key in REAL_NAMES[name]} == REAL_NAMES[name]
    assert not any(".output_blocks.11.2." in k or "decoder.up.0.upsample" in k for k in shapes)  # no extra upsamplers


# --- tiny built-in models -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_tiny_weights_are_fixed_by_the_seed(name: str) -> None:
    first, again, other = build_tiny(name, seed=7), build_tiny(name, seed=7), build_tiny(name, seed=8)
    for part in ("unet", "vae", "text_encoder"):
        assert same_weights(getattr(first, part), getattr(again, part))
        assert not same_weights(getattr(first, part), getattr(other, part))


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-flux"])
def test_construction_initializes_nothing_and_materializing_initializes_every_parameter(name: str) -> None:
    """Modules are built on meta with their libraries' init switched off (each init op on a meta
    tensor runs through torch's Python meta kernels: half of a tiny build); materializing then draws
    every parameter for real: none is left as torch.empty left it, and norm scales are ones."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from diffprof.models.synthetic import build_models

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    with Ops() as seen:
        build_models(get_preset(name), device="meta")
    assert not seen.names & {"normal_", "uniform_", "fill_", "zero_", "trunc_normal_"}, seen.names
    for part, model in build_models(get_preset(name)).items():
        for pname, p in model.named_parameters():
            assert torch.isfinite(p).all(), (part, pname)
            if p.ndim >= 2:
                assert p.std() > 0, (part, pname)  # drawn, not left constant


def test_tiny_pipelines_are_the_real_classes_with_real_parts(tiny_sd, tiny_sdxl) -> None:
    assert type(tiny_sd) is StableDiffusionPipeline and type(tiny_sdxl) is StableDiffusionXLPipeline
    assert tiny_sd.vae_scale_factor == 8 and tiny_sdxl.vae_scale_factor == 8
    assert isinstance(tiny_sd.scheduler, PNDMScheduler) and isinstance(tiny_sdxl.scheduler, EulerDiscreteScheduler)
    assert tiny_sd.safety_checker is None
    assert tiny_sd.tokenizer(PROMPT).input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tiny_sdxl.tokenizer_2.pad_token == "!"
    assert tiny_sd.text_encoder.config.vocab_size == 49_408


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_tiny_txt2img_is_small_and_draws_an_image_on_one_thread(name: str) -> None:
    """Tiny models keep tests and `make demo` quick by their size (a structural bound: a timed
    threshold here would fail on a loaded machine; their speed is what `make demo` prints)."""
    pipeline = build_tiny(name)
    sizes = {k: sum(p.numel() for p in m.parameters()) for k, m in pipeline.components.items() if isinstance(m, torch.nn.Module)}
    assert max(sizes.values()) < 4_000_000 and sum(sizes.values()) < 8_000_000, sizes  # 3.2 M / 7.1 M today (tiny-sdxl)
    image(pipeline)  # warm-up
    out = image(pipeline)
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all() and out.std() > 0


@pytest.mark.parametrize(("name", "cls"), [("tiny-sd", StableDiffusionInpaintPipeline),
                                          ("tiny-sdxl", StableDiffusionXLInpaintPipeline)])
def test_tiny_inpaint_has_a_9_channel_unet_and_runs(name: str, cls: type) -> None:
    pipeline = build_tiny(name, seed=0, inpaint=True)
    assert type(pipeline) is cls and pipeline.unet.config.in_channels == 9
    # only the UNet differs from the text-to-image model of the same seed
    txt2img = build_tiny(name, seed=0)
    assert same_weights(pipeline.text_encoder, txt2img.text_encoder) and same_weights(pipeline.vae, txt2img.vae)
    out = image(pipeline, **inpaint_inputs())
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()
    loaded = load_pipeline(name, inpaint=True)
    assert loaded.preset is get_preset(f"{name}-inpaint") and loaded.inpaint
    assert same_weights(loaded.pipeline.unet, pipeline.unet)


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_img2img_and_inpaint_pipelines_derive_from_what_we_build(name: str, tiny_sd, tiny_sdxl) -> None:
    pipeline = tiny_sd if name == "tiny-sd" else tiny_sdxl
    img2img = AutoPipelineForImage2Image.from_pipe(pipeline)
    assert "Img2Img" in type(img2img).__name__ and img2img.unet is pipeline.unet
    assert image(img2img, image=inpaint_inputs()["image"], strength=0.75).shape == (1, 64, 64, 3)
    inpaint = AutoPipelineForInpainting.from_pipe(pipeline)
    assert "Inpaint" in type(inpaint).__name__
    assert image(inpaint, **inpaint_inputs()).shape == (1, 64, 64, 3)
    nine = build_tiny(name, inpaint=True)
    assert type(AutoPipelineForInpainting.from_pipe(nine)) is type(nine)


# --- load_pipeline: preset sources --------------------------------------------------------------------


def test_default_load_is_the_builtin_tiny_model(tiny_sd) -> None:
    loaded = load_pipeline("tiny-sd")
    assert loaded.source == "builtin:tiny-sd" and loaded.family == "sd" and loaded.preset is get_preset("tiny-sd")
    assert loaded.bytes_read == 0 and loaded.files == []
    assert same_weights(loaded.pipeline.unet, tiny_sd.unet)


def test_default_model_is_the_shipped_shapes_sd() -> None:
    loaded = load_pipeline()
    assert loaded.preset is get_preset("shapes-sd") and loaded.family == "sd"


def test_synthetic_builds_the_preset_architecture() -> None:
    loaded = load_pipeline("tiny-sdxl", "synthetic", seed=3)
    assert loaded.source == "synthetic:tiny-sdxl" and loaded.family == "sdxl"
    assert same_weights(loaded.pipeline.unet, load_pipeline("tiny-sdxl", "synthetic", seed=3).pipeline.unet)


def test_dtype_is_applied() -> None:
    loaded = load_pipeline("tiny-sd", dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.pipeline.unet.parameters()} == {torch.bfloat16}


def test_source_mistakes_are_model_errors() -> None:
    with pytest.raises(ModelError, match="no built-in weights"):
        load_pipeline("sd15", "builtin")
    with pytest.raises(ModelError, match="no Hugging Face Hub repository"):
        load_pipeline("tiny-sd", "hub")
    with pytest.raises(ConfigError, match="unknown weights source"):
        load_pipeline("tiny-sd", "cloud")
    with pytest.raises(ModelError) as caught:
        load_pipeline("sdxl-turbo")
    assert "unknown model" in caught.value.message and "sdxl" in caught.value.hint


HUB_SCRIPT = """
import sys
from pathlib import Path
from diffprof.errors import ModelError
from diffprof.models import load_pipeline
from diffprof.models.materialize import materialize
try:
    load_pipeline("sd15", "hub")
except ModelError as error:
    print("ERROR", error)
# a repository in the local cache loads with no network: fake one in the cache layout
repo = Path(sys.argv[1]) / "hub" / "models--stabilityai--stable-diffusion-2-1"
materialize("tiny-sd", repo / "snapshots" / ("0" * 40), seed=9)
(repo / "refs").mkdir()
(repo / "refs" / "main").write_text("0" * 40)
loaded = load_pipeline("sd21", "hub")
print("LOADED", loaded.source, loaded.preset.name, len(loaded.files), loaded.bytes_read > 0)
"""


@pytest.mark.slow  # a fresh process (offline mode is read at import) that builds and loads a pipeline
def test_hub_honours_offline_mode_and_the_local_cache(tmp_path) -> None:
    """HF_HUB_OFFLINE=1 + empty cache: one ModelError line offering the alternatives; cached: loads."""
    src = str(Path(diffprof.__file__).resolve().parents[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "PYTHONPATH": src}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT, str(tmp_path)], check=False, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, done.stdout
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in errors[0] and "not in the local Hugging Face cache" in errors[0]
    assert "--weights synthetic" in errors[0] and "local diffusers folder" in errors[0]
    assert "Traceback" not in done.stderr and "Couldn't connect" not in done.stderr
    assert "LOADED hub:stabilityai/stable-diffusion-2-1 sd21 3 True" in done.stdout


# --- folders and single files -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_materialized_folder_loads_with_plain_diffusers(tmp_path, name: str) -> None:
    out = materialize(name, tmp_path / "model", seed=5)
    plain = DiffusionPipeline.from_pretrained(out)
    assert np.array_equal(image(plain), image(build_tiny(name, seed=5)))
    assert sorted(p.name for p in (out / "unet").iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_materialize_never_overwrites(tmp_path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        materialize("tiny-sd", tmp_path / "taken")


def test_local_folder_loads_and_counts_its_weight_files(tmp_path) -> None:
    out = materialize("tiny-sdxl", tmp_path / "xl", seed=2)
    loaded = load_pipeline(out)  # a Path works as well as a str
    assert loaded.source == f"local:{out}" and loaded.family == "sdxl" and loaded.preset is None
    assert type(loaded.pipeline) is StableDiffusionXLPipeline
    expected = sorted(str(p) for p in out.glob("*/*.safetensors"))
    assert sorted(loaded.files) == expected and len(expected) == 4  # unet, vae, two text encoders
    assert loaded.bytes_read == sum(Path(f).stat().st_size for f in expected)
    assert np.array_equal(image(loaded.pipeline), image(build_tiny("tiny-sdxl", seed=2)))


def test_a_builtin_preset_with_shipped_weights_is_one_entry(tmp_path, monkeypatch) -> None:
    """How ``shapes-sd`` will plug in: a preset whose ``weights_dir`` holds a diffusers folder."""
    weights = materialize("tiny-sd", tmp_path / "shipped", seed=11)
    preset = ModelPreset(name="shipped-sd", family="sd", hub_id=None, native_size=64, inpaint=False,
                         prediction_type="epsilon", description="test", builtin=True,
                         config_dir=str(weights), weights_dir=str(weights))
    monkeypatch.setitem(PRESETS, preset.name, preset)
    loaded = load_pipeline("shipped-sd")
    assert loaded.source == "builtin:shipped-sd" and loaded.preset is preset and loaded.bytes_read > 0
    assert np.array_equal(image(loaded.pipeline), image(build_tiny("tiny-sd", seed=11)))
    assert parameter_count(build_models(preset, device="meta")["unet"]) == parameter_count(loaded.pipeline.unet)
    assert load_pipeline("shipped-sd", "synthetic").pipeline.tokenizer.pad_token == "<|endoftext|>"


def test_folder_without_model_index_is_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="not a diffusers pipeline folder"):
        load_pipeline(str(tmp_path))


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_single_file_round_trip_gives_the_same_image(tmp_path, name: str, tiny_sd, tiny_sdxl) -> None:
    pipeline = tiny_sd if name == "tiny-sd" else tiny_sdxl
    path = save_single_file(pipeline, tmp_path / "model.safetensors")
    loaded = load_pipeline(str(path))
    assert loaded.source == f"single-file:{path}" and loaded.preset is get_preset(name)
    assert loaded.files == [str(path)] and loaded.bytes_read == path.stat().st_size
    for part in ("unet", "vae", *get_preset(name).text_encoders):
        assert same_weights(getattr(loaded.pipeline, part), getattr(pipeline, part)), part
    assert np.array_equal(image(loaded.pipeline), image(pipeline))


def test_single_file_inpaint_round_trip(tmp_path) -> None:
    pipeline = build_tiny("tiny-sd", inpaint=True)
    path = save_single_file(pipeline, tmp_path / "inpaint.safetensors")
    loaded = load_pipeline(str(path))
    assert type(loaded.pipeline) is StableDiffusionInpaintPipeline and loaded.preset is get_preset("tiny-sd-inpaint")
    assert np.array_equal(image(loaded.pipeline, **inpaint_inputs()), image(pipeline, **inpaint_inputs()))
    with pytest.raises(ModelError, match="inpainting model"):
        load_pipeline(str(path), inpaint=False)


def test_single_file_openclip_text_encoder_round_trip(tmp_path) -> None:
    """SD 2.x keeps its text encoder in OpenCLIP's layout (fused q/k/v); weights survive the trip."""
    pipeline = build_tiny("tiny-sd", seed=4)
    pipeline.text_encoder.config.hidden_act = "gelu"  # marks an OpenCLIP encoder, as SD 2.x has
    path = save_single_file(pipeline, tmp_path / "sd2like.safetensors")
    from safetensors import safe_open
    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert not any(k.startswith("cond_stage_model.transformer.") for k in keys)
    loaded = load_pipeline(str(path))
    assert same_weights(loaded.pipeline.text_encoder, pipeline.text_encoder)


def test_single_file_fp16_export_halves_the_file(tmp_path, tiny_sd) -> None:
    full = save_single_file(tiny_sd, tmp_path / "fp32.safetensors")
    half = save_single_file(tiny_sd, tmp_path / "fp16.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_pipeline(str(half), dtype=torch.float16)
    assert next(loaded.pipeline.unet.parameters()).dtype == torch.float16


def test_single_file_must_be_safetensors(tmp_path, tiny_sd) -> None:
    with pytest.raises(InputError, match=".safetensors"):
        save_single_file(tiny_sd, tmp_path / "model.ckpt")


def test_pickle_checkpoints_need_allow_pickle(tmp_path, tiny_sd) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {k: v.clone() for k, v in to_ldm(tiny_sd).items()}}, path)
    with pytest.raises(ModelError) as caught:
        load_pipeline(str(path))
    assert "pickle" in caught.value.message and "run any code" in caught.value.message
    assert "allow_pickle=True" in caught.value.hint and ".safetensors" in caught.value.hint
    loaded = load_pipeline(str(path), allow_pickle=True)
    assert loaded.source == f"single-file:{path}" and same_weights(loaded.pipeline.unet, tiny_sd.unet)


def test_corrupt_or_foreign_files_are_clear_errors(tmp_path, tiny_sd) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 10 + b"definitely not a checkpoint")
    with pytest.raises(ModelError, match="not a readable .safetensors file"):
        load_pipeline(str(garbage))

    whole = save_single_file(tiny_sd, tmp_path / "whole.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_pipeline(str(truncated))

    foreign = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(4, 4)}, str(foreign))
    with pytest.raises(ModelError, match="not a Stable Diffusion checkpoint"):
        load_pipeline(str(foreign))

    bad_pickle = tmp_path / "bad.ckpt"
    bad_pickle.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError, match="could not be unpickled"):
        load_pipeline(str(bad_pickle), allow_pickle=True)

    odd = tmp_path / "weights.onnx"
    odd.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown checkpoint format"):
        load_pipeline(str(odd))


def test_missing_path_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelError) as caught:
        load_pipeline(str(tmp_path / "nowhere" / "model.safetensors"))
    assert "no such file or folder" in caught.value.message
    with pytest.raises(ModelError, match="a path always loads its own weights"):
        load_pipeline(str(tmp_path), "synthetic")


@pytest.mark.slow
def test_full_size_synthetic_sd15_builds_with_sane_values() -> None:
    """The real SD 1.5 architecture with random weights, materialized on CPU (~15 s, 2.5 GB)."""
    loaded = load_pipeline("sd15", "synthetic", dtype=torch.bfloat16)
    unet = loaded.pipeline.unet
    assert parameter_count(unet) == pytest.approx(859.5e6, rel=1e-3)
    assert all(torch.isfinite(p).all() and p.abs().max() < 10 for p in unet.parameters())
    assert loaded.pipeline.tokenizer.pad_token == "<|endoftext|>"
