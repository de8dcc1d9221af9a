"""Every switch a user can name: the registry's entries, in label order.

Each entry (:class:`~diffprof.engine.switch.Switch`) says what the switch sets, needs, conflicts with,
yields to and does to a pipeline (its steps, in :class:`~diffprof.engine.switch.Phase` order), and
whether ``fast`` holds it. The memory switches for big models (group and T5 offload, dropping T5,
int8 weights, float8 storage) are written in :mod:`diffprof.engine.memory_switches` and placed here
where their label part goes. Parsing, labels and validation over the registry are in
:mod:`diffprof.engine.switches`. Cheap to import: no torch or diffusers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from diffprof.engine import apply, weights
from diffprof.engine.apply import COMPILABLE
from diffprof.engine.memory_switches import (
    DROP_T5,
    GROUP_OFFLOAD,
    INT8_WEIGHTS,
    LAYERWISE_CASTING,
    NEEDS_TORCHAO,
    OFFLOAD,
    OFFLOAD_ON_CPU,
    OFFLOADS,
    T5_OFFLOAD,
    WEIGHTS,
)
from diffprof.engine.switch import (
    Group,
    Phase,
    Registry,
    Step,
    Switch,
    conflict,
    needs_capability,
    needs_compile,
    needs_cuda,
    needs_package,
)
from diffprof.errors import unknown_choice

Attention = Literal["sdpa", "xformers", "slicing", "eager"]
Offload = Literal["none", "model", "sequential", "group"]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

ATTENTION = Group("attention", lambda seen: f"choose one attention implementation, not {' and '.join(seen)}", "keep one attention switch")
OTHER_ATTENTION = ("eager_attention", "xformers", "attention_slicing")
def _sequential(opts: Any) -> bool:
    return bool(opts.offload == "sequential")


def _compile_modules(opts: Any, value: str) -> Mapping[str, Any]:
    modules = tuple(value.split("+")) if value else ("unet",)
    for m in modules:
        if m not in COMPILABLE:
            raise unknown_choice("module to compile", m, COMPILABLE)
    return {"compile": modules}


def _compile_mode(opts: Any, value: str) -> Mapping[str, Any]:
    if value not in COMPILE_MODES:
        raise unknown_choice("compile mode", value, COMPILE_MODES)
    return {"compile_mode": value, "compile": opts.compile or ("unet",)}


#: ``Switch.denoisers`` of the switches that reach only a UNet's attention processors.
UNET = ("unet",)



def _attention(name: str, kind: str, help: str, **kw: Any) -> Switch:
    return Switch(name, help, {"attention": kind}, group=ATTENTION, **kw)


def _step(phase: Phase, run: Any) -> tuple[Step, ...]:
    return (Step(phase, run),)


#: Every switch a user can name (besides the ``fast`` preset), in label order.
REGISTRY = Registry((
    Switch("none", "no optimization (SDPA attention, everything on the device)"),
    _attention("sdpa", "sdpa", "torch scaled_dot_product_attention (flash / memory-efficient kernels); the default"),
    _attention("eager_attention", "eager", "classic attention (explicit softmax(QK^T)V); the pre-PyTorch-2 baseline",
               apply=_step(Phase.ATTENTION, apply.eager_attention), denoisers=UNET),
    _attention("xformers", "xformers", "xformers memory-efficient attention (needs the xformers package and CUDA)",
               apply=_step(Phase.ATTENTION, lambda c: c.pipe.enable_xformers_memory_efficient_attention()),
               requires=(needs_package("xformers", "xformers attention needs the xformers package, which is not installed", "pip install xformers, or use sdpa"),
                         needs_cuda("xformers attention runs on CUDA only", "use sdpa on the CPU"))),
    _attention("attention_slicing", "slicing", "compute attention in slices: less peak memory, usually slower with SDPA (diffusers #4518)",
               apply=_step(Phase.ATTENTION, lambda c: c.pipe.enable_attention_slicing("auto")), denoisers=UNET),
    Switch("vae_slicing", "decode a batch one image at a time: lower VAE peak for batches", {"vae_slicing": True},
           apply=_step(Phase.VAE, apply.vae_switch("slicing"))),
    Switch("vae_tiling", "decode/encode in overlapping tiles: large images in bounded memory", {"vae_tiling": True},
           apply=_step(Phase.VAE, apply.vae_switch("tiling"))),
    # Under model offload, compile wraps the models *before* the offload hooks go on: wrapped after,
    # the hook's pre_forward (which accelerate marks torch.compiler.disable) sits inside the compiled
    # call and the UNet ran eagerly (SD 1.5, H200: 57 instead of 179 inductor kernels a call, 39 ms a
    # step against 28 ms for plain eager offload; benchmarks/gpu_offload_compile.py). Compiling is
    # lazy, so placement after it is fine.
    Switch("model_cpu_offload", "keep each model on the CPU until it runs (CUDA only): big memory saving, small slowdown",
           {"offload": "model"}, group=OFFLOAD, places=True,
           apply=_step(Phase.HOOKS, lambda c: c.pipe.enable_model_cpu_offload(device=c.device)),
           requires=(needs_cuda("model_cpu_offload needs a CUDA device: it moves weights between CPU and GPU memory", "drop the offload switch when running on the CPU"),)),
    Switch("sequential_cpu_offload", "stream every layer from the CPU (CUDA only): lowest memory, several times slower",
           {"offload": "sequential"}, group=OFFLOAD, places=True,
           apply=_step(Phase.PLACE, lambda c: c.pipe.enable_sequential_cpu_offload(device=c.device)),
           requires=(needs_cuda("sequential_cpu_offload needs a CUDA device: it moves weights between CPU and GPU memory", OFFLOAD_ON_CPU),)),
    GROUP_OFFLOAD, T5_OFFLOAD, DROP_T5,
    Switch("channels_last", "NHWC memory format for UNet and VAE convolutions", {"channels_last": True}, fast="channels_last",
           apply=_step(Phase.MEMORY_FORMAT, apply.channels_last)),
    Switch("fuse_qkv", "fuse the Q, K, V projections into one matmul (SDPA attention only; a transformer's image and text streams both); the "
           "unfused weights become views of the fused ones, no second copy (with CPU offload diffusers keeps both: +1.25 GiB on SDXL); "
           "save such a pipeline with Engine.save_pretrained",
           {"fuse_qkv": True}, fast="fuse_qkv",
           apply=(Step(Phase.FUSE, apply.fuse_qkv), Step(Phase.PLACED, apply.share_fused_weights_if_resident)),
           conflicts=(conflict(lambda o: o.attention != "sdpa", lambda o: f"fuse_qkv needs sdpa attention, not {o.attention}", "drop fuse_qkv or the attention switch"),),
           # offloaded, diffusers keeps the unfused weights beside the fused ones: SDXL with model offload peaked
           # 1.21 GiB higher with it at the same speed (H100; session5/8-h100-offload-elements-sdxl.txt)
           yields_to=(*OFFLOADS, *OTHER_ATTENTION)),
    Switch("compile", "torch.compile the denoiser, UNet or transformer (compile=unet+vae to choose modules, unet meaning the denoiser; "
           "compile_mode=... to choose the mode)",
           parse_value=_compile_modules, fast="compile=unet+vae", compiles=True,
           format_value=lambda o: None if not o.compile else "compile" if o.compile == ("unet",) else f"compile={'+'.join(o.compile)}",
           apply=_step(Phase.COMPILE, apply.compile_modules),
           conflicts=(conflict(_sequential, "compile cannot be combined with sequential_cpu_offload: its per-layer hooks move weights on every call",
                               "use model_cpu_offload with compile, or drop compile"),),
           yields_to=("sequential_cpu_offload",)),
    Switch("compile_mode", "torch.compile mode: " + ", ".join(COMPILE_MODES), listed_as="compile_mode=MODE",
           parse_value=_compile_mode, compiles=True,
           format_value=lambda o: f"compile_mode={o.compile_mode}" if o.compile and o.compile_mode != "default" else None,
           requires=(needs_cuda("compile_mode=reduce-overhead uses CUDA graphs and needs a CUDA device", "use compile_mode=default on the CPU",
                                when=lambda o: o.compile_mode == "reduce-overhead"),),
           yields_to=("sequential_cpu_offload",)),
    Switch("fast_loop", "run txt2img through diffprof's own copy of the pipeline's phases (same math, no per-step host work; SD, SDXL, SD3, FLUX)",
           {"fast_loop": True},
           yields_to=OFFLOADS),  # offload cells run the pipeline's own loop, the one measured with offload on GPUs
    Switch("cuda_graph", "capture the whole denoising loop in one CUDA graph (implies fast_loop; deterministic schedulers, flow-matching ones too)",
           {"cuda_graph": True}, implies=("fast_loop",), fast="cuda_graph",
           requires=(needs_cuda("cuda_graph (and the fast preset) needs a CUDA device", "on the CPU use fast_loop, fuse_qkv or channels_last"),),
           conflicts=(conflict(lambda o: o.offload != "none", "cuda_graph cannot be combined with CPU offload: a graph needs every weight resident on the GPU",
                               "drop cuda_graph (or fast), or the offload switch"),
                      conflict(lambda o: o.compile_mode == "reduce-overhead",
                               "cuda_graph already graphs the whole loop; compile_mode=reduce-overhead would nest graphs",
                               "use compile_mode=default or max-autotune-no-cudagraphs with cuda_graph")),
           yields_to=OFFLOADS),
    Switch("text_cache", "reuse the text encoders' embeddings when the same prompts, negative prompts and encoder settings come again "
           "(every family): a repeated prompt costs no text encoding; a changed one is encoded", {"text_cache": True}, fast="text_cache"),
    Switch("cudnn_benchmark", "let cuDNN time its convolution algorithms once per shape and keep the fastest", {"cudnn_benchmark": True},
           apply=_step(Phase.GLOBAL, apply.hold_cudnn_benchmark)),
    Switch("vae_bf16", "decode latents in bf16 (SDXL otherwise upcasts its fp16 VAE to fp32)", {"vae_bf16": True}, fast="vae_bf16",
           conflicts=(conflict(_sequential, "vae_bf16 cannot be combined with sequential_cpu_offload: it casts the VAE, whose weights that offload keeps off the GPU",
                               "drop vae_bf16, or use model_cpu_offload"),),
           yields_to=OFFLOADS),  # only diffprof's own loop reads it, and offload cells run the pipeline's
    # fp8 is in `fast` on transformers only: on SDXL (H100) it moved the latents 3.4e-2 and saved no time,
    # on FLUX it is flux-fast's largest lossy gain; `fast` holds it only where the GPU can run it.
    Switch("fp8", "float8 dynamic quantization of the denoiser's large linear layers (torchao; Ada/Hopper GPUs); part of fast on "
           "transformers where the GPU has float8 tensor cores", {"fp8": True}, group=WEIGHTS,
           apply=_step(Phase.QUANTIZE, weights.quantize_fp8), fast="fp8", fast_on=("transformer",), fast_where_supported=True,
           requires=(needs_cuda("fp8 needs a CUDA GPU with float8 tensor cores (Ada/Hopper)", "drop fp8 on the CPU"),
                     needs_package("torchao", "fp8 needs the torchao package, which is not installed", NEEDS_TORCHAO),
                     needs_capability((8, 9), "fp8 needs compute capability 8.9 or newer (Ada, Hopper)", "drop fp8 on this GPU"))),
    INT8_WEIGHTS, LAYERWISE_CASTING,
    Switch("kernel_tuning", "let inductor tune each kernel it generates (coordinate descent): compiles of many minutes "
           "(SD 1.5 and SDXL did not finish in 5-10 min on H100/H200), gain unmeasured", {"kernel_tuning": True},
           requires=(needs_compile("kernel_tuning"),), yields_to=("sequential_cpu_offload",)),
    # in `fast` on transformers: their steps are their repeated blocks' GEMMs, so compiling one block of each
    # kind costs a fraction of a whole compile (diffusers' regional compilation) for about the same loop
    Switch("compile_regions", "compile the denoiser block by block (a UNet's transformer and ResNet blocks, a diffusion transformer's "
           "repeated blocks) instead of whole: half the SDXL compile, ~5% slower there; part of fast on transformers",
           {"compile_regions": True}, fast="compile_regions", fast_on=("transformer",), requires=(needs_compile("compile_regions"),),
           yields_to=("sequential_cpu_offload",)),
))

#: What ``fast`` expands to when the model is not known: the entries every denoiser's ``fast`` holds;
#: each element stays switchable (the ablation suite removes one at a time), and a model's own
#: ``fast`` adds its denoiser's elements (:func:`expand_fast`; fp8 on transformers, where the device
#: runs it). cudnn_benchmark is left out: no measurable gain once the loop is graphed (H200), and its
#: algorithm choice can differ from process to process. fp8 is left out on UNets: on SDXL (H100) it
#: moved the final latents 3.4e-2 from eager fp16 (the limit is 2e-2) and saved no time.
#: compile_regions is left out on UNets: it halves the SDXL compile (warm start 10 s instead of 22 s)
#: but costs 5% per image on SDXL and 18% on SD 1.5 (H100); on transformers it is in. kernel_tuning
#: did not finish compiling SD 1.5 in ~330 s (docs/benchmarks.md).
FAST_PRESET: tuple[str, ...] = REGISTRY.fast
