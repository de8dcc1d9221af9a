"""The command line: generate, bench, runs/show/compare/report, and bad input (exit 2, one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from diffprof.cli import main
from diffprof.results import CellResult
from diffprof.store import Store

GEN = ["generate", "a large red circle in the center on a blue background", "--scheduler", "euler", "--steps", "2", "--width", "32", "--height", "32", "--threads", "1"]
BENCH_FAST = ["--repeats", "1", "--warmup", "0", "--threads", "1", "--steps", "2", "--width", "32", "--height", "32", "--no-progress"]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------- generate
def test_generate_writes_pngs_with_parameters_and_sidecars(tmp_path, capsys):
    code, out, _ = run_cli([*GEN, "--batch", "2", "--seed", "5", "--out", str(tmp_path / "img"), "--profile-out", str(tmp_path / "prof")], capsys)
    assert code == 0
    pngs = sorted((tmp_path / "img").glob("*.png"))
    assert len(pngs) == 2
    with Image.open(pngs[0]) as img:
        meta = json.loads(img.text["diffprof"])
        assert "Steps: 2" in img.text["parameters"] and "Seed: 5" in img.text["parameters"]
    assert meta["seed"] == 5 and meta["prompt"].startswith("a large red circle")
    sidecar = json.loads(pngs[0].with_suffix(".json").read_text())
    assert sidecar["timing"]["text_encode_s"] > 0 and len(sidecar["timing"]["steps_s"]) == 2
    trace = json.loads((tmp_path / "prof" / "profile.trace.json").read_text())
    assert any(e["name"] == "denoising_step" for e in trace["traceEvents"])
    assert "per-component timing" in out and "VAE decode" in out


def test_generate_says_when_the_loop_ran_without_its_cuda_graph(tmp_path, capsys, monkeypatch):
    """The engine records a CUDA-graph fallback in the result's settings (only a GPU produces one);
    generate prints it once, however many rows had it, so the timing table is not read as graphed."""
    from diffprof.engine import Engine

    real = Engine.generate

    def fell_back(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        result.settings.update(fast_path="eager_loop", fast_path_note="scheduler unipc is not graph-safe; ran the loop eagerly")
        return result

    monkeypatch.setattr(Engine, "generate", fell_back)
    code, _, err = run_cli([*GEN, "--batch", "2", "--out", str(tmp_path / "img")], capsys)
    assert code == 0
    assert " ".join(err.split()).count("the denoising loop did not run as the optimizations asked: scheduler unipc is not graph-safe") == 1


def test_generate_prompts_file_with_per_row_overrides(tmp_path, capsys):
    rows = [{"prompt": "a red circle", "seed": 1}, {"prompt": "a blue square", "seed": 2, "steps": 1, "scheduler": "euler"}]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    code, _, _ = run_cli([*GEN[:1], "--prompts", str(path), "--steps", "2", "--width", "32", "--height", "32", "--threads", "1", "--out", str(tmp_path / "o")], capsys)
    assert code == 0
    metas = [json.loads(p.read_text()) for p in sorted((tmp_path / "o").glob("*.json"))]
    assert [(m["prompt"], m["seed"], m["steps"]) for m in metas] == [("a red circle", 1, 2), ("a blue square", 2, 1)]
    assert metas[1]["scheduler"] == "euler"
    (tmp_path / "p.txt").write_text("a red circle\n# a comment\na green triangle\n")
    assert main([*GEN[:1], "--prompts", str(tmp_path / "p.txt"), "--steps", "1", "--width", "32", "--height", "32", "--out", str(tmp_path / "t")]) == 0
    assert len(list((tmp_path / "t").glob("*.png"))) == 2


@pytest.fixture
def images(tmp_path):
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "init.png")
    Image.new("L", (16, 16), 255).save(tmp_path / "small_mask.png")
    (tmp_path / "notimage.png").write_text("not an image")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (tmp_path / "rows.jsonl").write_text('{"prompt": "x", "sead": 3}\n')
    return tmp_path


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--model", "sd16"], "unknown model 'sd16'"),
        (["--scheduler", "eulr"], "did you mean 'euler'"),
        (["--width", "60"], "multiple of 8"),
        (["--task", "inpaint", "--image", "{d}/init.png", "--mask", "{d}/small_mask.png"], "mask is 16x16 but the image is 32x32"),
        (["--task", "img2img", "--image", "{d}/missing.png"], "does not exist"),
        (["--task", "img2img", "--image", "{d}/notimage.png"], "not an image"),
        (["--model", "{d}/broken.safetensors"], "safetensors"),
        (["--optimize", "model_cpu_offload", "--device", "cpu"], "needs a CUDA device"),
        (["--precision", "fp16", "--device", "cpu"], "fp16 on cpu"),
        (["--prompts", "{d}/rows.jsonl"], "did you mean 'seed'"),
    ],
)
def test_bad_input_is_one_line_exit_2(images, capsys, args, fragment):
    args = [a.format(d=images) for a in args]
    code, out, err = run_cli([*GEN, "--out", str(images / "out"), *args], capsys)
    assert code == 2
    assert fragment in err, err
    assert "Traceback" not in err and "Traceback" not in out
    assert err.startswith("error:") and len(err.strip().splitlines()) <= 2  # error line + hint line


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception, match="unknown model"):
        main(["--debug", *GEN, "--model", "sd16"])


def test_hub_unreachable_offline_offers_the_alternatives(tmp_path, capsys, monkeypatch):
    """In process: HF_HUB_OFFLINE=1 as huggingface_hub reads it at import (its constant), with an
    empty cache. tests/test_models.py proves in a fresh process that the environment variable sets it."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    code, out, err = run_cli(["generate", "x", "--model", "sd15", "--weights", "hub", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "--weights synthetic" in err and "Traceback" not in err and "Traceback" not in out
    assert "HF_HUB_OFFLINE is set" in err  # refused for offline mode, not for a failed download


# ---------------------------------------------------------------------------- bench
def test_bench_yaml_with_every_seed_field_drives_a_run(tmp_path, capsys):
    seed = {
        "use_diffusion": True, "diffusion_model_name": "tiny-sd", "diffusion_steps": 2, "diffusion_guidance_scale": 5.0,
        "diffusion_height": 32, "diffusion_width": 32, "enable_code_profiling": False, "profile_diffusion_generation": True,
        "profile_scheduler_performance": True, "profile_resolution_scaling": False, "enable_memory_efficient_attention": True,
        "enable_sequential_cpu_offload": False, "use_diffusion_mixed_precision": False, "profile_pipeline_variants": False,
        "benchmark_schedulers": ["euler", "ddim"], "profile_advanced_features": False,
    }
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump({"seo": seed}))
    db = tmp_path / "r.db"
    code, out, _ = run_cli(["bench", "--config", str(path), "--db", str(db), "--no-report", "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-progress"], capsys)
    assert code == 0, out
    with Store(db) as store:
        run = store.get_run("latest")
    assert [(c.suite, c.labels) for c in run.cells] == [("generation", {"model": "tiny-sd"}), ("schedulers", {"scheduler": "euler"}), ("schedulers", {"scheduler": "ddim"})]
    assert all(c.settings["steps"] == 2 and c.settings["width"] == 32 for c in run.cells)


def test_bench_writes_report_and_failed_cells_exit_3(tmp_path, capsys):
    db, report = tmp_path / "r.db", tmp_path / "r.html"
    code, out, err = run_cli(["bench", "-s", "memory", "--memory-optimizations", "none,model_cpu_offload", "--no-isolate", "--db", str(db), "--report", str(report), *BENCH_FAST], capsys)
    assert code == 3  # the offload cell failed (no CUDA) and says why; the other cell is stored
    assert "needs a CUDA device" in err
    with Store(db) as store:
        run = store.get_run("latest")
    assert [c.status for c in run.cells] == ["ok", "failed"]
    assert report.is_file() and "<html" in report.read_text()[:200].lower()


def test_bench_name_labels_the_run_for_every_run_reference(tmp_path, capsys):
    db = tmp_path / "n.db"
    code, _, err = run_cli(["bench", "-s", "steps", "--step-counts", "1", "--name", "baseline", "--db", str(db), "--no-report", *BENCH_FAST], capsys)
    assert code == 0, err
    with Store(db) as store:
        assert store.get_run("baseline").name == "baseline"
    code, out, _ = run_cli(["show", "baseline", "--db", str(db)], capsys)
    assert code == 0 and "steps" in out
    code, _, err = run_cli(["bench", "--resume", "baseline", "--name", "other", "--db", str(db), "--no-report"], capsys)
    assert code == 2 and "--name labels a new run" in err
    # a resume reruns the stored config: options that change what is measured are refused, not dropped
    code, _, err = run_cli(["bench", "--resume", "baseline", "-O", "none", "-s", "batch", "--db", str(db), "--no-report"], capsys)
    assert code == 2 and "--optimize, --suite would change what it measures" in err  # the flags as typed (-s is --suite)
    code, _, err = run_cli(["bench", "--resume", "baseline", "--threads", "1", "--db", str(db), "--no-report", "--no-progress"], capsys)
    assert code == 0 and "resuming run 1" in err
    code, _, err = run_cli(["bench", "-s", "steps", "--step-counts", "1", "--name", "latest-2", "--db", str(db), "--no-report", *BENCH_FAST], capsys)
    assert code == 2 and "bad run name" in err
    with Store(db) as store:
        assert len(store.list_runs()) == 1  # the refused name stored nothing


def test_bad_config_stores_nothing_and_loses_nothing(tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["bench", "-s", "steps", "--step-counts", "1", "--db", str(db), "--no-report", *BENCH_FAST[:-5], "--no-progress"]) == 0
    before = db.read_bytes()
    (tmp_path / "bad.yaml").write_text("stpes: 3\n")
    for args in (["-s", "schedulrs"], ["--config", str(tmp_path / "bad.yaml")], ["--width", "33"], ["--resume", "99"]):
        code, _, err = run_cli(["bench", "--db", str(db), "--no-report", *args], capsys)
        assert code == 2 and err.startswith("error:"), (args, err)
    with Store(db) as store:
        assert len(store.list_runs()) == 1 and len(store.get_run(1).cells) == 1
    assert len(db.read_bytes()) >= len(before)


def test_runs_show_compare_report(tmp_path, capsys):
    db = tmp_path / "c.db"
    with Store(db) as store:
        a = store.create_run("a", {}, {})
        b = store.create_run("b", {}, {})
        import numpy as np

        rng = np.random.default_rng(0)
        base = list(1.0 + 0.01 * rng.standard_normal(5))
        for rid, factor in ((a, 1.0), (b, 1.3)):  # an injected 30% slowdown
            store.add_cell(rid, CellResult("schedulers", {"scheduler": "euler"}, {}, metrics={"s_per_image": float(np.median(base)) * factor}, samples={"call_s": [x * factor for x in base]}))
            store.finish_run(rid)
    code, out, _ = run_cli(["runs", "--db", str(db)], capsys)
    assert code == 0 and "a" in out
    code, out, _ = run_cli(["show", "1", "--db", str(db)], capsys)
    assert code == 0 and "euler" in out
    assert run_cli(["compare", "1", "2", "--db", str(db)], capsys)[0] == 1
    assert run_cli(["compare", "1", "1", "--db", str(db)], capsys)[0] == 0
    assert run_cli(["compare", "latest~1", "latest", "--db", str(db), "--threshold", "50%"], capsys)[0] == 0
    for fmt, ext in (("markdown", "md"), ("csv", "csv"), ("json", "json"), ("html", "html")):
        code, out, _ = run_cli(["report", "2", "--format", fmt, "--out", str(tmp_path / f"r.{ext}"), "--db", str(db)], capsys)
        assert code == 0 and (tmp_path / f"r.{ext}").stat().st_size > 0
    code, out, _ = run_cli(["report", "2", "--format", "console", "--db", str(db)], capsys)
    assert code == 0 and "schedulers" in out
    code, _, err = run_cli(["show", "7", "--db", str(db)], capsys)
    assert code == 2 and "run 7" in err
    code, _, err = run_cli(["runs", "--db", str(tmp_path / "none.db")], capsys)
    assert code == 2 and "diffprof bench" in err


@pytest.fixture(scope="module")
def concurrent_bench(tmp_path_factory):
    """Two bench processes started together on one .db, both waited for: the concurrency check and
    the self-contained-file check read the same finished store (each cell of each run stored once)."""
    db = tmp_path_factory.mktemp("concurrent") / "shared.db"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "diffprof", "bench", "-s", "steps", "--step-counts", "1,2", "--db", str(db), "--no-report", *BENCH_FAST]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    return db, len(procs)


@pytest.mark.slow
def test_concurrent_bench_processes_lose_no_rows(concurrent_bench):
    """Concurrent bench processes on one store (two here; tests/test_store_concurrency.py runs more,
    and a killed one) each keep their run and every cell of it."""
    db, processes = concurrent_bench
    with Store(db) as store:
        runs = store.list_runs()
        assert len(runs) == processes
        assert all(len(store.get_run(r.id).cells) == 2 for r in runs)


def test_bench_leaves_one_self_contained_store_file(concurrent_bench, tmp_path):
    """After bench exits, the .db alone holds the run: a user who copies only it loses nothing."""
    db, processes = concurrent_bench
    assert not Path(f"{db}-wal").exists()
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    with Store(copy) as store:
        runs = store.list_runs()
        assert len(runs) == processes
        assert all(len(store.get_run(r.id).cells) == 2 for r in runs)


def test_help_everywhere(capsys):
    for cmd in ([], ["generate"], ["bench"], ["models"], ["schedulers"], ["optimizations"], ["suites"], ["runs"], ["show"], ["compare"], ["report"], ["tune"], ["calibrate"], ["estimate"], ["device"]):
        with pytest.raises(SystemExit) as info:
            from diffprof.cli.app import app
            from diffprof.cli import commands  # noqa: F401

            app([*cmd, "--help"], prog_name="diffprof")
        assert info.value.code == 0
        assert "Usage" in capsys.readouterr().out


def test_listing_commands(capsys):
    for cmd, word in ((["models"], "sdxl"), (["schedulers"], "dpmpp_2m_karras"), (["optimizations"], "sequential_cpu_offload"), (["suites"], "resolutions")):
        code, out, _ = run_cli(cmd, capsys)
        assert code == 0 and word in out


def test_materialize_then_generate_from_the_folder(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert run_cli(["models", "materialize", "tiny-sd", "--out", str(out)], capsys)[0] == 0
    assert (out / "model_index.json").is_file()
    code, stdout, _ = run_cli([*GEN, "--model", str(out), "--out", str(tmp_path / "img")], capsys)
    assert code == 0 and "local" in stdout
    assert len(list(Path(tmp_path / "img").glob("*.png"))) == 1


@pytest.mark.slow  # two diffprof processes (the console width is fixed at import)
def test_tables_written_to_a_pipe_are_not_squeezed_to_80_columns():
    """`diffprof ... > log` (and CI logs): rich would lay tables out in 80 columns there; diffprof
    gives them room, and COLUMNS still decides when set."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    wide = subprocess.run([sys.executable, "-m", "diffprof", "optimizations"], capture_output=True, text=True, env=env, timeout=300)
    narrow = subprocess.run([sys.executable, "-m", "diffprof", "optimizations"], capture_output=True, text=True, env=dict(env, COLUMNS="70"), timeout=300)
    assert wide.returncode == 0 and narrow.returncode == 0
    assert 80 < max(map(len, wide.stdout.splitlines())) <= 200
    assert max(map(len, narrow.stdout.splitlines())) <= 70


@pytest.mark.parametrize("args", [["bnech"], ["generate", "x", "--steps", "abc"], ["compare"], ["report", "--bogus-flag"], ["runs", "--limit", "x"], []])
def test_command_line_parse_errors_are_usage_errors_not_tracebacks(args, capsys):
    """typer 0.2x raises parse errors from its bundled copy of click; they must still end as exit 2
    (they escaped as tracebacks with exit 1), as the two lines every refusal prints: `error:` with
    click's message and `hint:` naming the command's --help. `diffprof` alone shows the help."""
    code, out, err = run_cli(args, capsys)
    assert code == 2
    text = out + err
    assert "Traceback" not in text
    if not args:
        assert "Usage" in text
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: run `diffprof") and "--help`" in lines[1], err


def test_generate_into_a_used_folder_keeps_the_earlier_images(tmp_path, capsys):
    """Same row, image and seed twice: the second run's files get a suffix instead of replacing the first's."""
    out = tmp_path / "img"
    assert run_cli([*GEN, "--out", str(out)], capsys)[0] == 0
    assert run_cli([*GEN[:1], "a small green square", *GEN[2:], "--out", str(out)], capsys)[0] == 0
    sidecars = sorted(out.glob("*.json"))
    assert [p.name for p in sidecars] == ["0001-00-seed0-2.json", "0001-00-seed0.json"]
    prompts = {json.loads(p.read_text())["prompt"] for p in sidecars}
    assert prompts == {GEN[1], "a small green square"} and len(list(out.glob("*.png"))) == 2


def test_compare_fails_when_the_runs_share_no_cell(tmp_path, capsys):
    """A CI gate `compare baseline latest` must not pass when nothing was compared."""
    db = tmp_path / "c.db"
    with Store(db) as store:
        for name, scheduler in (("a", "euler"), ("b", "ddim")):
            rid = store.create_run(name, {}, {})
            store.add_cell(rid, CellResult("schedulers", {"scheduler": scheduler}, {}, metrics={"s_per_image": 1.0}, samples={"call_s": [1.0, 1.01, 0.99]}))
            store.finish_run(rid)
    code, out, err = run_cli(["compare", "1", "2", "--db", str(db)], capsys)
    assert code == 2 and "share no cell" in err and "1 cell only in A" in out


@pytest.mark.parametrize("extra", [["-s", ""], ["-s", "steps", "--step-counts", ""]])
def test_bench_that_expands_to_no_cells_stores_nothing(tmp_path, capsys, extra):
    db = tmp_path / "e.db"
    code, _, err = run_cli(["bench", *extra, *BENCH_FAST, "--db", str(db), "--no-report"], capsys)
    assert code == 2 and "no cells" in err
    if db.exists():
        with Store(db) as store:
            assert store.list_runs() == []


def test_an_unwritable_output_path_is_a_clean_error_before_anything_is_measured(tmp_path, capsys):
    """A file where a folder should be: one error line, exit 2, no traceback; calibrate refuses
    before it measures (it used to fail after the whole calibration, losing the fit)."""
    blocker = tmp_path / "afile"
    blocker.write_text("")
    code, out, err = run_cli(["report", "latest", "--format", "html", "-o", str(blocker / "r.html"), "--db", str(tmp_path / "none.db")], capsys)
    assert code == 2 and "Traceback" not in err
    db = tmp_path / "cal.db"
    code, _, err = run_cli(["calibrate", "--model", "tiny-sd", "--out", str(blocker / "fit.json"), "--db", str(db), "--threads", "1", "--no-progress"], capsys)
    assert code == 2 and "error:" in err and str(blocker) in err
    assert not db.exists() or Store(db).list_runs() == []


@pytest.mark.parametrize(("args", "words"), [
    (["device", "--device", "bogus"], "is not a device"),
    ([*GEN[:-2], "--threads", "-2"], "threads must be a whole number from 1 to 4096"),
    ([*GEN[:-2], "--threads", "0"], "threads must be a whole number from 1 to 4096"),
    (["bench", "-s", "steps", *BENCH_FAST[:-3], "--threads", "-2", "--no-progress"], "threads must be a whole number from 1 to 4096"),
])
def test_bad_device_or_thread_counts_are_one_line_errors(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(args, capsys)
    assert code == 2 and words in err and "Traceback" not in err


def test_generate_on_a_missing_gpu_names_the_fix(capsys, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli([*GEN, "--device", "cuda", "--out", str(tmp_path / "img")], capsys)
    assert code == 2 and "no CUDA GPU is visible" in err


@pytest.mark.parametrize(("extra", "words"), [
    (["--model", "nosuch"], "unknown model 'nosuch'"),
    (["-s", "pipelines", "--models", "tiny-sd,nosuch"], "unknown model 'nosuch'"),
    (["--device", "cuda"], "no CUDA GPU is visible"),
])
def test_bench_refuses_a_model_or_device_that_every_cell_would_fail_on(tmp_path, capsys, monkeypatch, extra, words):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    db = tmp_path / "m.db"
    code, _, err = run_cli(["bench", "-s", "steps", "--step-counts", "1", *extra, *BENCH_FAST, "--db", str(db), "--no-report"], capsys)
    assert code == 2 and words in err
    assert not db.exists() or Store(db).list_runs() == []


@pytest.mark.parametrize(("args", "words"), [
    ([*GEN, "--prompts", "p.txt"], "not both"),
    ([*GEN, "--image", "p.png"], "--image and --mask are for img2img and inpainting"),
    (["bench", "-s", "steps", *BENCH_FAST, "--report", "x.html", "--no-report"], "--no-report writes none"),
])
def test_conflicting_inputs_are_refused_not_dropped(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.txt").write_text("a small green square\n")
    code, _, err = run_cli(args, capsys)
    assert code == 2 and words in " ".join(err.split())
    assert not list(tmp_path.glob("diffprof-images/*.png")) and not (tmp_path / "diffprof.db").exists()


def test_estimate_of_an_unknown_model_names_the_typo(tmp_path, capsys):
    """Not 'no calibration for nosuch' with a hint to calibrate it, which fails the same way."""
    code, _, err = run_cli(["estimate", "--model", "nosuch", "--db", str(tmp_path / "none.db")], capsys)
    assert code == 2 and "unknown model 'nosuch'" in err and "calibrate" not in err


def test_show_keeps_each_rows_cell_readable_in_an_ordinary_terminal(tmp_path, capsys, monkeypatch):
    """With every metric as a column, the suite, label and status columns shrank to nothing at 120
    columns; by default show keeps the key metrics, and the identifying columns never shrink away."""
    monkeypatch.setenv("COLUMNS", "120")
    db = tmp_path / "s.db"
    metrics = {m: 1.0 for m in ("s_per_image", "images_per_s", "steps_per_s", "s_per_call", "text_encode_s", "step_median_s", "vae_decode_s",
                                "peak_allocated_bytes", "peak_reserved_bytes", "host_peak_rss_bytes", "load_s", "compile_s", "flops_per_image",
                                "achieved_tflops", "mfu", "energy_j_per_image", "images_per_kj", "first_call_s", "unet_evals")}
    with Store(db) as store:
        rid = store.create_run("bench", {}, {})
        for scheduler in ("euler", "dpmpp_2m_karras"):
            store.add_cell(rid, CellResult("schedulers", {"scheduler": scheduler}, {}, metrics=metrics, samples={"call_s": [1.0, 1.0, 1.0]}))
        store.finish_run(rid)
    import importlib

    app_module = importlib.import_module("diffprof.cli.app")  # the module; `diffprof.cli.app` the attribute is the Typer app
    monkeypatch.setattr(app_module.console, "width", 120)
    code, out, _ = run_cli(["show", "1", "--db", str(db)], capsys)
    assert code == 0 and "dpmpp_2m_karras" in out and "schedulers" in out and " ok " in out
    code, out, _ = run_cli(["show", "1", "--db", str(db), "--full"], capsys)
    assert code == 0 and "dpmpp" in out


def test_calibrate_too_small_to_fit_is_refused_before_measuring(tmp_path, capsys):
    db = tmp_path / "c.db"
    code, _, err = run_cli(["calibrate", "--model", "tiny-sd", "--resolutions", "64x64", "--batch-sizes", "1", "--db", str(db), "--threads", "1", "--no-progress"], capsys)
    assert code == 2 and "a fit needs at least 3" in " ".join(err.split())
    assert not db.exists() or Store(db).list_runs() == []


# ------------------------------------------------------------- options from the schema
#: Every flag each command had before its options were generated from the schema (issue 20): none may go.
FLAGS = {
    "bench": "--batch --batch-sizes --config --db --device --executor --guidance --guidance-scales --height --isolate --memory-optimizations "
             "--dry-run --force --model --models --name --no-isolate --no-progress --no-report --optimize --precision --precisions --profile-level --progress "
             "--prompt --ray-address --repeats --report --resolutions --resume --scheduler --schedulers --seed --step-counts --steps --suite "
             "--task --tasks --threads --trace --warmup --weights --width --workers -O -c -s --rounds",
    "generate": "--allow-pickle --batch --config --device --dry-run --force --guidance --height --image --mask --model --negative-prompt --optimize --out "
                "--precision --profile-level --profile-out --prompts --scheduler --seed --steps --strength --task --threads --warmup --weights --width -O -c",
    "tune": "--clip-model --config --db --device --dry-run --guidance --height --max-memory --metric --min-quality --model --no-progress --optimizations "
            "--out --precisions --progress --prompt --prompts --reference-steps --repeats --schedulers --step-counts --threads --tolerance --weights --width -c -o "
            "--min-psnr --min-gain --rounds",
    "calibrate": "--batch-sizes --db --device --dry-run --force --isolate --model --no-isolate --no-progress --optimize --out --precision --progress --repeats "
                 "--resolutions --steps --threads --warmup --weights -O --rounds",
}


def _command(name):
    import typer

    from diffprof.cli import commands  # noqa: F401
    from diffprof.cli.app import app

    return typer.main.get_command(app).commands[name]


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_every_flag_a_command_had_is_still_there(name):
    flags = {o for p in _command(name).params for o in (*p.opts, *getattr(p, "secondary_opts", ())) if o.startswith("-")}
    assert flags == set(FLAGS[name].split())


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_every_field_a_command_exposes_is_an_option_with_its_help_and_default(name):
    """The schema's metadata names the commands of each field; each of them has the field's flag,
    short alias, help and default (shown by --help), so a new field is one line in the schema."""
    from diffprof.cli.options import specs_for
    from diffprof.config import RunConfig

    params = {p.name: p for p in _command(name).params}
    specs = specs_for(name)
    assert specs and {s.name for s in specs} <= set(params)
    for spec in specs:
        param = params[spec.name]
        assert spec.option in param.opts and (spec.short is None or spec.short in param.opts), spec.name
        assert param.help.startswith(spec.help), spec.name
        assert param.default == RunConfig.default_of(spec.name), spec.name
        assert param.multiple == spec.is_list, spec.name
    bench_only = {"suites", "schedulers", "executor"}
    assert (bench_only <= {s.name for s in specs}) == (name == "bench")


#: One non-default command-line value per field `bench` exposes, and what the config field becomes.
BENCH_VALUES = {
    "model": (["--model", "tiny-sd"], "tiny-sd"), "weights": (["--weights", "synthetic"], "synthetic"), "device": (["--device", "cpu"], "cpu"),
    "precision": (["--precision", "bf16"], "bf16"), "optimize": (["-O", "vae_slicing,vae_tiling", "-O", "fuse_qkv"], ["vae_slicing", "vae_tiling", "fuse_qkv"]),
    "threads": (["--threads", "2"], 2), "task": (["--task", "img2img"], "img2img"), "prompt": (["--prompt", "a blue square"], "a blue square"),
    "scheduler": (["--scheduler", "euler"], "euler"), "steps": (["--steps", "7"], 7), "guidance": (["--guidance", "3"], 3.0),
    "width": (["--width", "64"], 64), "height": (["--height", "48"], 48), "batch": (["--batch", "2"], 2), "seed": (["--seed", "9"], 9),
    "suites": (["-s", "steps,batch"], ["steps", "batch"]), "schedulers": (["--schedulers", "ddim", "--schedulers", "euler"], ["ddim", "euler"]),
    "resolutions": (["--resolutions", "64x64, 96x64"], ["64x64", "96x64"]), "memory_optimizations": (["--memory-optimizations", "none,vae_slicing+vae_tiling"], ["none", "vae_slicing+vae_tiling"]),
    "step_counts": (["--step-counts", "1,2", "--step-counts", "3"], [1, 2, 3]), "guidance_scales": (["--guidance-scales", "1,7.5"], [1.0, 7.5]),
    "batch_sizes": (["--batch-sizes", "1,3"], [1, 3]), "precisions": (["--precisions", "fp32,bfloat16"], ["fp32", "bf16"]),
    "tasks": (["--tasks", "inpaint"], ["inpaint"]), "models": (["--models", "tiny-sd"], ["tiny-sd"]), "repeats": (["--repeats", "5"], 5),
    "warmup": (["--warmup", "0"], 0), "rounds": (["--rounds", "4"], 4), "isolate": (["--isolate"], True), "executor": (["--executor", "local"], "local"),
    "workers": (["--workers", "2"], 2), "ray_address": (["--ray-address", "auto"], "auto"), "profile_level": (["--profile-level", "detailed"], "detailed"),
    "db": (["--db", "x.db"], "x.db"), "report": (["--report", "r.md"], "r.md"), "trace": (["--trace", "traces"], "traces"),
    "force": (["--force"], True),
}


def _overrides(command, args):
    """What a command decorated with ``config_options(command)`` receives for ``args``."""
    import typer
    from typer.testing import CliRunner

    from diffprof.cli.options import config_options

    got = {}
    app = typer.Typer()

    @app.command()
    @config_options(command)
    def cmd(*, overrides: dict) -> None:
        got.update(overrides)

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return got


def test_the_overrides_built_from_flags_are_what_from_mapping_gets():
    """Only the flags given, converted once (lists split at commas and repeats, numbers parsed); the
    config built from them holds exactly those values (ray_address needs the ray executor: checked alone)."""
    from diffprof.cli.options import specs_for
    from diffprof.config import RunConfig

    assert set(BENCH_VALUES) == {s.name for s in specs_for("bench")}  # a new bench field needs a line here
    args = [a for name, (flag, _) in BENCH_VALUES.items() if name not in ("ray_address", "workers") for a in flag]
    overrides = _overrides("bench", args)
    expected = {name: value for name, (_, value) in BENCH_VALUES.items() if name not in ("ray_address", "workers")}
    assert overrides == expected | {"precisions": ["fp32", "bfloat16"]}  # the schema, not the flag parser, normalizes names
    config = RunConfig.from_mapping(overrides)
    assert {name: getattr(config, name) for name in expected} == expected
    ray = _overrides("bench", [*BENCH_VALUES["executor"][0][:1], "ray", *BENCH_VALUES["workers"][0], *BENCH_VALUES["ray_address"][0]])
    assert ray == {"executor": "ray", "workers": 2, "ray_address": "auto"}
    assert _overrides("bench", []) == {} and _overrides("generate", ["--allow-pickle"]) == {"allow_pickle": True}
    assert _overrides("bench", ["-s", ""]) == {"suites": []}


def test_a_bad_list_entry_on_the_command_line_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(["bench", "--step-counts", "10,x", "--db", str(tmp_path / "x.db")], capsys)
    assert code == 2 and "error: step count takes whole numbers, got 'x'" in err and "Traceback" not in err
    assert not (tmp_path / "x.db").exists()


def test_generate_warm_up_calls_carry_the_negative_prompt(tmp_path, capsys, monkeypatch):
    """The warm-up request was built by hand and dropped negative_prompt, so the warm-up ran a
    different call (no negative embedding) than the jobs; both come from RunConfig.to_request now."""
    from diffprof.engine import Engine

    seen = []
    real = Engine.generate

    def spy(self, request=None, **kwargs):
        seen.append(request)
        return real(self, request, **kwargs)

    monkeypatch.setattr(Engine, "generate", spy)
    code, _, err = run_cli([*GEN, "--negative-prompt", "blurry", "--warmup", "1", "--out", str(tmp_path / "img")], capsys)
    assert code == 0, err
    assert len(seen) == 2 and [r.negative_prompt for r in seen] == ["blurry", "blurry"]
    assert seen[0] == seen[1]  # the warm-up is the first job's call
