"""`diffprof demo`: profile a small built-in torch workload and print the summary (no model needed)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from diffprof.cli.app import app, console
from diffprof.profiler import Profiler, get_exporter
from diffprof.profiler.exporters.console import summary_table


@app.command()
def demo(
    level: str = typer.Option("standard", help="Profiler level: off, minimal, standard or detailed."),
    steps: int = typer.Option(10, min=1, help="Denoising-like steps to run."),
    out: Path = typer.Option(Path("diffprof-demo"), help="Folder for profile.json and the Chrome trace."),
) -> None:
    """Profile a tiny denoising-shaped workload (conv + attention per step) and print the summary."""
    torch.manual_seed(0)
    profiler = Profiler(level)
    conv = torch.nn.Conv2d(4, 64, 3, padding=1)
    attn = torch.nn.MultiheadAttention(64, 4, batch_first=True)
    with torch.inference_mode(), profiler.profile_operation("diffusion_image_generation", "model_inference", steps=steps):
        with profiler.profile_operation("text_encoding", "model_inference"):
            cond = torch.randn(1, 77, 64) @ torch.randn(64, 64)
        latents = torch.randn(1, 4, 32, 32)
        for i in range(steps):
            with profiler.profile_operation("denoising_step", "model_inference", step=i):
                h = conv(latents).flatten(2).transpose(1, 2)
                h, _ = attn(h, cond, cond)
                latents = latents - 0.01 * h.mean(-1).reshape(1, 1, 32, 32)
        with profiler.profile_operation("vae_decode", "model_inference"):
            torch.nn.functional.interpolate(latents, scale_factor=8)
    profile = profiler.profile()
    console.print(summary_table(profile))
    out.mkdir(parents=True, exist_ok=True)
    get_exporter("json").write(profile, out / "profile.json")
    trace = get_exporter("chrome").write(profile, out / "profile.trace.json")
    console.print(f"wrote {out / 'profile.json'} and {trace} (open the trace in https://ui.perfetto.dev)")
