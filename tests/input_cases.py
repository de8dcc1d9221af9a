"""Generated inputs for every field of the config schema and every command's flags (hypothesis).

Shared by tests/test_input_fuzz.py (a small profile) and benchmarks/fuzz_inputs.py (thousands of
cases). Every value comes from the schema's own declarations (type, range, choices, list or not),
so a new field is fuzzed without touching this file: right types, wrong types, the boundaries of
its range, NaN and infinities, ints too large for a float or for C, nested lists and mappings,
text that looks like a number, empty text, commas, None.

:func:`outcome` runs one case through the real entry point and says what happened: ``accepted``,
``refused`` (a DiffprofError with a hint / exit 2 with exactly one ``error:`` and one ``hint:``
line) or ``broken`` (a traceback, another exit code, a refusal without its two lines).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from diffprof.cli.options import specs_for
from diffprof.config import SEO_ALIASES, RunConfig, Spec
from diffprof.engine.schedulers import SCHEDULERS
from diffprof.engine.switches import switch_names
from diffprof.errors import DiffprofError
from diffprof.models.presets import PRESETS
from diffprof.suites.base import GROUPS, SUITES, check_suites

check_suites(["quick"])  # registers the built-in suites, so SUITES lists them

COMMANDS = ("bench", "generate", "tune", "calibrate")
#: The models drawn below are noise-schedule (UNet) models: a flow-matching solver on them is refused by
#: the model check (tests/test_schedulers_dit.py), not by the schema these cases exercise.
NOISE_SOLVERS = [name for name, spec in SCHEDULERS.items() if not spec.flow]
#: Registry names per field (the schema checks their type; suites.checks the names).
NAMES: dict[str, list[str]] = {
    "scheduler": ["default", *NOISE_SOLVERS], "schedulers": NOISE_SOLVERS, "reference_scheduler": NOISE_SOLVERS,
    "optimize": [n for n in switch_names() if n not in ("compile", "compile_mode")],
    "memory_optimizations": ["none", "vae_slicing", "vae_tiling", "attention_slicing", "vae_slicing+vae_tiling"],
    "suites": [n for n in (*SUITES, *GROUPS) if n != "calibration"],
    "executor": ["serial", "local", "ray"], "model": ["tiny-sd", "tiny-sdxl", "shapes-sd", "sd15", "sdxl"],
    "models": ["tiny-sd", "tiny-sdxl", "sd15"], "weights": ["auto", "synthetic", "builtin", "hub"], "device": ["cpu", "auto", "cuda", "cuda:1"],
    "precision": ["auto", "half", "fp32", "bf16", "fp16", "float32"], "precisions": ["auto", "half", "fp32", "bf16", "fp16"],
    "resolutions": ["32x32", "64x48", "512", "8x8"], "quality": ["auto", "none", "adherence", "convergence"],
}
SPECS = RunConfig.specs()

# ------------------------------------------------------------------ values
huge_ints = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, 10**400, -(10**400)])
odd_floats = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 1e-300])
numeric_text = st.sampled_from(["20", "1e3", "0", "-1", "7.5", "nan", "inf", "-inf", "1e400", "0x10", "1_000", " 3 ", "", ",", "1,2", "true", "null"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), huge_ints, st.floats(allow_nan=True, allow_infinity=True),
                    odd_floats, st.text(max_size=12), numeric_text)
nested = st.one_of(st.lists(scalars, max_size=4), st.lists(st.lists(scalars, max_size=2), max_size=2),
                   st.dictionaries(st.text(max_size=5), scalars, max_size=3))
anything = st.one_of(scalars, nested)


def boundaries(spec: Spec) -> list[Any]:
    """The edges of a numeric field's range, and one step outside each."""
    out: list[Any] = []
    step = 1 if spec.type is int else 1e-9
    for edge in (spec.minimum, spec.maximum):
        if edge is not None:
            edge = int(edge) if spec.type is int else float(edge)
            out += [edge, edge - step, edge + step]
    return out


def valid_scalar(spec: Spec) -> st.SearchStrategy[Any]:
    """Values one entry of ``spec`` accepts (registry names included)."""
    if spec.name in NAMES:
        return st.sampled_from(NAMES[spec.name])
    if spec.choices:
        return st.sampled_from([c for c in spec.choices if c != "off"])
    if spec.type is bool:
        return st.booleans()
    if spec.name == "strength":
        return st.floats(0.01, 1.0)
    if spec.name in ("width", "height"):
        return st.integers(1, 16).map(lambda k: 8 * k)
    if spec.type is int:
        low = int(spec.minimum) if spec.minimum is not None else -5
        return st.integers(low, low + 6)
    if spec.type is float:
        low = spec.minimum if spec.minimum is not None else 0.0
        return st.floats(low, low + 12, allow_nan=False)
    if spec.name in ("db", "report", "reference_cache", "image", "mask", "clip_model", "ray_address"):
        return st.sampled_from(["x.db", "out/r.md", "cache", "img.png"])
    return st.text(min_size=1, max_size=10)


def valid_value(spec: Spec) -> st.SearchStrategy[Any]:
    if spec.is_list:
        return st.lists(valid_scalar(spec), min_size=1, max_size=3)
    return st.one_of(valid_scalar(spec), st.none()) if spec.optional else valid_scalar(spec)


def wild_value(spec: Spec) -> st.SearchStrategy[Any]:
    """Anything: the field's boundaries, a valid entry in the wrong shape, and every kind of junk."""
    options = [anything, valid_scalar(spec).map(lambda v: [v]), valid_scalar(spec).map(lambda v: {"a": v})]
    if spec.is_list:
        options.append(valid_scalar(spec).map(str))  # a string where a list is expected: split at commas, never into letters
    if spec.type in (int, float):
        options.append(st.sampled_from(boundaries(spec) or [0]))
        options.append(valid_scalar(spec).map(str))  # a number in quotes
    return st.one_of(*options)


def field_value(spec: Spec) -> st.SearchStrategy[Any]:
    return st.one_of(valid_value(spec), valid_value(spec), wild_value(spec))  # half valid, so accepted configs are common too


#: About one case in eight (hypothesis draws small integers far more often than uniformly).
rarely = st.tuples(st.booleans(), st.booleans(), st.booleans()).map(all)

#: SEOConfig aliases and values of their types (what the seed's fields hold).
SEO_VALUES = {"diffusion_model_name": st.sampled_from(["tiny-sd", "sd15", "runwayml/stable-diffusion-v1-5"]),
              "diffusion_steps": valid_value(SPECS["steps"]), "diffusion_guidance_scale": valid_value(SPECS["guidance"]),
              "diffusion_height": valid_value(SPECS["height"]), "diffusion_width": valid_value(SPECS["width"]),
              "use_diffusion": st.just(True), "benchmark_schedulers": st.one_of(st.booleans(), st.lists(st.sampled_from(NOISE_SOLVERS), max_size=3))}


@st.composite
def config_mapping(draw: Any) -> dict[Any, Any]:
    """A config as a file or a caller gives it: some fields and SEOConfig aliases, all valid, one
    wild or all wild; now and then a key that is no field (a typo, a number)."""
    mode = draw(st.sampled_from(["valid", "valid", "one wild", "one wild", "wild"]))
    names = draw(st.lists(st.sampled_from(list(SPECS)), max_size=6, unique=True))
    aliases = draw(st.lists(st.sampled_from(list(SEO_ALIASES)), max_size=3, unique=True))
    data: dict[Any, Any] = {n: draw(valid_value(SPECS[n])) for n in names}
    for alias in aliases:
        data[alias] = draw(SEO_VALUES.get(alias, st.booleans()))
    keys = list(data)
    wild = keys if mode == "wild" else ([draw(st.sampled_from(keys))] if keys and mode == "one wild" else [])
    for key in wild:
        data[key] = draw(wild_value(SPECS[key])) if key in SPECS else draw(anything)
    if draw(rarely):
        data[draw(st.sampled_from(["stpes", "diffusion_step", 7, "", "Steps"]))] = draw(scalars)
    data.setdefault("model", "tiny-sd")  # a real model, so accepted configs expand to cells
    return data


def flag_text(spec: Spec, value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


@st.composite
def flag_set(draw: Any) -> list[str]:
    """A command line: a command, some of its fields' flags with valid or wild text, now and then an
    unknown flag, a missing value or a stray argument; always --dry-run (nothing is measured)."""
    command = draw(st.sampled_from(COMMANDS))
    specs = [s for s in specs_for(command) if s.name not in ("db",)]
    args = [command]
    if command == "generate" and draw(st.integers(0, 9)):
        args.append(draw(st.sampled_from(["a red circle", "", "--", "x" * 50])))
    for spec in draw(st.lists(st.sampled_from(specs), max_size=5, unique_by=lambda s: s.name)):
        if spec.type is bool and not spec.is_list:
            args.append(spec.option if draw(st.booleans()) or not spec.negatable else "--no-" + spec.option[2:])
            continue
        value = draw(st.one_of(valid_value(spec).filter(lambda v: v is not None), anything, numeric_text))
        args += [spec.option, flag_text(spec, value)]
    if draw(rarely):
        extra = draw(st.sampled_from(["unknown", "no value", "stray"]))
        if extra == "unknown":
            args.append(draw(st.sampled_from(["--stpes", "--bogus", "-Z"])))
        elif extra == "no value" and len(args) > 1:
            args.pop()  # a flag left without its value
        else:
            args.append("stray")
    if "--model" not in args:
        args += ["--model", "tiny-sd"]
    return [*args, "--dry-run"]


# ------------------------------------------------------------------ files
def toml_text(data: dict[Any, Any]) -> str | None:
    """``data`` as TOML, or None when TOML cannot say it (null, non-text keys)."""

    def value(v: Any) -> str:
        if v is None:
            raise ValueError("TOML has no null")
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + "}"
        raise ValueError(type(v))

    if not all(isinstance(k, str) for k in data):
        return None
    try:
        return "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in data.items())
    except ValueError:
        return None


def write_config(data: dict[Any, Any], folder: Path, fmt: str) -> Path | None:
    """The mapping as a .yaml, .json or .toml file (None when the format cannot hold it)."""
    path = folder / f"case.{fmt}"
    if fmt == "yaml":
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
    elif fmt == "json":
        if not all(isinstance(k, str) for k in data):
            return None
        path.write_text(json.dumps(data))
    else:
        text = toml_text(data)
        if text is None:
            return None
        path.write_text(text)
    return path


# ------------------------------------------------------------------ running
@dataclass
class Outcome:
    kind: str  # accepted, refused, broken
    detail: str = ""
    code: int | None = None


def from_mapping_outcome(data: dict[Any, Any]) -> Outcome:
    """Python entry point: RunConfig.from_mapping and the registry checks every entry point runs."""
    from diffprof.suites.checks import check_config, check_inputs

    try:
        config = RunConfig.from_mapping(data)
        check_config(config)
        check_inputs(config)
    except DiffprofError as exc:
        if not exc.hint:
            return Outcome("broken", f"no hint: {exc.message}")
        return Outcome("refused", exc.message)
    except Exception:  # noqa: BLE001 - what the fuzz looks for
        return Outcome("broken", traceback.format_exc(limit=-3))
    return Outcome("accepted")


def cli_outcome(args: list[str]) -> Outcome:
    """The CLI, in process (``cli.app.main``): exit 0, or exit 2 with exactly one error: and one hint: line."""
    from diffprof.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    except BaseException:  # noqa: BLE001 - a traceback out of main is what the fuzz looks for
        return Outcome("broken", traceback.format_exc(limit=-3))
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if code == 0:
        return Outcome("accepted", code=0)
    shaped = code == 2 and len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    if shaped:
        return Outcome("refused", lines[0], code)
    return Outcome("broken", f"exit {code}: " + " | ".join(lines[:6]), code)
