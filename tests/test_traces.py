"""Chrome traces: valid Trace Event Format, memory as counter tracks, and one clock for spans and kernels.

:func:`trace_problems` is a validator of the format as Perfetto and chrome://tracing read it
(required keys per phase, numeric ``ts``/``dur``, integer ``pid``/``tid``, counters with numeric
args). The traces of ``generate --profile-out`` and ``bench --trace`` must pass it, carry host
memory as ``"C"`` events, and put diffprof's spans on the time base and threads of the kernel
traces torch.profiler writes, so one timeline shows both. The CUDA test (run on a GPU with
``python3 -m pytest -m cuda tests/test_traces.py``) checks that each UNet span on the GPU track
holds the kernels it launched.
"""

from __future__ import annotations

import json
import numbers
import threading
from pathlib import Path
from typing import Any

import pytest

from diffprof.cli.app import main
from diffprof.profiler import Profile, Profiler, get_exporter
from diffprof.profiler.exporters.chrome import GPU_TID

PROMPT = "a large red circle in the center on a blue background"
#: Keys every event of a phase must carry (beyond ``ph``), after the Trace Event Format document.
REQUIRED = {
    "X": ("name", "ts", "dur", "pid", "tid"), "B": ("name", "ts", "pid", "tid"), "E": ("ts", "pid", "tid"),
    "C": ("name", "ts", "pid", "args"), "i": ("name", "ts", "pid"), "I": ("name", "ts", "pid"),
    "M": ("name", "pid", "args"), "s": ("name", "ts", "pid", "tid", "id"), "t": ("name", "ts", "pid", "tid", "id"),
    "f": ("name", "ts", "pid", "tid", "id"), "b": ("name", "ts", "pid", "id"), "e": ("name", "ts", "pid", "id"),
    "n": ("name", "ts", "pid", "id"),
}


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def trace_problems(trace: Any) -> list[str]:
    """What breaks the Trace Event Format in ``trace`` (empty when valid)."""
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        return ["not an object with a traceEvents list"]
    problems = []
    if trace.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        problems.append(f"displayTimeUnit {trace['displayTimeUnit']!r}")
    for n, e in enumerate(trace["traceEvents"]):
        where = f"event {n} ({e.get('ph')!r} {e.get('name')!r})" if isinstance(e, dict) else f"event {n}"
        if not isinstance(e, dict) or e.get("ph") not in REQUIRED:
            problems.append(f"{where}: unknown phase")
            continue
        missing = [k for k in REQUIRED[e["ph"]] if k not in e]
        if missing:
            problems.append(f"{where}: missing {missing}")
            continue
        if "ts" in e and not _number(e["ts"]):
            problems.append(f"{where}: ts {e['ts']!r} is not a number")
        if e["ph"] == "X" and not (_number(e["dur"]) and e["dur"] >= 0):
            problems.append(f"{where}: dur {e['dur']!r}")
        for key in ("pid", "tid"):
            if key in e and not (isinstance(e[key], int) and not isinstance(e[key], bool)):
                problems.append(f"{where}: {key} {e[key]!r} is not an integer")
        if e["ph"] == "C" and not (isinstance(e["args"], dict) and e["args"] and all(_number(v) for v in e["args"].values())):
            problems.append(f"{where}: a counter needs numeric args, got {e['args']!r}")
        if e["ph"] == "M" and e["name"] == "thread_name" and "tid" not in e:
            problems.append(f"{where}: thread_name without tid")
    return problems


def events(trace: dict[str, Any], ph: str, name: str | None = None) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e.get("ph") == ph and (name is None or e.get("name") == name)]


# ---------------------------------------------------------------------------------------------
# The exporter on a profile it is handed


def test_the_validator_catches_what_viewers_reject():
    bad = {"traceEvents": [{"ph": "X", "name": "a", "ts": "1", "dur": -1, "pid": 1.5, "tid": 1}, {"ph": "C", "name": "m", "ts": 0, "pid": 1, "args": {}},
                           {"ph": "Q"}, {"ph": "B", "name": "b", "pid": 1}]}
    assert trace_problems(bad) == [
        "event 0 ('X' 'a'): ts '1' is not a number", "event 0 ('X' 'a'): dur -1", "event 0 ('X' 'a'): pid 1.5 is not an integer",
        "event 1 ('C' 'm'): a counter needs numeric args, got {}", "event 2 ('Q' None): unknown phase", "event 3 ('B' 'b'): missing ['ts', 'tid']",
    ]


def test_memory_counters_and_a_kernel_trace_merged_on_one_time_base(clock, tmp_path):
    p = Profiler("standard", device="cpu", clock=clock, measure_overhead=False)
    with p.profile_operation("outer", "model_inference"):
        clock.advance(2_000)
        with p.profile_operation("unet", "model_inference"):
            clock.advance(3_000)
    profile = p.profile()
    # a kernel trace as torch.profiler writes it: Unix-based ts counted from its own baseTimeNanoseconds
    start_unix = p.clock_sync["unix_ns"] + (profile.find("outer")[0].start_ns - p.clock_sync["clock_ns"])
    base = start_unix // 10**9 * 10**9 - 10**9
    kernel = {"baseTimeNanoseconds": base, "traceEvents": [
        {"ph": "X", "cat": "user_annotation", "name": "model_inference/unet", "pid": profile.metadata["pid"], "tid": threading.get_native_id(),
         "ts": (start_unix + 2_000 - base) / 1e3, "dur": 3.0},
        {"ph": "M", "name": "process_name", "pid": profile.metadata["pid"], "tid": 0, "args": {"name": "python"}},
    ]}
    (tmp_path / "k.json").write_text(json.dumps(kernel))
    profile.trace_files = [str(tmp_path / "k.json")]
    trace = json.loads(get_exporter("chrome").render(profile))
    assert trace_problems(trace) == []
    assert trace["baseTimeNanoseconds"] == base  # the kernel trace's own base: its events keep their ts
    unet = events(trace, "X", "unet")[0]
    annotation = events(trace, "X", "model_inference/unet")[0]
    assert (unet["ts"], unet["dur"], unet["tid"]) == (annotation["ts"], annotation["dur"], annotation["tid"])
    rss = events(trace, "C", "host RSS")
    assert len(rss) == 3 and all(e["args"]["rss_bytes"] > 0 for e in rss)  # each span's start; both end at once
    assert [e["ts"] for e in rss] == sorted(e["ts"] for e in rss)
    assert [e["args"]["name"] for e in events(trace, "M", "process_name")] == ["diffprof (cpu)"]  # ours, not the kernel trace's


def test_a_profile_saved_before_the_clock_sync_still_exports(clock):
    p = Profiler("minimal", device="cpu", clock=clock, measure_overhead=False)
    with p.profile_operation("outer", "x"):
        clock.advance(5_000)
    data = p.profile().to_dict()
    data["metadata"].pop("clock_sync")
    trace = json.loads(get_exporter("chrome").render(Profile.from_dict(data)))
    assert events(trace, "X")[0]["ts"] == 0.0 and "baseTimeNanoseconds" not in trace and trace_problems(trace) == []


# ---------------------------------------------------------------------------------------------
# The commands


def _lines_up(spans: list[dict[str, Any]], annotations: list[dict[str, Any]], tolerance_us: float) -> None:
    """Each span has torch.profiler's record of the same operation, same thread, at the same time."""
    assert spans and len(spans) == len(annotations)
    for span, ann in zip(sorted(spans, key=lambda e: e["ts"]), sorted(annotations, key=lambda e: e["ts"])):
        assert span["tid"] == ann["tid"] and span["pid"] == ann["pid"]
        assert abs(span["ts"] - ann["ts"]) < tolerance_us and abs(span["ts"] + span["dur"] - ann["ts"] - ann["dur"]) < tolerance_us


@pytest.mark.slow
def test_generate_profile_out_is_one_valid_timeline(tmp_path, capsys):
    out = tmp_path / "prof"
    code = main(["generate", PROMPT, "--model", "tiny-sd", "--steps", "2", "--width", "32", "--height", "32", "--threads", "1",
                 "--profile-level", "detailed", "--out", str(tmp_path / "img"), "--profile-out", str(out)])
    capsys.readouterr()
    assert code == 0
    trace = json.loads((out / "profile.trace.json").read_text())
    assert trace_problems(trace) == []
    assert events(trace, "C", "host RSS") and list(out.glob("kernels/*.json"))
    # the kernel capture merged in: torch.profiler's annotation of each UNet call sits on the span's thread and time
    _lines_up(events(trace, "X", "unet"), [e for e in events(trace, "X", "model_inference/unet")], tolerance_us=2_000)
    assert events(trace, "X", "aten::conv2d")  # and the CPU ops inside them


@pytest.mark.slow
def test_bench_trace_writes_one_valid_trace_per_cell(tmp_path, capsys):
    folder = tmp_path / "traces"
    code = main(["bench", "-s", "steps", "--step-counts", "1,2", "--model", "tiny-sd", "--scheduler", "euler", "--repeats", "2", "--warmup", "1", "--threads", "1",
                 "--rounds", "1", "--width", "32", "--height", "32", "--no-progress", "--no-report", "--db", str(tmp_path / "r.db"), "--trace", str(folder)])
    capsys.readouterr()
    assert code == 0
    files = sorted(folder.glob("*.trace.json"))
    assert [f.name.split("-")[:2] for f in files] == [["steps", "steps"], ["steps", "steps"]] and len({f.name for f in files}) == 2
    for path, steps in zip(files, (1, 2)):
        trace = json.loads(path.read_text())
        assert trace_problems(trace) == []
        calls = events(trace, "X", "diffusion_image_generation")
        assert len(calls) == 3  # the warm-up call and both repeats: this cell's, no other's
        assert len(events(trace, "X", "denoising_step")) == 3 * steps
        assert events(trace, "C", "host RSS") and "baseTimeNanoseconds" in trace
        for unet in events(trace, "X", "unet"):  # every UNet span inside a call, on its thread
            assert any(c["tid"] == unet["tid"] and c["ts"] <= unet["ts"] and unet["ts"] + unet["dur"] <= c["ts"] + c["dur"] for c in calls)


def test_bench_trace_in_rounds_writes_one_trace_per_round(tmp_path, capsys):
    """Rounds of a cell run between other cells' rounds: each round is its own trace, the first with
    the warm-up, the later ones (a warm engine) with their own call only."""
    folder = tmp_path / "traces"
    code = main(["bench", "-s", "steps", "--step-counts", "1,2", "--model", "tiny-sd", "--scheduler", "euler", "--repeats", "2", "--rounds", "2",
                 "--threads", "1", "--width", "32", "--height", "32", "--no-progress", "--no-report", "--db", str(tmp_path / "r.db"), "--trace", str(folder)])
    capsys.readouterr()
    assert code == 0
    files = sorted(folder.glob("*.trace.json"))
    assert len(files) == 4 and sorted(f.name.rsplit("-", 1)[1] for f in files) == ["1.trace.json", "1.trace.json", "2.trace.json", "2.trace.json"]
    for path in files:
        trace = json.loads(path.read_text())
        assert trace_problems(trace) == []
        assert len(events(trace, "X", "diffusion_image_generation")) == (2 if path.name.endswith("round-1.trace.json") else 1)


# ---------------------------------------------------------------------------------------------
# On the GPU: spans and kernels on one clock


@pytest.mark.cuda
def test_each_unet_span_on_the_gpu_holds_its_kernels(tmp_path, capsys):
    """Kernels launched inside a UNet call (cudaLaunchKernel inside the host span, matched to its
    kernel by correlation id) run inside that call's span on the GPU track (CUDA events), within
    the clocks' agreement (50 µs)."""
    out = tmp_path / "prof"
    code = main(["generate", PROMPT, "--model", "tiny-sd", "--device", "cuda", "--steps", "3", "--width", "64", "--height", "64",
                 "--profile-level", "detailed", "--out", str(tmp_path / "img"), "--profile-out", str(out)])
    capsys.readouterr()
    assert code == 0
    trace = json.loads((out / "profile.trace.json").read_text())
    assert trace_problems(trace) == []
    assert events(trace, "C", "GPU memory")
    host = [e for e in events(trace, "X", "unet") if e["tid"] != GPU_TID]
    gpu = [e for e in events(trace, "X", "unet") if e["tid"] == GPU_TID]
    assert host and len(host) == len(gpu)
    kernels = {e["args"]["correlation"]: e for e in events(trace, "X") if e.get("cat") == "kernel" and "correlation" in e.get("args", {})}
    launches = [e for e in events(trace, "X") if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {})]
    checked = 0
    for span, on_gpu in zip(sorted(host, key=lambda e: e["ts"]), sorted(gpu, key=lambda e: e["ts"])):
        inside = [kernels[e["args"]["correlation"]] for e in launches
                  if span["ts"] <= e["ts"] <= span["ts"] + span["dur"] and e["args"]["correlation"] in kernels]
        assert inside, f"no kernel launched inside the UNet span at {span['ts']}"
        for k in inside:
            assert on_gpu["ts"] - 50 <= k["ts"] and k["ts"] + k["dur"] <= on_gpu["ts"] + on_gpu["dur"] + 50, (k["name"], k["ts"], on_gpu)
            checked += 1
    assert checked > 10


def test_trace_paths_are_readable_and_distinct():
    from diffprof.config import RunConfig
    from diffprof.suites.base import Cell
    from diffprof.suites.measure import trace_path

    a = Cell("memory", {"optimization": "vae_slicing+vae_tiling"}, RunConfig())
    b = Cell("memory", {"optimization": "vae slicing"}, RunConfig())
    pa, pb = trace_path(a, "t"), trace_path(b, "t")
    assert pa.parent == Path("t") and pa.name.startswith("memory-optimization-vae_slicing+vae_tiling-") and pa.name.endswith(".trace.json")
    assert pa != pb and " " not in pb.name
