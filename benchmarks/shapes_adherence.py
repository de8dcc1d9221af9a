"""Prompt adherence of ``shapes-sd``, and how fast its solvers converge.

    python benchmarks/shapes_adherence.py                                  # the model card's number (DDIM, 20, 7.5)
    python benchmarks/shapes_adherence.py --samples docs/shapes-sd/samples.png
    python benchmarks/shapes_adherence.py --scheduler pndm --steps 50      # the "default diffusers setup"
    python benchmarks/shapes_adherence.py --grid pndm:50,dpmpp_2m:20,dpmpp_2m:10,unipc:10
    python benchmarks/shapes_adherence.py --convergence --n 24             # PSNR vs steps per solver

Adherence: ``--n`` random scene prompts (drawn from ``--prompt-seed``) are generated with noise
seeds ``--seed``, ``--seed + 1`` ...; both lie far below the seeds training used (>= 1,000,000, see
``scripts/train_shapes_sd.py``). Each image is read back by :mod:`diffprof.quality.detector`; the
table gives per-attribute accuracy, the fraction with all five right, mean adherence, and UNet
evaluations and wall seconds per image (1 thread, CPU; for relative cost only).

Convergence: for each scheduler and step count, the mean PSNR of the decoded image against a
``--reference-steps`` solve of the same seed and prompt (DPM-Solver++ 2M: every deterministic solver
approaches the same probability-flow ODE solution), and the fewest steps at which each solver reaches
``--psnr-target`` dB.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import diffusers
import numpy as np
import torch

from diffprof.engine.schedulers import DEFAULT, make_scheduler, model_evals
from diffprof.models.sources import load_pipeline
from diffprof.quality.detector import attribute_accuracy
from diffprof.quality.metrics import psnr
from diffprof.quality.shapes import ATTRIBUTES, prompt_for, random_scene

#: The settings the adherence claim is made at: diffprof's defaults (the model's own scheduler, DDIM).
DEFAULT_SCHEDULER = DEFAULT
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 7.5
DEFAULT_N = 200
PROMPT_SEED = 7
SIZE = 64
CONVERGENCE_SCHEDULERS = ("ddim", "euler", "pndm", "dpmpp_2m", "unipc")
CONVERGENCE_STEPS = (5, 8, 10, 15, 20, 30, 50)


@dataclass
class Setting:
    scheduler: str
    steps: int
    guidance: float

    @property
    def label(self) -> str:
        return f"{self.scheduler}:{self.steps} g{self.guidance:g}"


@dataclass
class Model:
    """A loaded pipeline and the scheduler config it shipped with (every scheduler is built from it)."""

    pipe: Any
    scheduler_config: dict[str, Any]
    batch: int = 25

    @classmethod
    def load(cls, name: str, batch: int) -> Model:
        pipe = load_pipeline(name).pipeline
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, dict(pipe.scheduler.config), batch)

    def scheduler(self, name: str) -> Any:
        """``name`` from the shipped config; ``default`` is the shipped scheduler itself."""
        if name == DEFAULT:
            return getattr(diffusers, self.scheduler_config["_class_name"]).from_config(self.scheduler_config)
        return make_scheduler(name, self.scheduler_config)

    def generate(self, prompts: list[str], seeds: list[int], setting: Setting) -> tuple[np.ndarray, float]:
        """uint8 NHWC images, one per (prompt, seed), and the wall seconds they took."""
        self.pipe.scheduler = self.scheduler(setting.scheduler)
        out = []
        start = time.perf_counter()
        for i in range(0, len(prompts), self.batch):
            generators = [torch.Generator().manual_seed(s) for s in seeds[i : i + self.batch]]
            with torch.inference_mode():
                images = self.pipe(prompt=prompts[i : i + self.batch], num_inference_steps=setting.steps,
                                   guidance_scale=setting.guidance, generator=generators, height=SIZE, width=SIZE,
                                   output_type="np").images
            out.append(np.clip(np.rint(images * 255), 0, 255).astype(np.uint8))
        return np.concatenate(out), time.perf_counter() - start


def eval_prompts(n: int, prompt_seed: int = PROMPT_SEED) -> list[str]:
    rng = np.random.default_rng(prompt_seed)
    return [prompt_for(random_scene(rng)) for _ in range(n)]


def save_grid(images: np.ndarray, path: str, columns: int = 8, scale: int = 2) -> None:
    """The first rows of ``images`` as one PNG (nearest-neighbour upscaled, so pixels stay visible)."""
    from PIL import Image

    rows = max(1, min(4, len(images) // columns))
    grid = np.concatenate([np.concatenate(list(images[r * columns : (r + 1) * columns]), axis=1) for r in range(rows)])
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)


def adherence_table(model: Model, settings: list[Setting], n: int, seed: int, prompt_seed: int,
                    samples: str | None = None) -> None:
    prompts = eval_prompts(n, prompt_seed)
    seeds = list(range(seed, seed + n))
    columns = [*ATTRIBUTES, "all", "adherence"]
    shipped = model.scheduler_config["_class_name"]
    print(f"shapes-sd adherence: {n} prompts (prompt seed {prompt_seed}), noise seeds {seed}..{seed + n - 1}, "
          f"{SIZE} px, "
          f"fp32; default = shipped {shipped}")
    print(f"{'setting':<20}" + "".join(f"{c:>11}" for c in columns) + f"{'UNet evals':>11}{'s/image':>9}")
    for setting in settings:
        images, seconds = model.generate(prompts, seeds, setting)
        acc = attribute_accuracy(images, prompts)
        if samples and setting is settings[0]:
            save_grid(images, samples)
        evals = model_evals(setting.scheduler, setting.steps, model.scheduler_config)
        print(f"{setting.label:<20}" + "".join(f"{acc[c]:>11.1%}" for c in columns) + f"{evals:>11}{seconds / n:>9.3f}",
              flush=True)


def convergence_table(model: Model, n: int, seed: int, prompt_seed: int, guidance: float, reference_steps: int,
                      target: float) -> None:
    """PSNR vs steps per scheduler against one reference; ``limit`` is each scheduler's own
    ``reference_steps`` solve against it (high: the solvers converge to the same image)."""
    prompts = eval_prompts(n, prompt_seed)
    seeds = list(range(seed, seed + n))

    def mean_psnr(setting: Setting) -> float:
        images, _ = model.generate(prompts, seeds, setting)
        return float(np.mean([min(psnr(a, b), 100.0) for a, b in zip(images, reference)]))

    reference, _ = model.generate(prompts, seeds, Setting("dpmpp_2m", reference_steps, guidance))
    print(f"convergence: mean PSNR (dB) vs a {reference_steps}-step dpmpp_2m solve, {n} prompts, guidance {guidance:g}")
    print(f"{'scheduler':<12}" + "".join(f"{s:>7}" for s in CONVERGENCE_STEPS) + f"{'limit':>7}"
          + f"{'steps to ' + format(target, 'g') + ' dB':>16}")
    for name in CONVERGENCE_SCHEDULERS:
        row = [mean_psnr(Setting(name, steps, guidance)) for steps in CONVERGENCE_STEPS]
        limit = mean_psnr(Setting(name, reference_steps, guidance)) if name != "dpmpp_2m" else 100.0
        reached = next((steps for steps, value in zip(CONVERGENCE_STEPS, row) if value >= target), None)
        print(f"{name:<12}" + "".join(f"{v:>7.1f}" for v in row) + f"{limit:>7.1f}"
              + f"{reached if reached else '>' + str(CONVERGENCE_STEPS[-1]):>16}", flush=True)


def parse_grid(text: str, guidance: float) -> list[Setting]:
    settings = []
    for item in text.split(","):
        name, _, steps = item.strip().partition(":")
        settings.append(Setting(name, int(steps or DEFAULT_STEPS), guidance))
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"number of prompts (default {DEFAULT_N})")
    parser.add_argument("--scheduler", default=DEFAULT_SCHEDULER)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    parser.add_argument("--grid", help="comma-separated scheduler:steps settings, e.g. pndm:50,dpmpp_2m:10")
    parser.add_argument("--seed", type=int, default=0, help="first noise seed")
    parser.add_argument("--prompt-seed", type=int, default=PROMPT_SEED)
    parser.add_argument("--batch", type=int, default=25, help="prompts per pipeline call")
    parser.add_argument("--model", default="shapes-sd", help="preset or diffusers folder")
    parser.add_argument("--convergence", action="store_true", help="PSNR vs steps per scheduler instead of adherence")
    parser.add_argument("--reference-steps", type=int, default=200)
    parser.add_argument("--psnr-target", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", help="write the first 32 images of the first setting to this PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = Model.load(args.model, args.batch)
    if args.convergence:
        convergence_table(model, args.n, args.seed, args.prompt_seed, args.guidance, args.reference_steps,
                          args.psnr_target)
        return
    if args.grid:
        settings = parse_grid(args.grid, args.guidance)
    else:
        settings = [Setting(args.scheduler, args.steps, args.guidance)]
    adherence_table(model, settings, args.n, args.seed, args.prompt_seed, args.samples)


if __name__ == "__main__":
    main()
