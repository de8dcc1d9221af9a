"""Every input either works or gets one line and exit 2: generated cases over the whole schema.

The cases come from the schema's declarations (tests/input_cases.py), so every field, present and
future, is covered: right and wrong types, range edges, NaN/inf, huge ints, nested structures,
numbers in quotes, None, unknown keys; through ``RunConfig.from_mapping``, YAML/JSON/TOML files and
command-line flags of every measuring command (``--dry-run``, in process). A small profile here;
benchmarks/fuzz_inputs.py draws thousands. The issue's quoted cases follow, one class each.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, Phase, given, settings

import input_cases as cases
from diffprof.cli.app import main
from diffprof.config import RunConfig
from diffprof.errors import ConfigError, DiffprofError

FUZZ = settings(max_examples=40, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


def _ok(outcome: cases.Outcome) -> None:
    assert outcome.kind in ("accepted", "refused"), outcome.detail


@FUZZ
@given(data=cases.config_mapping())
def test_any_mapping_is_accepted_or_refused_with_a_hint(data):
    _ok(cases.from_mapping_outcome(data))


@FUZZ
@given(data=cases.config_mapping())
def test_any_config_file_is_accepted_or_one_error_and_one_hint_line(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    python = cases.from_mapping_outcome(data)
    for fmt in ("yaml", "json", "toml"):
        path = cases.write_config(data, folder, fmt)
        if path is None:
            continue
        got = cases.cli_outcome(["bench", "--dry-run", "--config", str(path), "--db", str(folder / "x.db")])
        _ok(got)
        if fmt != "toml":  # TOML has no null and no NaN-free ints beyond 64 bits: its parser refuses some
            assert got.kind == python.kind, (fmt, data, got.detail, python.detail)


@FUZZ
@given(flags=cases.flag_set())
def test_any_flag_set_is_accepted_or_one_error_and_one_hint_line(flags, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("flags") / "x.db")
    _ok(cases.cli_outcome(flags if flags[0] == "generate" else [*flags, "--db", db]))


# ------------------------------------------------------------------ the cases, one class each
QUOTED = [
    {"profile_level": 0}, {"device": 1000000000}, {"strength": "tiny-sd"}, {"diffusion_steps": "1e3"}, {"precision": [0]},
    {"resolutions": 7}, {"tasks": 1000000000}, {"diffusion_model_name": 64}, {"strength": None}, {"mask": {"a": 1}},
    {"guidance": math.nan}, {"guidance": math.inf}, {"seed": 2**64}, {"steps": 10**400}, {"guidance": 10**400},
    {"enable_code_profiling": "false"}, {"benchmark_schedulers": 3}, {7: 1}, {"model": ""}, {"db": ""},
]


@pytest.mark.parametrize("data", QUOTED, ids=[repr(d)[:40] for d in QUOTED])
def test_the_quoted_cases_are_refused_with_a_hint(data):
    with pytest.raises(DiffprofError) as info:
        RunConfig.from_mapping(data)
    assert info.value.hint, info.value.message


def test_a_string_where_a_list_is_expected_is_split_at_commas_never_into_letters():
    assert RunConfig.from_mapping({"schedulers": "euler"}).schedulers == ["euler"]
    assert RunConfig.from_mapping({"quality": "adherence,convergence"}).quality == ["adherence", "convergence"]
    with pytest.raises(ConfigError, match="got 'euler'"):  # the whole word, not 'e'
        RunConfig.from_mapping({"batch_sizes": "euler"})
    with pytest.raises(ConfigError, match="unknown quality metric 'abc'"):
        RunConfig.from_mapping({"quality": "abc"})


def test_device_dependent_precisions_are_accepted_where_precision_auto_is():
    config = RunConfig.from_mapping({"precisions": ["auto", "half", "bf16"], "suites": ["precision"], "device": "cpu"})
    from diffprof.suites.base import expand

    assert [c.labels["precision"] for c in expand(config)] == ["fp32", "fp32", "bf16", "bf16"]  # each once, eager and compiled


def test_the_precision_suite_defaults_fit_the_device():
    """`bench -s precision` on a CPU measured fp16 (no kernels) and exited 3 out of the box."""
    from diffprof.suites.base import expand

    labels = {c.labels["precision"] for c in expand(RunConfig.from_mapping({"suites": ["precision"], "device": "cpu"}))}
    assert labels == {"fp32", "bf16"}


def test_flags_and_files_refuse_nan_and_inf_as_one_line(tmp_path, capsys):
    for args in (["bench", "--guidance", "nan"], ["generate", "x", "--guidance", "inf"], ["bench", "--guidance-scales", "1,nan"],
                 ["tune", "--tolerance", "nan"], ["estimate", "--max-memory", "inf"]):
        assert main([*args, "--dry-run"] if args[0] != "estimate" else args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2 and "finite number" in lines[0] and lines[1].startswith("hint: "), (args, lines)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"guidance": math.nan}))  # Python's json writes NaN; it must not get further
    assert main(["bench", "--dry-run", "--config", str(path)]) == 2
