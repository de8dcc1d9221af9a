"""Diffusion-transformer families (SD3, FLUX, PixArt-Sigma, SANA) and pipelines no preset names.

Full-size architectures are counted on the meta device; tiny variants run on one CPU thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (
    DiffusionPipeline,
    FluxImg2ImgPipeline,
    FluxInpaintPipeline,
    FluxPipeline,
    PixArtSigmaPipeline,
    SanaPipeline,
    StableDiffusion3Img2ImgPipeline,
    StableDiffusion3InpaintPipeline,
    StableDiffusion3Pipeline,
)
from diffusers.loaders.single_file_utils import (
    convert_flux_transformer_checkpoint_to_diffusers,
    convert_sd3_transformer_checkpoint_to_diffusers,
)
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from diffprof.errors import ModelError
from diffprof.models import (
    FAMILIES,
    PRESETS,
    build_models,
    build_tiny,
    for_task,
    get_preset,
    load_pipeline,
    parameter_count,
    save_single_file,
    stored_count,
)
from diffprof.models.dit_single_file import flux_transformer_entries, match_preset, sd3_transformer_entries
from diffprof.models.materialize import materialize
from diffprof.models.pipelines import weightless_components
from diffprof.models.stand_ins import stand_in_note

PROMPT = "a photo of a cat"
DIT_PRESETS = [name for name, p in PRESETS.items() if p.denoiser == "transformer"]
TINY = {"tiny-sd3": StableDiffusion3Pipeline, "tiny-flux": FluxPipeline, "tiny-pixart": PixArtSigmaPipeline,
        "tiny-sana": SanaPipeline}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(pipeline, family: str | None = None, output_type: str = "np", **kwargs):
    """One 64 px, 2-step call through the pipeline's own ``__call__`` with the family's call options."""
    pipeline.set_progress_bar_config(disable=True)
    options = dict(FAMILIES[family].call_options) if family else {}
    kwargs = {"height": 64, "width": 64, **options, **kwargs}
    return pipeline(prompt=PROMPT, num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(0),
                    output_type=output_type, **kwargs).images


def weights_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def inputs() -> dict[str, Image.Image]:
    pixels = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    return {"image": Image.fromarray(pixels), "mask_image": Image.fromarray(mask)}


# --- the family registry and the presets ---------------------------------------------------------------


@pytest.mark.parametrize("name", DIT_PRESETS)
def test_preset_agrees_with_its_family_and_configs(name: str) -> None:
    preset = get_preset(name)
    spec, index = preset.spec, preset.model_index()
    assert index["_class_name"] == spec.pipelines["txt2img"]
    assert {c for c, v in index.items() if isinstance(v, list) and v[0] and not c.startswith(("tokenizer", "scheduler"))} \
        == set(spec.components)
    assert {c for c in index if c.startswith("tokenizer")} == set(spec.tokenizers)
    assert (preset.hub_id is None) == preset.builtin and preset.denoiser == "transformer"
    # latent size x VAE factor = native size (FLUX's config has no sample_size: its pipeline defaults to 128 latents)
    transformer, vae = preset.component_config("transformer"), preset.component_config("vae")
    levels = len(vae.get("block_out_channels") or vae["encoder_block_out_channels"]) - 1
    sample = transformer.get("sample_size", 128 if preset.family == "flux" and not preset.builtin else 8)
    assert sample * 2**levels == preset.native_size
    scheduler = preset.component_config("scheduler")
    flow = scheduler["_class_name"].startswith("FlowMatch") or scheduler.get("prediction_type") == "flow_prediction"
    assert flow == spec.flow_matching == (preset.prediction_type == "flow_prediction")


def test_model_card_defaults_and_guidance_cost() -> None:
    assert (get_preset("flux-dev").default_steps, get_preset("flux-dev").default_guidance) == (28, 3.5)
    assert (get_preset("flux-schnell").default_steps, get_preset("flux-schnell").default_guidance) == (4, 0.0)
    assert (get_preset("sd35-large").default_steps, get_preset("sd35-large").default_guidance) == (28, 3.5)
    assert (get_preset("sd35-medium").default_steps, get_preset("sd35-medium").default_guidance) == (40, 4.5)
    assert get_preset("sd15").default_steps == 50  # SD presets keep the pipeline's defaults
    # CFG doubles the denoiser batch above scale 1; FLUX's distilled guidance is an input of one evaluation
    assert FAMILIES["sd3"].denoiser_evaluations(3.5) == 2 and FAMILIES["sd3"].denoiser_evaluations(1.0) == 1
    assert FAMILIES["flux"].denoiser_evaluations(3.5) == 1
    assert get_preset("flux-dev").token_pixels == get_preset("sd35-large").token_pixels == 16
    assert get_preset("sana").token_pixels == 32 and get_preset("pixart-sigma").token_pixels == 16


def test_real_sequence_lengths_per_preset() -> None:
    assert get_preset("flux-dev").sequence_lengths == {"text_encoder": 77, "text_encoder_2": 512}
    assert get_preset("flux-schnell").sequence_lengths == {"text_encoder": 77, "text_encoder_2": 256}
    assert get_preset("sd35-large").sequence_lengths == {"text_encoder": 77, "text_encoder_2": 77, "text_encoder_3": 256}
    assert get_preset("pixart-sigma").sequence_lengths == {"text_encoder": 300}
    assert get_preset("sana").sequence_lengths == {"text_encoder": 300}


# Published figures (docs/models.md has each source) and how finely each was published.
PUBLISHED = [
    ("flux-dev", "transformer", parameter_count, 11.9e9, 0.05e9),
    ("flux-dev", "text_encoder_2", parameter_count, 4.762e9, 0.0005e9),  # T5-XXL encoder
    ("flux-dev", "text_encoder", parameter_count, 123.06e6, 0.005e6),  # CLIP ViT-L/14 text
    ("flux-dev", "vae", parameter_count, 83.8e6, 0.05e6),
    ("flux-schnell", "transformer", parameter_count, 11.9e9, 0.05e9),
    ("sd35-large", "transformer", stored_count, 8.1e9, 0.05e9),
    ("sd35-large", "text_encoder_2", parameter_count, 694.66e6, 0.005e6),  # OpenCLIP bigG text + projection
    ("sd35-medium", "transformer", stored_count, 2.5e9, 0.05e9),  # with its 227M-entry positional table
    ("sd35-medium", "text_encoder", parameter_count, 123.65e6, 0.005e6),  # CLIP-L + 768x768 projection
    ("pixart-sigma", "transformer", parameter_count, 0.6e9, 0.05e9),
    ("pixart-sigma", "vae", parameter_count, 83.65e6, 0.005e6),  # the SDXL VAE
    ("sana", "transformer", parameter_count, 1.6e9, 0.05e9),
    ("sana", "text_encoder", parameter_count, 2.614e9, 0.0005e9),  # Gemma-2 2B
]


@pytest.fixture(scope="module")
def meta_models():
    cache: dict[str, dict[str, torch.nn.Module]] = {}

    def get(name: str) -> dict[str, torch.nn.Module]:
        if name not in cache:
            cache[name] = build_models(get_preset(name), device="meta")
        return cache[name]
    return get


@pytest.mark.parametrize(("name", "component", "count", "published", "rounding"), PUBLISHED)
def test_full_size_counts_equal_the_published_ones(meta_models, name, component, count, published, rounding) -> None:
    assert abs(count(meta_models(name)[component]) - published) <= rounding


def test_counts_that_tell_the_variants_apart(meta_models) -> None:
    # schnell has no guidance embedder: 2 Linear layers of 256->3072 and 3072->3072
    assert parameter_count(meta_models("flux-dev")["transformer"]) - parameter_count(meta_models("flux-schnell")["transformer"]) \
        == 256 * 3072 + 3072 + 3072 * 3072 + 3072
    # SD 3.5's positional table is a buffer: 384^2 x 1536 (Medium), 192^2 x 2432 (Large)
    for name, size, width in (("sd35-medium", 384, 1536), ("sd35-large", 192, 2432)):
        transformer = meta_models(name)["transformer"]
        assert stored_count(transformer) - parameter_count(transformer) == size**2 * width
    t5 = meta_models("pixart-sigma")["text_encoder"]
    assert t5.shared.weight is t5.encoder.embed_tokens.weight  # one table, as the real model (4.76B, not 4.89B)


# --- tokenizers: real CLIP, stand-ins for T5 and Gemma ------------------------------------------------


@pytest.mark.parametrize("name", [n for n in DIT_PRESETS if not PRESETS[n].builtin])
def test_tokenizers_give_the_real_sequence_lengths_and_say_which_are_stand_ins(name: str) -> None:
    preset = get_preset(name)
    parts = weightless_components(preset)
    for encoder in preset.spec.text_encoders:
        tokenizer, length = parts[encoder.tokenizer], preset.sequence_lengths[encoder.component]
        ids = tokenizer(PROMPT, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
        assert ids.shape == (1, length)
        vocab = preset.component_config(encoder.component)["vocab_size"]
        assert int(ids.max()) < vocab and tokenizer.pad_token_id == (0 if encoder.kind != "clip-l" and encoder.kind != "clip-g" else tokenizer.pad_token_id)
        note = stand_in_note(tokenizer)
        assert (note is not None) == (encoder.kind in ("t5-xxl", "gemma-2-2b"))
        if note:
            assert note.startswith(encoder.kind) and "stands in" in note


def test_stand_ins_keep_the_real_special_tokens() -> None:
    t5 = weightless_components(get_preset("flux-dev"))["tokenizer_2"]
    gemma = weightless_components(get_preset("sana"))["tokenizer"]
    assert len(t5) == 32_100 and (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id) == (0, 1, 2)
    assert t5(PROMPT).input_ids[-1] == 1 and t5.convert_tokens_to_ids("<extra_id_0>") == 32_099
    assert (gemma.pad_token_id, gemma.eos_token_id, gemma.bos_token_id) == (0, 1, 2) and gemma(PROMPT).input_ids[0] == 2
    # English splits into about a token per word, as the real vocabularies do
    assert len(t5(PROMPT).input_ids) == 6 and t5.convert_ids_to_tokens(t5(PROMPT).input_ids)[1] == "\u2581photo"


# --- tiny variants: build, call, save and reload -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return {name: build_tiny(name) for name in TINY}


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_runs_through_its_pipeline_class_and_reloads_bit_identically(tiny, tmp_path, name: str) -> None:
    pipeline, family = tiny[name], get_preset(name).family
    assert type(pipeline) is TINY[name]
    out = run(pipeline, family)
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all() and out.std() > 0
    folder = materialize(name, tmp_path / name)
    plain = DiffusionPipeline.from_pretrained(folder)  # plain diffusers, no diffprof code
    assert type(plain) is TINY[name]
    for component in FAMILIES[family].components:
        assert weights_equal(getattr(plain, component), getattr(pipeline, component)), component
    # Same weights, same image: exact for all but FLUX, whose CPU matmuls on memory-mapped (differently
    # aligned) tensors round differently (~4e-7; bit-identical once the tensors are copied)
    assert np.allclose(run(plain, family), out, atol=1e-5, rtol=0)
    loaded = load_pipeline(folder)
    assert loaded.family == family and loaded.preset is None and loaded.source == f"local:{folder}"
    assert set(loaded.stand_ins) == {t.tokenizer for t in FAMILIES[family].text_encoders if t.kind not in ("clip-l", "clip-g")}
    assert len(loaded.files) == len(FAMILIES[family].components) and loaded.bytes_read > 0


def test_builtin_and_synthetic_sources_report_stand_ins(tiny) -> None:
    loaded = load_pipeline("tiny-flux")
    assert loaded.source == "builtin:tiny-flux" and loaded.stand_in and list(loaded.stand_ins) == ["tokenizer_2"]
    assert loaded.denoiser == "transformer" and loaded.text_encoders == ("text_encoder", "text_encoder_2")
    assert weights_equal(loaded.pipeline.transformer, tiny["tiny-flux"].transformer)
    synthetic = load_pipeline("tiny-sd3", "synthetic", seed=3, dtype=torch.bfloat16)
    assert synthetic.source == "synthetic:tiny-sd3" and synthetic.stand_ins.keys() == {"tokenizer_3"}
    assert {p.dtype for p in synthetic.pipeline.transformer.parameters()} == {torch.bfloat16}


def test_tiny_pipelines_see_the_real_sequence_lengths(tiny) -> None:
    flux = tiny["tiny-flux"].encode_prompt(PROMPT, None)
    assert flux[0].shape[1] == 512 and flux[1].shape == (1, 32)  # T5 tokens; CLIP-L pooled
    sd3 = tiny["tiny-sd3"].encode_prompt(PROMPT, None, None, do_classifier_free_guidance=False)
    assert sd3[0].shape[1] == 77 + 256  # CLIP-L/G hidden states then T5, one sequence
    pixart = tiny["tiny-pixart"].encode_prompt(PROMPT, do_classifier_free_guidance=False, clean_caption=False)
    assert pixart[0].shape[1] == 300
    sana = tiny["tiny-sana"].encode_prompt(PROMPT, do_classifier_free_guidance=False)
    assert sana[0].shape[1] == 300  # the last 299 of instruction + prompt, after <bos>


@pytest.mark.parametrize(("name", "img2img", "inpaint"), [("tiny-flux", FluxImg2ImgPipeline, FluxInpaintPipeline),
                                                          ("tiny-sd3", StableDiffusion3Img2ImgPipeline, StableDiffusion3InpaintPipeline)])
def test_img2img_and_inpaint_use_the_text_to_image_transformer(tiny, name, img2img, inpaint) -> None:
    base, family = tiny[name], get_preset(name).family
    derived = for_task(base, family, "img2img")
    assert type(derived) is img2img and derived.transformer is base.transformer
    assert run(derived, family, image=inputs()["image"], strength=0.75).shape == (1, 64, 64, 3)
    derived = for_task(base, family, "inpaint")
    assert type(derived) is inpaint
    assert run(derived, family, **inputs(), strength=0.75).shape == (1, 64, 64, 3)


def test_tasks_the_family_lacks_and_nine_channel_requests_are_refused(tiny) -> None:
    with pytest.raises(ModelError, match="no inpaint pipeline"):
        for_task(tiny["tiny-pixart"], "pixart", "inpaint")
    with pytest.raises(ModelError, match="inpaint with their text-to-image denoiser"):
        load_pipeline("tiny-flux", inpaint=True)


# --- weight sources: Hub cache, single files -----------------------------------------------------------

def test_hub_honours_offline_mode_and_the_local_cache(tmp_path, monkeypatch) -> None:
    """In process, with huggingface_hub's offline constant and cache set as HF_HUB_OFFLINE=1 and
    HF_HOME set them at import (tests/test_models.py proves the variables in a fresh process): FLUX.1-dev
    uncached is one ModelError offering the alternatives; a cached FLUX.1-schnell loads as the preset."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError) as refused:
        load_pipeline("flux-dev", "hub")
    error = str(refused.value)
    assert "black-forest-labs/FLUX.1-dev" in error and "not in the local Hugging Face cache" in error and "--weights synthetic" in error
    repo = tmp_path / "hub" / "models--black-forest-labs--FLUX.1-schnell"  # the cache layout, with no network
    materialize("tiny-flux", repo / "snapshots" / ("0" * 40), seed=9)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    loaded = load_pipeline("flux-schnell", "hub")
    assert (loaded.source, loaded.preset.name, loaded.family, type(loaded.pipeline).__name__) == (
        "hub:black-forest-labs/FLUX.1-schnell", "flux-schnell", "flux", "FluxPipeline")
    assert len(loaded.files) == 4 and sorted(loaded.stand_ins) == ["tokenizer_2"]


def test_sd3_single_file_round_trip(tiny, tmp_path) -> None:
    pipeline = tiny["tiny-sd3"]
    path = save_single_file(pipeline, tmp_path / "sd3.safetensors")
    loaded = load_pipeline(str(path))
    assert loaded.source == f"single-file:{path}" and loaded.preset is get_preset("tiny-sd3")
    assert type(loaded.pipeline) is StableDiffusion3Pipeline and loaded.bytes_read == path.stat().st_size
    for part in ("transformer", "vae", "text_encoder_2", "text_encoder_3"):
        assert weights_equal(getattr(loaded.pipeline, part), getattr(pipeline, part)), part
    # the SD3 layout has no CLIP-L text projection: diffusers makes it the identity, as the original code
    clip = loaded.pipeline.text_encoder
    assert torch.equal(clip.text_projection.weight, torch.eye(clip.config.hidden_size))
    original = build_tiny("tiny-sd3")
    with torch.no_grad():
        original.text_encoder.text_projection.weight.copy_(torch.eye(clip.config.hidden_size))
    assert weights_equal(clip, original.text_encoder)
    assert np.allclose(run(loaded.pipeline, "sd3"), run(original, "sd3"), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["sd35-medium", "sd35-large", "flux-dev", "flux-schnell"])
def test_full_size_single_file_layout_is_what_diffusers_reads(meta_models, name: str) -> None:
    """Our original-layout names convert back, through diffusers' own code, to every transformer tensor."""
    transformer = meta_models(name)["transformer"]
    family = get_preset(name).family
    entries = (sd3_transformer_entries if family == "sd3" else flux_transformer_entries)(transformer)
    checkpoint = {"model.diffusion_model." + k: v for k, v in entries.items()}
    assert match_preset({k: tuple(v.shape) for k, v in checkpoint.items()}) == (family, get_preset(name))
    convert = convert_sd3_transformer_checkpoint_to_diffusers if family == "sd3" else convert_flux_transformer_checkpoint_to_diffusers
    converted = convert(dict(checkpoint))
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in transformer.state_dict().items()}
    # names diffusers itself uses to recognize real SD 3.5 and FLUX.1 files
    markers = {"sd3": "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias",
               "flux": "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale"}
    assert markers[family] in checkpoint
    assert ("model.diffusion_model.guidance_in.in_layer.weight" in checkpoint) == (name == "flux-dev")


def test_single_files_diffusers_cannot_read_are_clear_errors(tiny, tmp_path) -> None:
    flux = save_single_file(tiny["tiny-flux"], tmp_path / "flux.safetensors")
    with pytest.raises(ModelError, match="width 3072") as caught:
        load_pipeline(str(flux))
    assert "diffusers folder" in caught.value.hint
    only = tmp_path / "transformer-only.safetensors"
    entries = sd3_transformer_entries(tiny["tiny-sd3"].transformer)
    save_file({"model.diffusion_model." + k: v.contiguous() for k, v in entries.items()}, str(only))
    with pytest.raises(ModelError, match="not its vae, text_encoder, text_encoder_2, text_encoder_3"):
        load_pipeline(str(only))
    from diffprof.errors import InputError
    with pytest.raises(InputError, match="no original single-file layout"):
        save_single_file(tiny["tiny-pixart"], tmp_path / "pixart.safetensors")


# --- pipelines no preset names: QwenImage and FLUX.2 [klein], as plain diffusers folders -------------
# (built once per session by conftest's presetless_folders, from tests/presetless.py)


@pytest.mark.parametrize("name", ["QwenImagePipeline", "Flux2KleinPipeline"])
def test_pipelines_without_a_preset_load_from_folders_and_run(presetless_folders, name: str) -> None:
    folder = presetless_folders[name]
    plain = DiffusionPipeline.from_pretrained(folder)
    assert type(plain).__name__ == name
    kwargs = {"max_sequence_length": 64, "height": 32, "width": 32}
    first = run(plain, **kwargs)
    assert first.shape == (1, 32, 32, 3) and np.isfinite(first).all()
    loaded = load_pipeline(folder)
    assert loaded.family == "generic" and loaded.spec is None and loaded.preset is None
    assert type(loaded.pipeline).__name__ == name and loaded.denoiser == "transformer"
    assert loaded.text_encoders == ("text_encoder",) and loaded.stand_ins == {} and len(loaded.files) == 3
    assert np.allclose(run(loaded.pipeline, **kwargs), first, atol=1e-5, rtol=0)


def test_unknown_pipeline_classes_are_refused(tmp_path) -> None:
    (tmp_path / "model_index.json").write_text('{"_class_name": "NoSuchPipeline", "transformer": ["diffusers", "X"]}')
    with pytest.raises(ModelError, match="NoSuchPipeline, which diffusers"):
        load_pipeline(str(tmp_path))


def test_models_command_lists_the_new_presets() -> None:
    from diffprof.cli.app import app
    from diffprof.cli import commands  # noqa: F401  (registers the command groups)

    done = CliRunner().invoke(app, ["models"], terminal_width=240)
    assert done.exit_code == 0, done.output
    for name in DIT_PRESETS:
        assert name in done.output
    assert "FLUX.1-dev" in done.output and "flux" in done.output and "sana" in done.output


def test_unprefixed_flux_files_are_recognized(meta_models) -> None:
    """Black Forest Labs' own files carry no ``model.diffusion_model.`` prefix."""
    entries = flux_transformer_entries(meta_models("flux-schnell")["transformer"])
    assert match_preset({k: tuple(v.shape) for k, v in entries.items()}) == ("flux", get_preset("flux-schnell"))
