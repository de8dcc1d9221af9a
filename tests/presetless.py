"""Tiny pipelines of families no preset names (QwenImage, FLUX.2 [klein]): the generic path's inputs.

Built from configs in code, seeded, saved as plain diffusers folders by the tests that use them
(``test_models_dit``: loading; ``test_engine_dit``: the engine, suites and FLOPs on the generic path).
The FLUX.2 text encoder has the 28 layers the pipeline reads hidden states from (9, 18, 27), so the
pipeline runs with its own defaults.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffprof.models.tokenizer import _bytes_to_unicode

NAMES = ("QwenImagePipeline", "Flux2KleinPipeline")


def byte_tokenizer():
    """A byte-level BPE tokenizer (no merges) with Qwen's chat tokens: what the Qwen text encoders read."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(BPE(vocab={c: i for i, c in enumerate(_bytes_to_unicode())}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                        additional_special_tokens=["<|im_start|>"], model_max_length=1024)
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return tokenizer


def qwenimage_pipeline():
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16,
                                              num_attention_heads=3, joint_attention_dim=16, guidance_embeds=False,
                                              axes_dims_rope=(8, 4, 4))
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
                                 latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=152064, vision_end_token_id=151653, vision_start_token_id=151652, vision_token_id=151654)
    return QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, transformer=transformer,
                             text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(), tokenizer=byte_tokenizer())


def flux2_klein_pipeline():
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                          num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=256,
                                          axes_dims_rope=[4, 4, 4, 4], guidance_embeds=False)
    config = Qwen3Config(intermediate_size=16, hidden_size=16, num_hidden_layers=28, num_attention_heads=2, num_key_value_heads=2,
                         vocab_size=512, max_position_embeddings=1024)  # the byte tokenizer's ids are < 300
    vae = AutoencoderKLFlux2(sample_size=32, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                             up_block_types=("UpDecoderBlock2D",), block_out_channels=(4,), layers_per_block=1,
                             latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False)
    return Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=Qwen3ForCausalLM(config).eval(),
                              tokenizer=byte_tokenizer(), transformer=transformer)


BUILDERS = {"QwenImagePipeline": qwenimage_pipeline, "Flux2KleinPipeline": flux2_klein_pipeline}


def save_presetless(root: Path) -> dict[str, Path]:
    """Both pipelines saved under ``root`` (one folder each, named by class)."""
    folders = {}
    for name, build in BUILDERS.items():
        build().save_pretrained(root / name)
        folders[name] = root / name
    return folders
