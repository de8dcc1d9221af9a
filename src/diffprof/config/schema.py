"""The one configuration schema: the same dataclass feeds CLI flags, YAML/TOML/JSON files and Python.

Each field declares its help, group, range or static choices and its command-line option (see
:class:`~diffprof.config.spec.Spec`): the CLI's options, their defaults and the values a flag turns
into all come from here. Unknown keys are an error naming the closest valid key; every value is
checked by its declared type here, so every entry point fails the same way. Names that belong to
registries in higher layers (schedulers, optimization switches, suites, executors) are checked by
:func:`diffprof.suites.checks.check_config`, which every entry point calls before it measures.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from diffprof.config.aliases import SEO_ALIASES
from diffprof.config.files import read_config_file
from diffprof.config.location import ENV, location_value
from diffprof.config.spec import Spec, check_value, declare, spec_of
from diffprof.config.values import (
    QUALITY_CHOICES,
    TASKS,
    device_value,
    nonempty_value,
    precision_value,
    resolution_value,
    size_value,
    strength_value,
)
from diffprof.errors import ConfigError, closest
from diffprof.models.presets import DEFAULT_MODEL
from diffprof.profiler.record import LEVELS
from diffprof.request import DEFAULT_PROMPT, DEFAULT_SCHEDULER, GenerationRequest

# help groups (the option panels of `--help`)
MODEL, GENERATION, SUITES, QUALITY, MEASURE, EXECUTION, OUTPUT = "Model", "Generation", "Suites", "Quality", "Measurement", "Execution", "Output"
#: torch.Generator.manual_seed takes a signed or unsigned 64-bit integer.
SEEDS = (-(2**63), 2**64 - 1)
#: torch.set_num_threads takes a C int; no machine diffprof runs on has more cores than this.
MAX_THREADS = 4096
MAX_WORKERS = 4096
#: Schedulers of SD-style models refuse more steps than their 1000 training timesteps; flow-matching
#: ones take more, but no sampler is run for more than this.
MAX_STEPS = 10_000
#: A million images per call is beyond every device's memory (the memory check says how many fit).
MAX_BATCH = 1_000_000
#: Beyond this every image is saturated or NaN (the guided noise estimate overflows in fp16).
MAX_GUIDANCE = 1000.0
# the commands that expose a field as an option
RUN = ("bench", "generate", "tune", "calibrate")
ENGINE = ("bench", "generate", "calibrate")
BOTH = ("bench", "generate")
SIZE = ("bench", "generate", "tune")


@dataclass
class RunConfig:
    """Everything a generation or a benchmark run needs; every field has a default."""

    # ---------------------------------------------------------------- model
    model: str = declare(
        DEFAULT_MODEL, "Model preset (see `diffprof models`), a local diffusers folder, or a .safetensors file.", MODEL, commands=RUN, check=nonempty_value
    )
    weights: str = declare("auto", "Weight source: auto, hub, synthetic (full-size architecture, random weights) or builtin.", MODEL, commands=RUN)
    device: str = declare("auto", "auto (CUDA when available), cpu, cuda or cuda:N.", MODEL, commands=RUN, check=device_value)
    precision: str = declare(
        "auto", "fp32, fp16, bf16; auto = fp16 on CUDA, fp32 on CPU; half = fp16 on CUDA, bf16 on CPU.", MODEL, commands=ENGINE, check=precision_value
    )
    optimize: list[str] = declare(
        [], "Optimization switches (see `diffprof optimizations`), e.g. vae_slicing, compile=unet.", MODEL, commands=ENGINE, short="-O", noun="optimization"
    )
    allow_pickle: bool = declare(False, "Allow loading pickle checkpoints (.ckpt): they can run arbitrary code.", MODEL, commands=("generate",), negatable=False)
    threads: int | None = declare(
        None, "torch CPU threads (default: torch's choice; 1 gives stable timings on small machines).", MODEL, commands=RUN, minimum=1, maximum=MAX_THREADS
    )
    # ----------------------------------------------------------- generation
    task: str = declare("txt2img", "txt2img, img2img or inpaint.", GENERATION, commands=BOTH, choices=TASKS)
    prompt: str = declare(DEFAULT_PROMPT, "Prompt used for every cell.", GENERATION, commands=("bench", "tune"))
    negative_prompt: str | None = declare(None, "Negative prompt.", GENERATION, commands=("generate",))
    scheduler: str = declare(DEFAULT_SCHEDULER, "Scheduler short name (see `diffprof schedulers`); default keeps the model's own.", GENERATION, commands=BOTH)
    steps: int = declare(20, "Denoising steps.", GENERATION, commands=BOTH, minimum=1, maximum=MAX_STEPS)
    guidance: float = declare(7.5, "Classifier-free guidance scale (<= 1 disables guidance).", GENERATION, commands=SIZE, minimum=0, maximum=MAX_GUIDANCE)
    width: int | None = declare(None, "Image width in pixels (multiple of 8); default: the model's native size.", GENERATION, commands=SIZE, check=size_value)
    height: int | None = declare(None, "Image height in pixels (multiple of 8); default: the model's native size.", GENERATION, commands=SIZE, check=size_value)
    batch: int = declare(1, "Images per call.", GENERATION, commands=BOTH, minimum=1, maximum=MAX_BATCH)
    seed: int = declare(0, "Seed: the same seed gives the same images.", GENERATION, commands=BOTH, minimum=SEEDS[0], maximum=SEEDS[1])
    strength: float = declare(
        0.75, "img2img/inpaint strength in (0, 1]: how much of the init image is re-noised.", GENERATION, commands=("generate",), check=strength_value
    )
    image: str | None = declare(None, "Init image for img2img/inpaint (default: a generated test image).", GENERATION, commands=("generate",))
    mask: str | None = declare(None, "Mask for inpaint, white = repaint (default: a centred square).", GENERATION, commands=("generate",))
    # ------------------------------------------------------------ benchmark
    suites: list[str] = declare(["quick"], "Suites to run (see `diffprof suites`).", SUITES, commands=("bench",), flag="--suite", short="-s", noun="suite")
    schedulers: list[str] = declare(
        ["ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "unipc"], "Schedulers for the schedulers suite.", SUITES, commands=("bench",), noun="scheduler"
    )
    resolutions: list[str] = declare(
        [], "Sizes for the resolutions suite as WxH; default: 0.5x, 1x and 1.5x native.", SUITES, commands=("bench",), check=resolution_value, noun="resolution"
    )
    memory_optimizations: list[str] = declare(
        ["none", "attention_slicing", "vae_slicing", "vae_tiling", "model_cpu_offload", "sequential_cpu_offload"],
        "Settings for the memory suite; join switches with + for combinations (vae_slicing+vae_tiling).",
        SUITES, commands=("bench",), noun="memory optimization",
    )
    step_counts: list[int] = declare([10, 20, 30, 50], "Step counts for the steps suite.", SUITES, commands=("bench",), minimum=1, maximum=MAX_STEPS, noun="step count")
    guidance_scales: list[float] = declare(
        [1.0, 3.0, 5.0, 7.5, 10.0], "Guidance scales for the guidance suite.", SUITES, commands=("bench",), minimum=0, maximum=MAX_GUIDANCE, noun="guidance scale"
    )
    batch_sizes: list[int] = declare([1, 2, 4, 8], "Batch sizes for the batch suite.", SUITES, commands=("bench",), minimum=1, maximum=MAX_BATCH, noun="batch size")
    precisions: list[str] = declare(
        ["fp32", "half", "bf16"], "Precisions for the precision suite (each with and without compile); auto and half resolve per "
        "device as --precision does, so the default is fp32, fp16, bf16 on CUDA and fp32, bf16 on a CPU (where fp16 has no kernels).", SUITES,
        commands=("bench",), check=precision_value, noun="precision",
    )
    tasks: list[str] = declare(list(TASKS), "Tasks for the tasks suite.", SUITES, commands=("bench",), choices=TASKS, noun="task")
    models: list[str] = declare(["sd15", "sd21", "sdxl"], "Models for the pipelines suite.", SUITES, commands=("bench",), noun="model")
    # -------------------------------------------------------------- quality
    quality: list[str] = declare(
        ["auto"],
        "Quality scored per cell, outside the timed region: adherence (shapes prompts, pixel detector), convergence "
        "(PSNR/SSIM/latent error against a high-step reference solve), clip (needs clip_model), fidelity (the timed call's "
        "latents and image against the same call without the cell's switches) or none; auto = fidelity in the memory and ablation "
        "suites, and adherence for shapes-sd and convergence otherwise in the suites that ask about quality (quality, guidance, tune).",
        QUALITY, choices=QUALITY_CHOICES, noun="quality metric",
    )
    quality_prompts: int = declare(
        4, "Prompts scored per cell when quality is on, each with its own held-out seed (the cost: this many extra images per cell).", QUALITY, minimum=1
    )
    reference_steps: int = declare(100, "Steps of the reference solve that convergence compares against.", QUALITY, commands=("tune",), minimum=1, maximum=MAX_STEPS)
    reference_scheduler: str = declare(
        "dpmpp_2m", "Scheduler of the reference solve (deterministic: a stochastic one never converges to one image).", QUALITY
    )
    reference_cache: str | None = declare(None, "Folder keeping reference solves across runs and processes (default: in memory, for one run).", QUALITY)
    clip_model: str | None = declare(
        None, "CLIP model for the clip metric: a local folder or a hub id such as openai/clip-vit-large-patch14.", QUALITY, commands=("tune",)
    )
    # ---------------------------------------------------------- measurement
    repeats: int = declare(3, "Measured calls per cell (after warm-up), spread over the rounds; statistics come from these.", MEASURE, commands=("bench", "tune", "calibrate"), minimum=1)
    warmup: int = declare(1, "Unrecorded warm-up calls per cell (again in a later round only when its engine was loaded afresh).", MEASURE, commands=("bench", "calibrate"), minimum=0)
    rounds: int = declare(
        3,
        "Rounds the repeats are spread over: round r measures every cell once before round r+1 starts, so each cell's "
        "spread includes drift between rounds (compare tests per-round values; tune times its final choice in them). At most one round per repeat.",
        MEASURE, commands=("bench", "calibrate", "tune"), minimum=1,
    )
    isolate: bool | None = declare(
        None, "Run each cell in a fresh subprocess (clean load time and peak memory); default: the memory suite's cells on a CPU, whose "
        "peak is the process's resident set, a high-water mark that only grows from cell to cell in one process.", MEASURE, commands=("bench",)
    )
    executor: str = declare(
        "serial",
        "Where cells run: serial (one by one in this process), local (one worker process per visible GPU, "
        "or --workers CPU workers) or ray (a Ray cluster; pip install 'diffprof[ray]').",
        EXECUTION, commands=("bench",),
    )
    workers: int | None = declare(
        None, "Workers of the local or ray executor; default: one per GPU (on CPU: the cores divided by threads).", EXECUTION, commands=("bench",),
        minimum=1, maximum=MAX_WORKERS,
    )
    ray_address: str | None = declare(
        None, "Ray cluster for --executor ray: auto, HOST:6379 or ray://HOST:10001; default: start a local one.", EXECUTION, commands=("bench",)
    )
    profile_level: str = declare(
        "standard", "Profiler level: minimal, standard or detailed (kernel traces).", MEASURE, commands=BOTH, choices=LEVELS, noun="profiler level"
    )
    db: str = declare(
        "diffprof.db",
        "Results store: an SQLite file, or postgresql://user@host:5432/dbname for a store a team shares "
        "(pip install 'diffprof[postgres]').",
        OUTPUT, commands=("bench", "tune", "calibrate"), check=location_value, envvar=ENV,
    )
    report: str | None = declare("diffprof-report.html", "Where `bench` writes its HTML report (empty: none).", OUTPUT, commands=("bench",))
    trace: str | None = declare(
        None, "Folder for one Chrome trace per cell (spans, memory counters, and kernels at --profile-level detailed), for ui.perfetto.dev.",
        OUTPUT, commands=("bench",),
    )
    use_diffusion: bool = declare(True, "Seed-config switch: false means there is nothing to run.", EXECUTION)
    force: bool = declare(
        False, "Run even when a check says not to: the memory check predicts the peak does not fit, the owner of a resumed "
        "run is on another host and cannot be checked, or (calibrate) the host was busy: the calibration is kept, and its estimates say so.",
        EXECUTION, commands=ENGINE, negatable=False,
    )

    # ---------------------------------------------------------------- schema
    @classmethod
    def specs(cls) -> dict[str, Spec]:
        """Every field's :class:`Spec`, in field order."""
        return _specs(cls)

    @classmethod
    def spec(cls, name: str) -> Spec:
        return cls.specs()[name]

    @classmethod
    def field_names(cls) -> list[str]:
        return list(cls.specs())

    @classmethod
    def help_for(cls, name: str) -> str:
        return cls.spec(name).help

    @classmethod
    def default_of(cls, name: str) -> Any:
        default = cls.spec(name).default
        return list(default) if isinstance(default, list) else default

    # ------------------------------------------------------------- building
    @classmethod
    def from_mapping(cls, data: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
        """Build from a mapping of diffprof names and/or ``SEOConfig`` aliases, then validate."""
        values = asdict(base) if base is not None else {}
        native = {k: v for k, v in data.items() if k in cls.specs()}
        seo = {k: v for k, v in data.items() if k in SEO_ALIASES}
        unknown = [k for k in data if k not in native and k not in seo]
        if unknown:
            key = unknown[0]
            guess = closest(str(key), [*cls.field_names(), *SEO_ALIASES])
            raise ConfigError(
                f"unknown config key {key!r}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
                (f"did you mean {guess!r}? " if guess else "") + "run `diffprof bench --help` for every key",
            )
        values.update(native)
        suite_flags: list[str] = []
        for key, value in seo.items():
            SEO_ALIASES[key](values, value, suite_flags)
        values.update({k: v for k, v in native.items() if k != "optimize"})  # a field given by name wins over its alias
        if suite_flags and "suites" not in native:
            # canonical order, whatever order the file's keys came in (YAML dumps sort them)
            order = ["generation", "pipelines", "schedulers", "resolutions", "memory", "precision"]
            values["suites"] = sorted(dict.fromkeys(suite_flags), key=lambda s: order.index(s) if s in order else len(order))
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
        """Read YAML, TOML or JSON (by extension); ``overrides`` (e.g. CLI flags) win."""
        config = cls.from_mapping(read_config_file(path, cls.field_names()))
        return cls.from_mapping(overrides, base=config) if overrides else config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_request(self) -> GenerationRequest:
        """The pipeline call this config describes (the one place a config becomes a request)."""
        return GenerationRequest(
            prompt=self.prompt, negative_prompt=self.negative_prompt, task=self.task, scheduler=self.scheduler, steps=self.steps,
            guidance=self.guidance, width=self.width, height=self.height, num_images=self.batch, seed=self.seed,
            strength=self.strength, image=self.image, mask=self.mask,
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Every field by its declared type, range and static choices (normalizing, e.g. float16 ->
        fp16), then the rules that span fields. Registry names are checked one layer up."""
        for name, spec in self.specs().items():
            setattr(self, name, check_value(spec, getattr(self, name)))
        if self.profile_level == "off":
            raise ConfigError("profile_level off records no timings, so there would be nothing to report", "use minimal, standard or detailed")
        self.validate_quality()
        self._validate_execution()

    def _validate_execution(self) -> None:
        if self.executor == "serial" and self.workers not in (None, 1):
            raise ConfigError(
                f"workers {self.workers} needs a parallel executor; serial runs one cell at a time", "add --executor local (this host) or --executor ray"
            )
        if self.ray_address and self.executor != "ray":
            raise ConfigError(f"ray_address is set but the executor is {self.executor}", "add --executor ray, or drop --ray-address")

    def validate_quality(self) -> None:
        """The quality fields: auto and none alone, a CLIP model when clip is asked."""
        alone = [n for n in ("auto", "none") if n in self.quality]
        if alone and len(self.quality) > 1:
            raise ConfigError(
                f"quality {alone[0]!r} cannot be combined with other entries, got {self.quality}",
                "list the metrics you want (e.g. adherence, convergence) or give auto or none alone",
            )
        if "clip" in self.quality and not self.clip_model:
            raise ConfigError(
                "quality metric clip needs a CLIP model",
                "set clip_model (--clip-model) to a local CLIP folder or a hub id such as openai/clip-vit-large-patch14",
            )


@cache
def _specs(cls: type[RunConfig]) -> dict[str, Spec]:
    hints = typing.get_type_hints(cls)
    return {f.name: spec_of(f, hints[f.name]) for f in fields(cls)}
