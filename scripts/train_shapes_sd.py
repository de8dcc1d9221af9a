"""Train ``shapes-sd``, the small SD-family text-to-image model diffprof ships, on CPU.

    python scripts/train_shapes_sd.py --stage all       # vae, then unet, then export (~80 min, 2 cores)
    python scripts/train_shapes_sd.py --stage vae       # AutoencoderKL alone
    python scripts/train_shapes_sd.py --stage unet      # UNet + CLIP text encoder jointly, VAE frozen
    python scripts/train_shapes_sd.py --stage export    # fp16 diffusers folder into the package

Why a model of our own: no pretrained Stable Diffusion can be downloaded on these machines, yet
quality numbers (adherence, convergence) are only meaningful on a model that has learned something.
``shapes-sd`` has the SD 1.5 component classes (``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel`` over the real 49,408-token CLIP tokenizer, SD 1.5's noise schedule), so it runs through
``StableDiffusionPipeline``, img2img/inpaint ``from_pipe``, every scheduler and optimization as SD 1.5
does, only small: a 3-level VAE (factor 4: 64 px -> 16x16x4 latents) and a ~4M-parameter UNet.

Data are the procedural scenes of :mod:`diffprof.quality.shapes`, generated fresh as training goes
(the seed of every batch is fixed by its step, so a run is reproducible). Training is standard:
DDPM epsilon prediction on SD's scaled-linear betas (1000 steps), min-SNR-5 loss weighting (converges
faster at this budget), a small noise offset (so the background colour is read from the prompt, not
from the mean of the starting noise), AdamW with warm-up and cosine decay, EMA weights, and the prompt
dropped to "" 10% of the time for classifier-free guidance.

Outputs: ``build/shapes-sd-train/`` (checkpoints, resumable), ``docs/shapes-sd/`` (per-stage CSV log,
``training.json`` summary, ``loss.png``) and ``src/diffprof/models/data/shapes-sd/`` (the shipped folder).
"""

from __future__ import annotations

import os

# Before torch starts OpenMP: idle threads sleep rather than spin, so 2 threads do not slow to a crawl
# while other processes share the 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import csv
import json
import math
import time
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from diffprof.models.tokenizer import clip_tokenizer
from diffprof.quality.shapes import dataset

ROOT = Path(__file__).resolve().parents[1]
WORKDIR = ROOT / "build" / "shapes-sd-train"
DOCS = ROOT / "docs" / "shapes-sd"
PACKAGE_DIR = ROOT / "src" / "diffprof" / "models" / "data" / "shapes-sd"

IMAGE_SIZE = 64

# --------------------------------------------------------------------------- architecture
#: 3 levels: VAE scale factor 4, so 64 px images are 16x16x4 latents.
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [16, 32, 64],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": IMAGE_SIZE,
    "scaling_factor": 1.0,  # measured after VAE training (latents ~unit std), as SD's 0.18215 was
    "force_upcast": False,
}

#: SD 1.5's layout at a fraction of the width: a plain block at 16x16, cross-attention at 8x8, 4x4 and mid.
UNET_CONFIG: dict[str, Any] = {
    "sample_size": IMAGE_SIZE // 4,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [64, 96, 96],
    "layers_per_block": 1,
    "attention_head_dim": 4,  # diffusers reads this as the number of heads (as SD 1.5's 8)
    "cross_attention_dim": 32,
    "norm_num_groups": 16,
    "act_fn": "silu",
}

#: CLIP text transformer over the real vocabulary; the 49,408 x 32 token embedding is most of its size.
TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49_408,
    "hidden_size": 32,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 32,
    "bos_token_id": 49_406,
    "eos_token_id": 49_407,
    "pad_token_id": 49_407,
}

#: Stable Diffusion 1.5's scheduler config (stable-diffusion-v1-5/scheduler/scheduler_config.json); training
#: uses the same betas through DDPMScheduler. The folder ships it as DDIM, not SD 1.5's PNDM: this model's
#: guided noise predictions are stiff, and PNDM's 4th-order multistep breaks down at 20 steps (47%
#: adherence at guidance 5-7.5, where DDIM keeps 99.7%; see docs/shapes-sd/README.md). Any scheduler
#: still swaps in with from_config.
SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
    "prediction_type": "epsilon",
}

# --------------------------------------------------------------------------- data seeds
#: Every training batch is ``dataset(n, seed=BASE + step)``; evaluation (benchmarks/shapes_adherence.py)
#: draws prompts and noise from seeds far below these ranges.
VAE_DATA_SEED = 2_000_000
UNET_DATA_SEED = 1_000_000
POOL_DATA_SEED = 3_000_000
SCALE_DATA_SEED = 4_000_000


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], as diffusers' VAEs expect."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def object_weight(x: torch.Tensor, boost: float) -> torch.Tensor:
    """Per-pixel loss weight ``1 + boost`` on and around the shape, 1 on the background.

    The shape covers 2-15% of the image but is what a prompt describes; unweighted, the VAE spends
    its early training on the background and leaves shape edges blurred (triangles turn into blobs).
    """
    border = torch.cat([x[:, :, :2].flatten(2), x[:, :, -2:].flatten(2), x[:, :, :, :2].flatten(2),
                        x[:, :, :, -2:].flatten(2)], dim=2)
    background = border.median(dim=2).values[:, :, None, None]
    on_shape = ((x - background).abs().amax(dim=1, keepdim=True) > 0.1).float()
    return 1.0 + boost * F.max_pool2d(on_shape, 5, stride=1, padding=2)


def lr_at(step: int, steps: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warm-up, then cosine decay to ``floor * peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


class Log:
    """A CSV per stage (step, losses, lr, seconds since the stage started) and a console line."""

    def __init__(self, path: Path, fields: list[str], resume: bool) -> None:
        self.path, self.fields = path, ["step", *fields, "lr", "seconds"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (resume and path.is_file()):
            with path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self.fields)

    def write(self, step: int, values: dict[str, float], lr: float, seconds: float) -> None:
        row = [step, *(f"{values[k]:.6f}" for k in self.fields[1:-2]), f"{lr:.3e}", f"{seconds:.1f}"]
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow(row)
        print(f"[{self.path.stem}] step {step:>5}  " + "  ".join(f"{k} {v:.4f}" for k, v in values.items())
              + f"  lr {lr:.2e}  {seconds:7.0f} s", flush=True)

    def rows(self) -> list[dict[str, float]]:
        with self.path.open() as handle:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def save_checkpoint(path: Path, **state: Any) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # never a half-written checkpoint


def update_summary(docs: Path, stage: str, info: dict[str, Any]) -> None:
    path = docs / "training.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary[stage] = info
    path.write_text(json.dumps(summary, indent=2) + "\n")


# --------------------------------------------------------------------------- stage 1: VAE
def train_vae(args: argparse.Namespace) -> None:
    """Reconstruction (L1 + MSE, weighted towards the shape) plus a very small KL.

    The KL keeps latents bounded; it is kept small because the posterior noise it buys blurs edges
    (at 1e-4 the decoder learned to draw triangles as blobs).
    """
    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    ckpt_path = args.workdir / "vae.pt"
    start, elapsed = 0, 0.0
    if args.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, weights_only=False)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        start, elapsed = state["step"], state["seconds"]
    log = Log(args.docs / "train_vae.csv", ["loss", "l1", "mse", "kl"], resume=args.resume and start > 0)
    vae.train()
    t0 = time.perf_counter() - elapsed
    window: dict[str, list[float]] = {k: [] for k in ("loss", "l1", "mse", "kl")}
    for step in range(start, args.vae_steps):
        lr = lr_at(step, args.vae_steps, args.vae_lr, warmup=100)
        for group in opt.param_groups:
            group["lr"] = lr
        images, _ = dataset(args.vae_batch, seed=VAE_DATA_SEED + step, size=IMAGE_SIZE)
        x = to_tensor(images)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        weight = object_weight(x, args.object_boost)
        weight = weight / weight.mean()
        l1, mse = (weight * (recon - x).abs()).mean(), (weight * (recon - x) ** 2).mean()
        kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element
        loss = l1 + mse + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        for k, v in (("loss", loss), ("l1", l1), ("mse", mse), ("kl", kl)):
            window[k].append(float(v.detach()))
        if (step + 1) % args.log_every == 0 or step + 1 == args.vae_steps:
            log.write(step + 1, {k: float(np.mean(v)) for k, v in window.items()}, lr, time.perf_counter() - t0)
            window = {k: [] for k in window}
        if (step + 1) % args.save_every == 0 or step + 1 == args.vae_steps:
            save_checkpoint(ckpt_path, model=vae.state_dict(), opt=opt.state_dict(), rng=torch.get_rng_state(),
                            step=step + 1, seconds=time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    final = log.rows()[-1]
    update_summary(args.docs, "vae", {
        "steps": args.vae_steps, "batch": args.vae_batch, "lr": args.vae_lr, "kl_weight": args.kl_weight,
        "object_boost": args.object_boost, "seconds": round(seconds, 1),
        "final": {k: final[k] for k in ("loss", "l1", "mse", "kl")},
    })
    plot_losses(args.docs)


def load_vae(workdir: Path = WORKDIR) -> AutoencoderKL:
    vae = AutoencoderKL(**VAE_CONFIG)
    vae.load_state_dict(torch.load(workdir / "vae.pt", weights_only=False)["model"])
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode(vae: AutoencoderKL, images: np.ndarray, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std (unscaled) of uint8 images."""
    means, stds = [], []
    for i in range(0, len(images), batch):
        dist = vae.encode(to_tensor(images[i : i + batch])).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def measure_scaling_factor(vae: AutoencoderKL, n: int = 2048) -> float:
    """1 / std of sampled latents over fresh scenes: SD's ``scaling_factor`` (unit-variance latents)."""
    images, _ = dataset(n, seed=SCALE_DATA_SEED, size=IMAGE_SIZE)
    mean, std = encode(vae, images)
    generator = torch.Generator().manual_seed(0)
    z = mean + std * torch.randn(mean.shape, generator=generator)
    return float(1.0 / z.std())


# --------------------------------------------------------------------------- stage 2: UNet + text encoder
class LatentPool:
    """A ring buffer of encoded scenes: each step adds ``fresh`` new ones and replays the rest.

    Encoding costs about as much as a UNet step, so each latent is used ~3 times before it leaves the
    pool; every batch still mixes in freshly generated scenes, and the stream never repeats a seed.
    """

    def __init__(self, vae: AutoencoderKL, size: int, scale: float) -> None:
        self.vae, self.scale = vae, scale
        images, prompts = dataset(size, seed=POOL_DATA_SEED, size=IMAGE_SIZE)
        self.mean, self.std = encode(vae, images)
        self.prompts = prompts
        self.cursor = 0

    def batch(self, step: int, fresh: int, replay: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        images, prompts = dataset(fresh, seed=UNET_DATA_SEED + step, size=IMAGE_SIZE)
        mean, std = encode(self.vae, images)
        idx = torch.randint(len(self.prompts), (replay,), generator=generator)
        means = torch.cat([mean, self.mean[idx]])
        stds = torch.cat([std, self.std[idx]])
        all_prompts = prompts + [self.prompts[int(i)] for i in idx]
        slots = [(self.cursor + k) % len(self.prompts) for k in range(fresh)]
        self.mean[slots], self.std[slots] = mean, std
        for slot, prompt in zip(slots, prompts):
            self.prompts[slot] = prompt
        self.cursor = (self.cursor + fresh) % len(self.prompts)
        z = means + stds * torch.randn(means.shape, generator=generator)  # a posterior sample, as SD trains
        return z * self.scale, all_prompts


class PromptIds:
    """Token ids per prompt, cached (the scene space has ~1,700 prompts)."""

    def __init__(self) -> None:
        self.tokenizer = clip_tokenizer()
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        for p in prompts:
            if p not in self.cache:
                self.cache[p] = self.tokenizer(p, padding="max_length", max_length=77, truncation=True,
                                               return_tensors="pt").input_ids[0]
        return torch.stack([self.cache[p] for p in prompts])


def make_text_encoder() -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)


def train_unet(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed + 1)
    vae = load_vae(args.workdir)
    scale = measure_scaling_factor(vae)
    print(f"VAE scaling_factor {scale:.5f}", flush=True)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    text_encoder = make_text_encoder()
    ema_unet, ema_text = deepcopy(unet).requires_grad_(False), deepcopy(text_encoder).requires_grad_(False)
    params = [*unet.parameters(), *text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.01)
    noise_scheduler = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items()
                                       if k not in ("set_alpha_to_one", "skip_prk_steps", "steps_offset")})
    alphas_cumprod = noise_scheduler.alphas_cumprod
    snr_all = alphas_cumprod / (1 - alphas_cumprod)
    ids_of = PromptIds()
    empty_ids = ids_of([""])
    generator = torch.Generator().manual_seed(args.seed + 2)
    ckpt_path = args.workdir / "unet.pt"
    start, elapsed = 0, 0.0
    state: dict[str, Any] | None = None
    if args.resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, weights_only=False)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_text.load_state_dict(state["ema_text"])
        opt.load_state_dict(state["opt"])
        generator.set_state(state["generator"])
        start, elapsed = state["step"], state["seconds"]
    pool = LatentPool(vae, args.pool, scale)
    if state is not None:  # the pool's contents at the checkpoint
        pool.mean, pool.std = state["pool_mean"], state["pool_std"]
        pool.prompts, pool.cursor = state["pool_prompts"], state["pool_cursor"]
    log = Log(args.docs / "train_unet.csv", ["loss", "mse"], resume=args.resume and start > 0)
    unet.train()
    text_encoder.train()
    t0 = time.perf_counter() - elapsed
    window: dict[str, list[float]] = {"loss": [], "mse": []}
    fresh = args.fresh
    for step in range(start, args.unet_steps):
        lr = lr_at(step, args.unet_steps, args.unet_lr, warmup=args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        # 1. Data: fresh + replayed latents; 10% of prompts dropped to "" (classifier-free guidance)
        latents, prompts = pool.batch(step, fresh, args.batch - fresh, generator)
        ids = ids_of(prompts)
        drop = torch.rand(len(prompts), generator=generator) < args.cfg_drop
        ids[drop] = empty_ids
        # 2. Forward diffusion (noise offset: per-channel constant shift of the noise)
        b = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator)
        noise += args.noise_offset * torch.randn((b, latents.shape[1], 1, 1), generator=generator)
        t = torch.randint(0, 1000, (b,), generator=generator)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        # 3. Predict epsilon; min-SNR-5 weighting
        context = text_encoder(ids).last_hidden_state
        pred = unet(noisy, t, context).sample
        per_sample = F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))
        snr = snr_all[t]
        weight = torch.clamp(snr, max=args.min_snr) / snr
        loss = (weight * per_sample).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text_encoder, decay)
        window["loss"].append(float(loss.detach()))
        window["mse"].append(float(per_sample.detach().mean()))
        if (step + 1) % args.log_every == 0 or step + 1 == args.unet_steps:
            log.write(step + 1, {k: float(np.mean(v)) for k, v in window.items()}, lr, time.perf_counter() - t0)
            window = {k: [] for k in window}
        if (step + 1) % args.save_every == 0 or step + 1 == args.unet_steps:
            save_checkpoint(ckpt_path, unet=unet.state_dict(), text=text_encoder.state_dict(),
                            ema_unet=ema_unet.state_dict(), ema_text=ema_text.state_dict(), opt=opt.state_dict(),
                            generator=generator.get_state(), step=step + 1, seconds=time.perf_counter() - t0,
                            scale=scale, pool_mean=pool.mean, pool_std=pool.std, pool_prompts=pool.prompts,
                            pool_cursor=pool.cursor)
    seconds = time.perf_counter() - t0
    final = log.rows()[-1]
    update_summary(args.docs, "unet", {
        "steps": args.unet_steps, "batch": args.batch, "fresh_per_step": fresh, "lr": args.unet_lr,
        "warmup": args.warmup, "ema": args.ema, "cfg_drop": args.cfg_drop, "min_snr": args.min_snr,
        "noise_offset": args.noise_offset, "pool": args.pool, "scaling_factor": round(scale, 5),
        "seconds": round(seconds, 1), "final": {k: final[k] for k in ("loss", "mse")},
    })
    plot_losses(args.docs)


# --------------------------------------------------------------------------- stage 3: export
def export(args: argparse.Namespace) -> None:
    """EMA weights in fp16 as a diffusers folder (``save_pretrained``), loadable in fp32."""
    out = args.out
    vae = load_vae(args.workdir)
    state = torch.load(args.workdir / "unet.pt", weights_only=False)
    vae.register_to_config(scaling_factor=round(float(state["scale"]), 5))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    unet.load_state_dict(state["ema_unet"])
    text_encoder = make_text_encoder()
    text_encoder.load_state_dict(state["ema_text"])
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(), unet=unet,
                                   scheduler=DDIMScheduler.from_config(SCHEDULER_CONFIG), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    for model in (vae, text_encoder, unet):
        torch.nn.Module.to(model, dtype=torch.float16)  # diffusers' .to() warns on every cast
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(out), safe_serialization=True)
    # transformers records the saved dtype; keep "auto" loads in fp32, the precision it was trained in.
    config_path = out / "text_encoder" / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "float32"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob("*.safetensors"))}
    print("exported", out, sizes, f"total {sum(sizes.values()) / 1e6:.2f} MB", flush=True)
    update_summary(args.docs, "export", {"weights_bytes": sizes, "total_bytes": sum(sizes.values()),
                              "parameters": {"unet": count(unet), "vae": count(vae),
                                             "text_encoder": count(text_encoder)}})


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- plot
def plot_losses(docs: Path) -> None:
    """``loss.png`` beside the logs: one panel per trained stage (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [(s, docs / f"train_{s}.csv") for s in ("vae", "unet")]
    stages = [(s, p) for s, p in stages if p.is_file()]
    if not stages:
        return
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 3.6), squeeze=False)
    for ax, (stage, path) in zip(axes[0], stages):
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        steps = [int(r["step"]) for r in rows]
        keys = ["loss", "l1", "mse"] if stage == "vae" else ["loss", "mse"]
        for key in keys:
            ax.plot(steps, [float(r[key]) for r in rows], label=key if key != "loss" else "loss (trained)")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        minutes = float(rows[-1]["seconds"]) / 60
        title = "VAE (L1 + MSE + KL)" if stage == "vae" else "UNet + text encoder (min-SNR-5 eps MSE)"
        ax.set_title(f"{title}, {minutes:.0f} min")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(docs / "loss.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description="Train shapes-sd on CPU (see the module docstring).")
    parser.add_argument("--stage", choices=["vae", "unet", "export", "all"], default="all")
    parser.add_argument("--resume", action="store_true", help="continue a stage from its checkpoint in build/")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="checkpoints (default build/shapes-sd-train)")
    parser.add_argument("--docs", type=Path, default=DOCS, help="logs and loss curve (default docs/shapes-sd)")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR,
                        help="exported diffusers folder (default: the package's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-6, help="weight of the per-element KL")
    parser.add_argument("--object-boost", type=float, default=4.0, help="extra loss weight on and around the shape")
    parser.add_argument("--unet-steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--fresh", type=int, default=16,
                        help="newly generated scenes per batch; the rest replay the pool")
    parser.add_argument("--pool", type=int, default=8192)
    parser.add_argument("--unet-lr", type=float, default=8e-4)
    parser.add_argument("--warmup", type=int, default=250)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--cfg-drop", type=float, default=0.1)
    parser.add_argument("--min-snr", type=float, default=5.0)
    parser.add_argument("--noise-offset", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.docs.mkdir(parents=True, exist_ok=True)
    if args.stage in ("vae", "all"):
        train_vae(args)
    if args.stage in ("unet", "all"):
        train_unet(args)
    if args.stage in ("export", "all"):
        export(args)


if __name__ == "__main__":
    main()
