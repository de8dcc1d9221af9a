"""FLOPs of diffusion transformers on the meta device: joint attention over image + text tokens.

The meta-device count (FlopCounterMode) is checked against hand formulas (2 x MACs of every linear
layer, plus attention's QK^T and AV over image + text tokens) for one FLUX.1 double-stream block and
one single-stream block at full size, and for a whole (tiny) FLUX transformer; the family builders
are checked against the shapes the real pipelines pass (recorded by the engine's hooks).
"""

from __future__ import annotations

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock, FluxTransformerBlock

from diffprof.flops import count_flops, pipeline_flops, recorded_flops
from diffprof.models import get_preset
from diffprof.suites.measure import count_flops as measured_flops

META = torch.device("meta")
#: FLUX.1 at 1024 x 1024: 64 x 64 tokens of 2 x 2 latents, 512 T5 tokens, width 3072 (24 heads of 128).
D, HEADS, HEAD_DIM, N, T = 3072, 24, 128, 4096, 512


def double_block(b: int, n: int, t: int, d: int) -> int:
    """2 x MACs of a double-stream block: per stream Q, K, V, out (4 d^2 per token) and the 4x MLP
    (8 d^2), the two AdaLN-Zero modulations (d -> 6d on the conditioning vector), and attention
    QK^T + AV over all n + t tokens (2 x 2 (n+t)^2 d)."""
    return 2 * b * (12 * d * d * (n + t) + 2 * 6 * d * d) + 4 * b * (n + t) ** 2 * d


def single_block(b: int, n: int, t: int, d: int) -> int:
    """One stream over n + t tokens: Q, K, V (3 d^2), MLP in (4 d^2), the fused output projection of
    attention and MLP (5d -> d), AdaLN modulation (d -> 3d), attention over all tokens."""
    tokens = n + t
    return 2 * b * (12 * d * d * tokens + 3 * d * d) + 4 * b * tokens**2 * d


def _zeros(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, device=META)


def test_one_flux_double_block_counts_its_linears_and_joint_attention():
    with torch.device("meta"):
        block = FluxTransformerBlock(dim=D, num_attention_heads=HEADS, attention_head_dim=HEAD_DIM)
    flops = count_flops(block, hidden_states=_zeros(1, N, D), encoder_hidden_states=_zeros(1, T, D), temb=_zeros(1, D))
    assert flops == double_block(1, N, T, D)
    assert round(flops / 1e12, 2) == 1.30  # TFLOP per double block at 1024 x 1024


def test_one_flux_single_block_counts_its_linears_and_attention():
    with torch.device("meta"):
        block = FluxSingleTransformerBlock(dim=D, num_attention_heads=HEADS, attention_head_dim=HEAD_DIM)
    flops = count_flops(block, hidden_states=_zeros(2, N, D), encoder_hidden_states=_zeros(2, T, D), temb=_zeros(2, D))
    assert flops == single_block(2, N, T, D) == 2 * single_block(1, N, T, D)


def test_a_whole_flux_transformer_is_its_blocks_plus_its_embedders(dit_engine):
    """tiny-flux (1 double + 1 single block): the pipeline's count equals the formula at 64 px."""
    pipe = dit_engine("tiny-flux").base
    c = pipe.transformer.config
    d, n, t = c.num_attention_heads * c.attention_head_dim, (64 // 16) ** 2, 512
    embed = (c.in_channels * d * n + c.joint_attention_dim * d * t  # x_embedder, context_embedder
             + 2 * (256 * d + d * d) + c.pooled_projection_dim * d + d * d  # timestep + guidance embedders, pooled projection
             + d * 2 * d + d * c.in_channels * n)  # norm_out modulation, proj_out back to packed latents
    expected = c.num_layers * double_block(1, n, t, d) + c.num_single_layers * single_block(1, n, t, d) + 2 * embed
    assert pipeline_flops(pipe, width=64, height=64, batch=1, guidance=True).unet_per_eval == expected


@pytest.mark.parametrize("name", ["tiny-sd3", "tiny-flux", "tiny-pixart", "tiny-sana"])
@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_the_builders_feed_each_transformer_what_its_pipeline_does(dit_engine, name, guidance):
    """pipeline_flops builds inputs from the architecture (what estimate needs for sizes that never
    ran); the recorded count replays the shapes the real call passed: they must agree."""
    engine = dit_engine(name)
    result = engine.generate(guidance=guidance, steps=1, width=64, height=32)
    built = pipeline_flops(engine.base, width=64, height=32, batch=1, guidance=guidance > 1, sequence_lengths=get_preset(name).sequence_lengths)
    ran = recorded_flops(engine.base, result.inputs)
    assert built.unet_per_eval == ran.unet_per_eval > 0
    assert built.text_by == ran.text_by and built.text_encoder == ran.text_encoder > 0
    # the decoder module alone: the SD/SDXL VAE's post-quant 1x1 conv runs outside it
    assert ran.vae_decode == pytest.approx(built.vae_decode, rel=1e-3)


def test_sd3_joint_sequence_is_clip_then_t5_and_cfg_doubles_it(dit_engine):
    pipe = dit_engine("tiny-sd3").base
    one = pipeline_flops(pipe, width=64, height=64, batch=1, guidance=False)
    cfg = pipeline_flops(pipe, width=64, height=64, batch=1, guidance=True)
    longer = pipeline_flops(pipe, width=64, height=64, batch=1, guidance=False, sequence_lengths={"text_encoder_3": 512})
    assert cfg.unet_per_eval == 2 * one.unet_per_eval and cfg.text_encoder == 2 * one.text_encoder
    assert longer.unet_per_eval > one.unet_per_eval and longer.text_by["text_encoder_3"] > one.text_by["text_encoder_3"]
    assert longer.text_by["text_encoder"] == one.text_by["text_encoder"]  # CLIP stays at 77


def test_flux_distilled_guidance_costs_no_second_evaluation(dit_engine):
    pipe = dit_engine("tiny-flux").base
    assert pipeline_flops(pipe, width=64, height=64, batch=2, guidance=True) == pipeline_flops(pipe, width=64, height=64, batch=2, guidance=False)


# guidance 4: QwenImage's true CFG (an empty negative prompt) and FLUX.2 [klein]'s CFG each run two evaluations a step
@pytest.mark.parametrize("name, evals_per_step", [("QwenImagePipeline", 2), ("Flux2KleinPipeline", 2)])
def test_pipelines_no_builder_covers_are_counted_from_what_they_ran(dit_engine, presetless_folders, name, evals_per_step):
    engine = dit_engine(str(presetless_folders[name]))
    result = engine.generate(guidance=4.0, steps=2, width=32, height=32)
    per_call, per_step = measured_flops(engine, result, result.timing.denoiser_calls)
    breakdown = recorded_flops(engine.base, result.inputs)
    assert result.timing.denoiser_calls == 2 * evals_per_step
    assert per_step == evals_per_step * breakdown.unet_per_eval > 0  # MFU's numerator: a step's evaluations
    assert per_call == breakdown.text_encoder + 2 * evals_per_step * breakdown.unet_per_eval + breakdown.vae_decode


def test_measured_cells_of_a_transformer_count_from_the_architecture(dit_engine):
    engine = dit_engine("tiny-sd3")
    result = engine.generate(guidance=4.0, steps=2, width=64, height=64)
    per_call, per_step = measured_flops(engine, result, result.timing.denoiser_calls)
    built = pipeline_flops(engine.base, width=64, height=64, batch=1, guidance=True, sequence_lengths=get_preset("tiny-sd3").sequence_lengths)
    assert (per_call, per_step) == (built.per_call(2), built.unet_per_eval)


def test_cpu_flash_attention_is_counted():
    """On CPU tensors SDPA dispatches to _scaled_dot_product_flash_attention_for_cpu, which torch has
    no formula for; diffprof's (keyed by the op packet, as FlopCounterMode looks it up) counts it."""
    q = torch.zeros(1, 2, 16, 8)
    assert count_flops(torch.nn.functional.scaled_dot_product_attention, q, q, q) == 4 * 2 * 16 * 16 * 8


def test_an_autoencoder_not_called_vae_is_counted_and_switched():
    """Kandinsky 3's MoVQ is `movq`: FLOP replay, vae_slicing and compile=vae used to reach for `pipe.vae`
    (AttributeError: 'Kandinsky3Pipeline' object has no attribute 'vae'; FLOPs silently missing)."""
    from types import SimpleNamespace

    from diffusers import UNet2DModel, VQModel

    from diffprof.engine.apply import vae_switch
    from diffprof.engine.instrument import CallInputs, signature
    from diffprof.errors import ConfigError

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
    movq = VQModel(block_out_channels=(8,), norm_num_groups=8, latent_channels=3, num_vq_embeddings=16)
    pipe = SimpleNamespace(unet=unet, movq=movq, components={"unet": unet, "movq": movq})
    inputs = CallInputs()
    inputs.signatures = {"unet": [signature((torch.zeros(1, 3, 8, 8), 1), {})], "vae_decode": [signature((torch.zeros(1, 3, 8, 8),), {})]}
    breakdown = recorded_flops(pipe, inputs, "unet")
    assert breakdown.vae_decode > 0 and breakdown.unet_per_eval > 0
    with pytest.raises(ConfigError, match="VQModel has no slicing"):  # diffusers: NotImplementedError
        vae_switch("slicing")(SimpleNamespace(pipe=pipe))
    with pytest.raises(ConfigError, match="no autoencoder found\\) has no tiling"):
        vae_switch("tiling")(SimpleNamespace(pipe=SimpleNamespace(unet=unet, components={"unet": unet})))


def test_flops_that_cannot_be_counted_say_why_instead_of_vanishing():
    """Lumina 2's transformer reads its mask's values (.tolist()), which a meta or fake replay has not:
    the cell keeps no FLOPs (not zero) and a note says why."""
    from types import SimpleNamespace

    from diffprof.results import FLOPS_NOTE, MODEL_NOTES, NOTE_KEYS

    engine = SimpleNamespace(anatomy=SimpleNamespace(spec=None, pipeline_class="Lumina2Pipeline", denoiser="transformer"), base=None, preset=None)
    result = SimpleNamespace(settings={"task": "txt2img", "width": 32, "height": 32, "batch": 1, "guidance": 4.0}, inputs=None)
    why: list[str] = []
    assert measured_flops(engine, result, 2, why=why) == (None, None)
    assert why == ["ValueError: the call recorded no denoiser inputs (a graphed loop, or profiling switched off)"]
    assert FLOPS_NOTE in NOTE_KEYS and FLOPS_NOTE in MODEL_NOTES  # listed once per table, like the stand-in note
