"""The one configuration schema: the same dataclass feeds CLI flags, YAML/TOML/JSON files and Python.

Field names are diffprof's; the ``SEOConfig`` names users already have (``diffusion_model_name``,
``diffusion_steps``, ``profile_scheduler_performance``, ...) are accepted as aliases and each does
what its name says (see :data:`SEO_ALIASES`). Unknown keys are an error naming the closest valid
key; values are validated here, once, so every entry point fails the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from diffprof.errors import ConfigError, closest, unknown_choice
from diffprof.models.presets import DEFAULT_MODEL

DEFAULT_PROMPT = "a large red circle in the center on a blue background"
TASKS = ("txt2img", "img2img", "inpaint")
DEVICES = ("auto", "cpu", "cuda")


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RunConfig:
    """Everything a generation or a benchmark run needs; every field has a default."""

    # ---------------------------------------------------------------- model
    model: str = _f(DEFAULT_MODEL, "Model preset (see `diffprof models`), a local diffusers folder, or a .safetensors file.")
    weights: str = _f("auto", "Weight source: auto, hub, synthetic (full-size architecture, random weights) or builtin.")
    device: str = _f("auto", "auto (CUDA when available), cpu, cuda or cuda:N.")
    precision: str = _f("auto", "fp32, fp16, bf16; auto = fp16 on CUDA, fp32 on CPU; half = fp16 on CUDA, bf16 on CPU.")
    optimize: list[str] = _f([], "Optimization switches (see `diffprof optimizations`), e.g. vae_slicing, compile=unet.")
    allow_pickle: bool = _f(False, "Allow loading pickle checkpoints (.ckpt): they can run arbitrary code.")
    threads: int | None = _f(None, "torch CPU threads (default: torch's choice; 1 gives stable timings on small machines).")
    # ----------------------------------------------------------- generation
    task: str = _f("txt2img", "txt2img, img2img or inpaint.")
    prompt: str = _f(DEFAULT_PROMPT, "Prompt used for every cell.")
    negative_prompt: str | None = _f(None, "Negative prompt.")
    scheduler: str = _f("default", "Scheduler short name (see `diffprof schedulers`); default keeps the model's own.")
    steps: int = _f(20, "Denoising steps.")
    guidance: float = _f(7.5, "Classifier-free guidance scale (<= 1 disables guidance).")
    width: int | None = _f(None, "Image width in pixels (multiple of 8); default: the model's native size.")
    height: int | None = _f(None, "Image height in pixels (multiple of 8); default: the model's native size.")
    batch: int = _f(1, "Images per call.")
    seed: int = _f(0, "Seed: the same seed gives the same images.")
    strength: float = _f(0.75, "img2img/inpaint strength in (0, 1]: how much of the init image is re-noised.")
    image: str | None = _f(None, "Init image for img2img/inpaint (default: a generated test image).")
    mask: str | None = _f(None, "Mask for inpaint, white = repaint (default: a centred square).")
    # ------------------------------------------------------------ benchmark
    suites: list[str] = _f(["quick"], "Suites to run (see `diffprof suites`).")
    schedulers: list[str] = _f(["ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "unipc"], "Schedulers for the schedulers suite.")
    resolutions: list[str] = _f([], "Sizes for the resolutions suite as WxH; default: 0.5x, 1x and 1.5x native.")
    memory_optimizations: list[str] = _f(
        ["none", "attention_slicing", "vae_slicing", "vae_tiling", "model_cpu_offload", "sequential_cpu_offload"],
        "Settings for the memory suite; join switches with + for combinations (vae_slicing+vae_tiling).",
    )
    step_counts: list[int] = _f([10, 20, 30, 50], "Step counts for the steps suite.")
    guidance_scales: list[float] = _f([1.0, 3.0, 5.0, 7.5, 10.0], "Guidance scales for the guidance suite.")
    batch_sizes: list[int] = _f([1, 2, 4, 8], "Batch sizes for the batch suite.")
    precisions: list[str] = _f(["fp32", "fp16", "bf16"], "Precisions for the precision suite (each with and without compile).")
    tasks: list[str] = _f(list(TASKS), "Tasks for the tasks suite.")
    models: list[str] = _f(["sd15", "sd21", "sdxl"], "Models for the pipelines suite.")
    # -------------------------------------------------------------- quality
    quality: list[str] = _f(
        ["auto"],
        "Quality scored per cell, outside the timed region: adherence (shapes prompts, pixel detector), convergence "
        "(PSNR/SSIM/latent error against a high-step reference solve), clip (needs clip_model) or none; auto = "
        "adherence for shapes-sd and convergence otherwise, in the suites that ask about quality (quality, guidance, tune).",
    )
    quality_prompts: int = _f(4, "Prompts scored per cell when quality is on, each with its own held-out seed (the cost: this many extra images per cell).")
    reference_steps: int = _f(100, "Steps of the reference solve that convergence compares against.")
    reference_scheduler: str = _f("dpmpp_2m", "Scheduler of the reference solve (deterministic: a stochastic one never converges to one image).")
    reference_cache: str | None = _f(None, "Folder keeping reference solves across runs and processes (default: in memory, for one run).")
    clip_model: str | None = _f(None, "CLIP model for the clip metric: a local folder or a hub id such as openai/clip-vit-large-patch14.")
    repeats: int = _f(3, "Measured calls per cell (after warm-up); statistics come from these.")
    warmup: int = _f(1, "Unrecorded warm-up calls per cell.")
    isolate: bool = _f(False, "Run each cell in a fresh subprocess (clean load time and peak memory).")
    executor: str = _f(
        "serial",
        "Where cells run: serial (one by one in this process), local (one worker process per visible GPU, "
        "or --workers CPU workers) or ray (a Ray cluster; pip install 'diffprof[ray]').",
    )
    workers: int | None = _f(None, "Workers of the local or ray executor; default: one per GPU (on CPU: the cores divided by threads).")
    ray_address: str | None = _f(None, "Ray cluster for --executor ray: auto, HOST:6379 or ray://HOST:10001; default: start a local one.")
    profile_level: str = _f("standard", "Profiler level: minimal, standard or detailed (kernel traces).")
    db: str = _f("diffprof.db", "SQLite results store.")
    report: str | None = _f("diffprof-report.html", "Where `bench` writes its HTML report (empty: none).")
    use_diffusion: bool = _f(True, "Seed-config switch: false means there is nothing to run.")

    # ------------------------------------------------------------- building
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def help_for(cls, name: str) -> str:
        for f in fields(cls):
            if f.name == name:
                return str(f.metadata.get("help", ""))
        raise KeyError(name)

    @classmethod
    def default_of(cls, name: str) -> Any:
        for f in fields(cls):
            if f.name == name:
                if f.default is not MISSING:
                    return f.default
                return f.default_factory()  # type: ignore[misc]
        raise KeyError(name)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
        """Build from a mapping of diffprof names and/or ``SEOConfig`` aliases, then validate."""
        values = asdict(base) if base is not None else {}
        native = {k: v for k, v in data.items() if k in cls.field_names()}
        seo = {k: v for k, v in data.items() if k in SEO_ALIASES}
        unknown = [k for k in data if k not in native and k not in seo]
        if unknown:
            key = unknown[0]
            guess = closest(key, [*cls.field_names(), *SEO_ALIASES])
            raise ConfigError(
                f"unknown config key {key!r}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
                (f"did you mean {guess!r}? " if guess else "") + "run `diffprof bench --help` for every key",
            )
        values.update(native)
        suite_flags: list[str] = []
        for key, value in seo.items():
            SEO_ALIASES[key](values, value, suite_flags)
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
        data = read_config_file(path)
        config = cls.from_mapping(data)
        return cls.from_mapping(overrides, base=config) if overrides else config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
        from diffprof.engine.precision import DEVICE_PRECISIONS, check_precision
        from diffprof.engine.switches import Optimizations, label_switches
        from diffprof.engine.schedulers import check_scheduler
        from diffprof.profiler import check_level

        def positive_int(name: str, value: Any) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")

        for name in ("steps", "batch", "repeats"):
            positive_int(name, getattr(self, name))
        if self.threads is not None:
            positive_int("threads", self.threads)
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"warmup must be a whole number >= 0, got {self.warmup!r}")
        for name in ("width", "height"):
            check_size(name, getattr(self, name))
        if not isinstance(self.guidance, (int, float)) or self.guidance < 0:
            raise ConfigError(f"guidance must be a number >= 0, got {self.guidance!r}")
        if not 0 < float(self.strength) <= 1:
            raise ConfigError(f"strength must be in (0, 1], got {self.strength!r}", "1.0 ignores the init image entirely")
        if self.task not in TASKS:
            raise unknown_choice("task", self.task, TASKS)
        for t in self.tasks:
            if t not in TASKS:
                raise unknown_choice("task", t, TASKS)
        if self.precision not in DEVICE_PRECISIONS:
            self.precision = check_precision(self.precision)
        for p in self.precisions:
            check_precision(p)
        if not (self.device in DEVICES or re.fullmatch(r"cuda:\d+", self.device)):
            raise unknown_choice("device", self.device, DEVICES)
        check_scheduler(self.scheduler)
        for s in self.schedulers:
            check_scheduler(s)
        Optimizations.parse(self.optimize)
        for m in self.memory_optimizations:
            Optimizations.parse(label_switches(m))
        for r in self.resolutions:
            parse_resolution(r)
        for n in self.step_counts:
            positive_int("step count", n)
        for n in self.batch_sizes:
            positive_int("batch size", n)
        check_level(self.profile_level)
        self.validate_quality()
        if self.profile_level == "off":
            raise ConfigError("profile_level off records no timings, so there would be nothing to report", "use minimal, standard or detailed")
        from diffprof.suites import check_suites

        check_suites(self.suites)
        self._validate_execution()

    def _validate_execution(self) -> None:
        from diffprof.suites.executors import check_executor

        check_executor(self.executor)
        if self.workers is not None and (not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1):
            raise ConfigError(f"workers must be a whole number >= 1, got {self.workers!r}")
        if self.executor == "serial" and self.workers not in (None, 1):
            raise ConfigError(
                f"workers {self.workers} needs a parallel executor; serial runs one cell at a time", "add --executor local (this host) or --executor ray"
            )
        if self.ray_address and self.executor != "ray":
            raise ConfigError(f"ray_address is set but the executor is {self.executor}", "add --executor ray, or drop --ray-address")

    def validate_quality(self) -> None:
        """The quality fields: known metric names, a CLIP model when clip is asked, a deterministic reference."""
        from diffprof.engine.schedulers import SCHEDULERS, check_scheduler

        for name in self.quality:
            if name not in QUALITY_CHOICES:
                raise unknown_choice("quality metric", str(name), QUALITY_CHOICES)
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
        for name in ("quality_prompts", "reference_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        check_scheduler(self.reference_scheduler)
        spec = SCHEDULERS.get(self.reference_scheduler)
        if spec is not None and spec.stochastic:
            raise ConfigError(
                f"reference_scheduler {self.reference_scheduler!r} is stochastic: its solves never converge to one image",
                "use a deterministic solver such as dpmpp_2m, unipc or ddim",
            )


#: What ``quality`` may list (see the field's help).
QUALITY_CHOICES = ("auto", "adherence", "convergence", "clip", "none")


def check_size(name: str, value: int | None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 8 or value % 8:
        raise ConfigError(
            f"{name} must be a positive multiple of 8, got {value!r}",
            "latents are 1/8 of the image size; try " + (f"{max(8, round(value / 8) * 8)}" if isinstance(value, (int, float)) else "512"),
        )


def parse_resolution(text: str) -> tuple[int, int]:
    """``"512x768"`` -> (512, 768); ``"512"`` -> (512, 512)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", str(text))
    if not m:
        raise ConfigError(f"resolution {text!r} is not WIDTHxHEIGHT", "e.g. 512x512 or 768x512")
    w, h = int(m.group(1)), int(m.group(2) or m.group(1))
    check_size("width", w)
    check_size("height", h)
    return w, h


def _parse_position(exc: Exception) -> str:
    """``, line L column C`` of a YAML or JSON parse error; YAML keeps it in a mark on a later line
    of its message, which the one-line error would drop (tomllib names the line in its message)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return f", line {mark.line + 1} column {mark.column + 1}"
    if isinstance(exc, json.JSONDecodeError):
        return f", line {exc.lineno} column {exc.colno}"
    return ""


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist", "give the path of a .yaml, .toml or .json file")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            try:
                import tomllib
            except ImportError as exc:  # Python 3.10
                raise ConfigError("TOML configs need Python >= 3.11", "use YAML or JSON, or upgrade Python") from exc
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path.name!r} has an unknown extension", "use .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # parse errors of any of the three formats
        raise ConfigError(f"cannot parse {path.name}{_parse_position(exc)}: {str(exc).splitlines()[0]}", "fix the syntax at that line") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a mapping of keys to values, not {type(data).__name__}")
    # SEOConfig files often nest everything under one top-level key
    if len(data) == 1 and isinstance(next(iter(data.values())), dict) and next(iter(data)) not in RunConfig.field_names():
        data = next(iter(data.values()))
    return data


# --------------------------------------------------------------------- SEOConfig aliases
def _set(name: str, convert: Any = None) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        values[name] = convert(value) if convert else value

    return apply


def _suite(suite: str) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        if value:
            suites.append(suite)

    return apply


def _suites(*names: str) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        if value:
            suites.extend(names)

    return apply


def _flag_optimization(switch: str) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        opts = [o for o in values.get("optimize", []) if o != switch]
        values["optimize"] = opts + [switch] if value else opts

    return apply


def _benchmark_schedulers(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    if isinstance(value, (list, tuple)):
        values["schedulers"] = list(value)
        suites.append("schedulers")
    elif value:
        suites.append("schedulers")


def _memory_efficient_attention(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    import importlib.util

    opts = [o for o in values.get("optimize", []) if o not in ("xformers", "eager_attention", "sdpa")]
    if value:  # xformers when present, else SDPA's memory-efficient kernels (the default)
        if importlib.util.find_spec("xformers") is not None:
            opts.append("xformers")
    else:
        opts.append("eager_attention")
    values["optimize"] = opts


def _enable_profiling(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    values["profile_level"] = "detailed" if value else "standard"


def _mixed_precision(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    values["precision"] = "half" if value else "fp32"


#: SEOConfig field -> how it maps onto RunConfig (each does what its name says).
SEO_ALIASES: dict[str, Any] = {
    "use_diffusion": _set("use_diffusion", bool),
    "diffusion_model_name": _set("model"),
    "diffusion_steps": _set("steps", int),
    "diffusion_guidance_scale": _set("guidance", float),
    "diffusion_height": _set("height", int),
    "diffusion_width": _set("width", int),
    "enable_code_profiling": _enable_profiling,
    "profile_diffusion_generation": _suite("generation"),
    "profile_scheduler_performance": _suite("schedulers"),
    "profile_resolution_scaling": _suite("resolutions"),
    "enable_memory_efficient_attention": _memory_efficient_attention,
    "enable_sequential_cpu_offload": _flag_optimization("sequential_cpu_offload"),
    "use_diffusion_mixed_precision": _mixed_precision,
    "profile_pipeline_variants": _suite("pipelines"),
    "benchmark_schedulers": _benchmark_schedulers,
    "profile_advanced_features": _suites("memory", "precision"),
}
