"""Quality beside speed: the quality config, every metric path of measure_cell (adherence,
convergence with cached references, CLIP), the quality suite through the runner, the Pareto
front, and the report's quality plots."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from diffprof.analysis.pareto import front_cells, pareto_front, quality_metric_of
from diffprof.config import RunConfig
from diffprof.engine import Engine
from diffprof.errors import ConfigError
from diffprof.metrics import direction_of, metric
from diffprof.quality.detector import adherence
from diffprof.quality.metrics import latent_relative_error, psnr, ssim
from diffprof.quality.scoring import QUALITY_SEED, QualityCache, quality_metrics, quality_pairs
from diffprof.quality.shapes import parse_prompt
from diffprof.report import get_renderer
from diffprof.report.figure import png_description
from diffprof.report.image_plots import scheduler_step_grid
from diffprof.report.plots import quality_tradeoff, suite_plots
from diffprof.report.tables import quality_note, suite_table
from diffprof.results import CellResult, RunInfo
from diffprof.suites import SUITES
from diffprof.suites.base import Cell
from diffprof.suites.measure import measure_cell

SIZE = 32


def config(**kw) -> RunConfig:
    base = dict(model="tiny-sd", device="cpu", width=SIZE, height=SIZE, steps=2, repeats=1, warmup=0, quality_prompts=2, reference_steps=4, threads=1)
    base.update(kw)
    return RunConfig.from_mapping(base)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load("tiny-sd", device="cpu")


def regenerate(engine: Engine, cfg: RunConfig, pairs, **over):
    """The images (and latents) measure_cell should have scored, made independently."""
    outs = []
    for prompt, seed in pairs:
        outs.append(engine.generate(prompt=prompt, seed=seed, scheduler=over.get("scheduler", cfg.scheduler), steps=over.get("steps", cfg.steps),
                                    guidance=cfg.guidance, width=cfg.width, height=cfg.height))
    return outs


# ---------------------------------------------------------------------------------------------
# Config


def test_quality_fields_validate_and_teach():
    c = RunConfig()
    assert c.quality == ["auto"] and c.quality_prompts == 4 and c.reference_steps == 100 and c.clip_model is None
    with pytest.raises(ConfigError) as err:
        RunConfig.from_mapping({"quality": ["adherance"]})
    assert "unknown quality metric 'adherance'" in err.value.message and "did you mean 'adherence'" in err.value.hint
    with pytest.raises(ConfigError, match="cannot be combined"):
        RunConfig.from_mapping({"quality": ["none", "clip"]})
    with pytest.raises(ConfigError) as err:
        RunConfig.from_mapping({"quality": ["clip"]})
    assert "needs a CLIP model" in err.value.message and "clip_model" in err.value.hint
    from diffprof.suites.checks import check_config

    with pytest.raises(ConfigError, match="stochastic"):  # scheduler properties are the scheduler registry's: check_config knows them
        check_config(RunConfig.from_mapping({"reference_scheduler": "euler_a"}))
    with pytest.raises(ConfigError, match="quality_prompts must be a whole number >= 1"):
        RunConfig.from_mapping({"quality_prompts": 0})
    assert RunConfig.from_mapping({"quality": ["clip", "adherence"], "clip_model": "x"}).quality == ["clip", "adherence"]


def test_metric_units_and_directions():
    assert metric("psnr_db").unit == "dB"
    assert all(metric(m).unit == "" for m in ("adherence", "ssim", "latent_rel_error", "clip_score"))
    assert {m: direction_of(m) for m in ("adherence", "psnr_db", "ssim", "clip_score", "latent_rel_error")} == {
        "adherence": "higher", "psnr_db": "higher", "ssim": "higher", "clip_score": "higher", "latent_rel_error": "lower",
    }


def test_auto_scores_quality_suites_only_with_the_model_s_metric():
    tiny, shapes = replace(RunConfig(), model="tiny-sd"), replace(RunConfig(), model="shapes-sd")
    for suite in ("quality", "guidance", "tune"):
        assert quality_metrics(tiny, suite) == ("convergence",)
        assert quality_metrics(shapes, suite) == ("adherence",)
    # adherence needs no reference solve, so shapes-sd also scores the suites that change the drawing
    assert quality_metrics(shapes, "schedulers") == ("adherence",) and quality_metrics(shapes, "steps") == ("adherence",)
    assert quality_metrics(tiny, "schedulers") == () and quality_metrics(shapes, "batch") == ()
    explicit = replace(RunConfig(), quality=["clip", "adherence"])
    assert quality_metrics(explicit, "resolutions") == ("adherence", "clip")  # explicit: every suite, fixed order
    assert quality_metrics(replace(RunConfig(), quality=["none"]), "quality") == ()


def test_quality_pairs_are_fixed_held_out_and_prefix_stable():
    five = quality_pairs(replace(RunConfig(), quality_prompts=5), ["adherence"])
    two = quality_pairs(replace(RunConfig(), quality_prompts=2), ["adherence"])
    assert two == five[:2] and [s for _, s in five] == [QUALITY_SEED + i for i in range(5)]
    assert all(parse_prompt(p) for p, _ in five) and len({p for p, _ in five}) > 1  # real, varied shapes prompts
    own = quality_pairs(replace(RunConfig(), quality_prompts=3, prompt="a castle"), ["convergence"])
    assert own == [("a castle", QUALITY_SEED + i) for i in range(3)]


# ---------------------------------------------------------------------------------------------
# measure_cell: every metric path


def test_adherence_scores_the_cell_s_own_images_outside_the_timed_region(engine):
    cfg = config(quality=["adherence"], scheduler="euler", repeats=2)
    result = measure_cell(engine, Cell("schedulers", {"scheduler": "euler"}, cfg), quality=QualityCache())
    pairs = quality_pairs(cfg, ["adherence"])
    expected = [adherence(o.images[0], p) for o, (p, _) in zip(regenerate(engine, cfg, pairs), pairs)]
    assert result.samples["adherence"] == pytest.approx(expected)
    assert result.metrics["adherence"] == pytest.approx(np.mean(expected))
    assert len(result.samples["call_s"]) == 2  # the quality calls are not timing samples
    assert result.settings["quality"] == {"metrics": ["adherence"], "prompts": 2, "prompt_set": "shapes scenes", "seeds": [QUALITY_SEED, QUALITY_SEED + 1]}
    assert "psnr_db" not in result.metrics and "clip_score" not in result.metrics


def test_convergence_against_cached_references(engine, tmp_path):
    cache = QualityCache(tmp_path / "refs")
    cfg = config(quality=["convergence"], scheduler="euler", steps=2)
    a = measure_cell(engine, Cell("guidance", {}, cfg), quality=cache)
    assert cache.solved == 2  # one reference per (prompt, seed)
    # expected: direct PSNR/SSIM/latent error against an independently solved reference
    pairs = quality_pairs(cfg, ["convergence"])
    refs = regenerate(engine, cfg, pairs, scheduler=cfg.reference_scheduler, steps=cfg.reference_steps)
    outs = regenerate(engine, cfg, pairs)
    assert a.samples["psnr_db"] == pytest.approx([psnr(o.images[0], r.images[0]) for o, r in zip(outs, refs)])
    assert a.samples["ssim"] == pytest.approx([ssim(o.images[0], r.images[0]) for o, r in zip(outs, refs)])
    assert a.samples["latent_rel_error"] == pytest.approx([latent_relative_error(o.latents, r.latents) for o, r in zip(outs, refs)], rel=1e-5)
    assert a.metrics["psnr_db"] == pytest.approx(np.mean(a.samples["psnr_db"]))
    assert a.settings["quality"]["reference"] == "dpmpp_2m, 4 steps, fp32"
    # another scheduler/step count on the same prompts reuses the references
    b = measure_cell(engine, Cell("guidance", {}, replace(cfg, scheduler="ddim", steps=3)), quality=cache)
    assert cache.solved == 2 and b.metrics["psnr_db"] != a.metrics["psnr_db"]
    # the reference setting itself matches its reference exactly
    exact = measure_cell(engine, Cell("guidance", {}, replace(cfg, scheduler="dpmpp_2m", steps=4)), quality=cache)
    assert math.isinf(exact.metrics["psnr_db"]) and exact.metrics["ssim"] == pytest.approx(1.0) and exact.metrics["latent_rel_error"] == 0.0
    # a new guidance scale needs new references
    measure_cell(engine, Cell("guidance", {}, replace(cfg, guidance=3.0)), quality=cache)
    assert cache.solved == 4
    # a fresh cache on the same folder solves nothing and scores the same
    again = QualityCache(tmp_path / "refs")
    c = measure_cell(engine, Cell("guidance", {}, cfg), quality=again)
    assert again.solved == 0 and c.samples["psnr_db"] == pytest.approx(a.samples["psnr_db"])
    assert len(list((tmp_path / "refs").glob("*.npz"))) == 4


def test_a_damaged_reference_file_is_solved_again(engine, tmp_path):
    cfg = config(quality=["convergence"], quality_prompts=1)
    measure_cell(engine, Cell("quality", {}, cfg), quality=QualityCache(tmp_path))
    (file,) = tmp_path.glob("*.npz")
    file.write_bytes(b"not a zip")
    cache = QualityCache(tmp_path)
    result = measure_cell(engine, Cell("quality", {}, cfg), quality=cache)
    assert cache.solved == 1 and math.isfinite(result.metrics["psnr_db"])


def test_a_reference_solve_the_model_refuses_says_it_was_the_reference(engine):
    """SANA-Sprint runs 2 steps only: its own 2-step call works, the 4-step reference does not, and the
    error must say so (and how to change the reference), not look like the cell's own call failed."""
    from diffprof.quality.scoring import score_quality

    class TwoStepsOnly:
        def __getattr__(self, name):
            return getattr(engine, name)

        def generate(self, request):
            if request.steps != 2:
                raise ValueError("Intermediate timesteps for SCM is not supported when num_inference_steps != 2.")
            return engine.generate(request)

    cfg = config(quality=["convergence"], quality_prompts=1)
    with pytest.raises(ConfigError) as err:
        score_quality(TwoStepsOnly(), cfg, ["convergence"], QualityCache(), cfg.to_request())
    assert err.value.message == ("the quality reference solve (dpmpp_2m, 4 steps) failed: ValueError: "
                                 "Intermediate timesteps for SCM is not supported when num_inference_steps != 2.")
    assert "reference_steps" in err.value.hint and "quality: [none]" in err.value.hint


def test_auto_quality_in_the_guidance_suite_and_none_elsewhere(engine):
    guided = measure_cell(engine, Cell("guidance", {"guidance": 3.0}, config(guidance=3.0)))
    assert {"psnr_db", "ssim", "latent_rel_error"} <= set(guided.metrics)
    plain = measure_cell(engine, Cell("steps", {"steps": 2}, config()))
    assert not {"psnr_db", "adherence", "clip_score"} & set(plain.metrics) and "quality" not in plain.settings


def test_clip_score_with_a_local_clip(engine, tiny_clip):
    from diffprof.quality.clip_score import ClipScorer

    cache = QualityCache()
    cfg = config(quality=["clip", "adherence"], clip_model=str(tiny_clip))
    result = measure_cell(engine, Cell("quality", {}, cfg), quality=cache)
    pairs = quality_pairs(cfg, ["adherence", "clip"])
    images = [o.images[0] for o in regenerate(engine, cfg, pairs)]
    expected = ClipScorer(str(tiny_clip)).score(images, [p for p, _ in pairs])
    assert result.samples["clip_score"] == pytest.approx(expected, abs=1e-4)
    assert result.metrics["clip_score"] == pytest.approx(np.mean(expected), abs=1e-4)
    assert result.settings["quality"]["clip_model"] == str(tiny_clip) and "adherence" in result.metrics
    measure_cell(engine, Cell("quality", {}, replace(cfg, steps=1)), quality=cache)
    assert list(cache.clip_scorers) == [str(tiny_clip)]  # loaded once per run


def test_clip_model_that_cannot_load_fails_the_cell_with_the_reason(engine, tmp_path):
    from diffprof.errors import ModelError

    cfg = config(quality=["clip"], clip_model=str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="no CLIP model folder"):
        measure_cell(engine, Cell("quality", {}, cfg))


# ---------------------------------------------------------------------------------------------
# The quality suite


def test_quality_suite_is_scheduler_by_steps():
    cfg = RunConfig.from_mapping({"schedulers": ["euler", "ddim"], "step_counts": [4, 8, 12]})
    cells = SUITES["quality"]().cells(cfg)
    assert [c.labels for c in cells] == [{"scheduler": s, "steps": n} for s in ("euler", "ddim") for n in (4, 8, 12)]
    assert all((c.config.scheduler, c.config.steps) == (c.labels["scheduler"], c.labels["steps"]) for c in cells)


def test_quality_and_guidance_suites_through_the_runner_and_the_report(tmp_path):
    from diffprof.store import Store
    from diffprof.suites.runner import Runner

    cfg = config(suites=["quality", "guidance", "schedulers"], schedulers=["euler", "dpmpp_2m"], step_counts=[1, 2], guidance_scales=[1.0, 3.0], db=str(tmp_path / "r.db"))
    store = Store(cfg.db)
    summary = Runner(cfg, store, progress=False).run()
    assert summary.failed == 0 and summary.ok == 4 + 2 + 2
    run = store.get_run(summary.run_id, artifacts=True)
    by_suite = {s: [c for c in run.cells if c.suite == s] for s in run.suites()}
    for suite in ("quality", "guidance"):
        assert all({"psnr_db", "ssim", "latent_rel_error"} <= set(c.metrics) for c in by_suite[suite]), suite
        assert all(len(c.samples["psnr_db"]) == 2 for c in by_suite[suite])
    assert not any("psnr_db" in c.metrics for c in by_suite["schedulers"])
    table = suite_table("quality", by_suite["quality"])
    assert {"psnr_db", "ssim", "latent_rel_error"} <= {col.key for col in table.columns}
    assert "PSNR (dB)" in table.headers and not table.rows[0].text["psnr_db"].endswith(" dB")  # the header names the unit
    html = get_renderer("html").render(run)
    assert 'data-plot="quality_tradeoff"' in html and 'data-plot="scheduler_step_grid"' in html
    assert html.count('data-plot="quality_tradeoff"') == 2  # quality and guidance
    assert "PSNR, SSIM and latent error against dpmpp_2m, 4 steps, fp32 on the cell prompt at 2 seeds (10000-10001)" in html
    kinds = [p.kind for p in suite_plots("quality", by_suite["quality"])]
    assert kinds[0] == "quality_tradeoff" and "scheduler_step_grid" in kinds and "image_grid" not in kinds


# ---------------------------------------------------------------------------------------------
# Pareto front


def brute_front(times, qualities, direction):
    sign = 1 if direction == "higher" else -1
    pts = [(t, sign * q) for t, q in zip(times, qualities)]
    out = []
    for i, (t, q) in enumerate(pts):
        if math.isnan(t) or math.isnan(q):
            continue
        dominated = any(t2 <= t and q2 >= q and (t2 < t or q2 > q) for j, (t2, q2) in enumerate(pts) if j != i and not (math.isnan(t2) or math.isnan(q2)))
        if not dominated:
            out.append(i)
    return sorted(out, key=lambda i: (times[i], -sign * qualities[i], i))


def test_pareto_front_known_points():
    times = [1.0, 2.0, 3.0, 1.5, 2.0, 0.5]
    quality = [0.5, 0.9, 0.95, 0.4, 0.9, 0.1]
    assert pareto_front(times, quality) == [5, 0, 1, 4, 2]  # (1.5, 0.4) is beaten by (1.0, 0.5); duplicates both kept
    assert pareto_front(times, quality, "lower") == [5]  # lower quality is better: the fastest is also the best
    assert pareto_front([1.0, 1.0, 2.0], [0.5, 0.7, 0.9]) == [1, 2]  # equal time: only the better one
    assert pareto_front([1.0, 2.0], [0.5, 0.5]) == [0]  # equal quality: only the faster one
    assert pareto_front([1.0, float("nan"), 2.0], [0.1, 0.9, float("nan")]) == [0]
    assert pareto_front([1.0, 2.0], [30.0, float("inf")]) == [0, 1]  # an exact match (inf dB) is a value
    assert pareto_front([], []) == []
    with pytest.raises(ValueError):
        pareto_front([1.0], [])


@pytest.mark.parametrize("direction", ["higher", "lower"])
def test_pareto_front_matches_brute_force(direction):
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 25))
        times = [float(v) for v in rng.integers(1, 8, n)]  # small ranges: many ties
        quality = [float(v) for v in rng.integers(0, 6, n)]
        if rng.random() < 0.3:
            quality[int(rng.integers(n))] = float("nan")
        assert pareto_front(times, quality, direction) == brute_front(times, quality, direction)


def qcell(suite, labels, t, metrics, prompts=4, seed=0, image=True):
    buf = io.BytesIO()
    Image.fromarray(np.full((24, 24, 3), (40 * seed) % 256, np.uint8)).save(buf, "PNG")
    about = {"metrics": ["adherence"], "prompts": prompts, "prompt_set": "shapes scenes", "seeds": [10000, 10000 + prompts - 1]}
    return CellResult(suite, labels, {"model": "shapes-sd", "quality": about}, metrics={"s_per_image": t, **metrics},
                      samples={"call_s": [t]}, artifacts={"image.png": buf.getvalue()} if image else {})


def grid_cells():
    cells, seed = [], 0
    for sched, base in (("euler", 0.5), ("dpmpp_2m", 0.75)):
        for steps in (5, 10, 20):
            seed += 1
            q = min(1.0, base + steps / 50)
            cells.append(qcell("quality", {"scheduler": sched, "steps": steps}, 0.01 * steps, {"adherence": q, "latent_rel_error": 1 - q}, seed=seed))
    return cells


def test_front_cells_and_metric_choice():
    cells = grid_cells()
    assert quality_metric_of(cells) == "adherence"
    front = front_cells(cells, "adherence")
    assert [(p.cell.labels["scheduler"], p.cell.labels["steps"]) for p in front] == [("dpmpp_2m", 5), ("dpmpp_2m", 10), ("dpmpp_2m", 20)]
    assert [p.cell.labels for p in front_cells(cells, "latent_rel_error")] == [p.cell.labels for p in front]
    assert quality_metric_of([CellResult("x", {}, {}, metrics={"s_per_image": 1.0})]) is None


# ---------------------------------------------------------------------------------------------
# Report plots


def test_quality_tradeoff_names_the_front_and_drops_screens():
    cells = grid_cells()
    # a screen on fewer prompts that would dominate everything if it were compared
    cells.append(qcell("tune", {"scheduler": "unipc", "steps": 5}, 0.001, {"adherence": 1.0}, prompts=1))
    description = quality_tradeoff(cells).description
    assert description == (
        "Pareto front of time vs adherence: scheduler=dpmpp_2m, steps=5 (50 ms, 0.85); "
        "scheduler=dpmpp_2m, steps=10 (100 ms, 0.95); scheduler=dpmpp_2m, steps=20 (200 ms, 1)"
    )
    lower = [CellResult(c.suite, c.labels, c.settings, metrics={"s_per_image": c.metrics["s_per_image"], "latent_rel_error": c.metrics["latent_rel_error"]}) for c in grid_cells()]
    assert "Pareto front of time vs latent error: scheduler=dpmpp_2m, steps=5" in quality_tradeoff(lower).description
    assert quality_tradeoff([CellResult("x", {}, {}, metrics={"s_per_image": 1.0})]) is None


def test_scheduler_step_grid_layout():
    cells = grid_cells()
    cells[4].artifacts.clear()  # dpmpp_2m at 10 steps kept no image: a blank in its place
    drawn = scheduler_step_grid(cells)
    assert drawn.description == png_description(drawn.png) == "5 images: rows scheduler (euler, dpmpp_2m), columns steps (5, 10, 20), each with its adherence"
    image = Image.open(io.BytesIO(drawn.png))
    assert image.width > image.height  # three columns, two rows
    assert scheduler_step_grid([CellResult("x", {"knob": 1}, {}, metrics={"s_per_image": 1.0})]) is None


def test_quality_note_says_what_was_scored():
    cells = grid_cells() + [qcell("tune", {}, 1.0, {"adherence": 0.5}, prompts=1)]
    note = quality_note(cells)
    assert note == (
        "Quality, scored outside the timed region: adherence (shapes detector) on 4 shapes scenes (seeds 10000-10003); "
        "or adherence (shapes detector) on 1 shapes scenes (seed 10000)."
    )
    assert quality_note([CellResult("x", {}, {})]) is None
    run = RunInfo(1, "2026-11-26T10:00:00", None, "finished", "", {}, {}, grid_cells())
    html = get_renderer("html").render(run)
    assert '<p class="quality">Quality, scored outside the timed region: adherence' in html
    assert "Shared settings: model=shapes-sd</p>" in html  # the quality dict is said once, in words
