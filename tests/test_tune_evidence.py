"""tune decides on the same evidence as compare (issue 17): a gain must be beyond the noise of rounds
timed together; the summary names its baseline and diffprof's default; fidelity to a converged
reference is held beside adherence. Synthetic cells and rounds (no clock needed: the rounds are
injected), then shapes-sd for real on the issue's case (DDIM 10 steps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_tune import ADHERENCE, FakeModel, result_of, space

from diffprof.errors import ConfigError
from diffprof.tune import TUNE_METRICS, Search, Setting
from diffprof.tune.constraints import FIDELITY_TOLERANCE_DB, FidelityRule, fidelity_rule
from diffprof.tune.decide import decide

CPU = torch.device("cpu")


class Rounds(FakeModel):
    """FakeModel whose single measurements can be off by a factor per optimization (``single``), and
    whose timing rounds scatter log-normally by ``noise`` around the true time (``layout`` replaces
    the true speed of a layout switch; 1.0: no gain at all, an A/A pair)."""

    def __init__(self, *, noise: float = 0.0, single: dict[str, float] | None = None, layout: float | None = None, seed: int = 0,
                 psnr: bool = False) -> None:
        super().__init__()
        self.noise, self.single, self.psnr = noise, single or {}, psnr
        self.layout = dict(self.LAYOUT) if layout is None else {"none": 1.0, "channels_last": layout}
        self.rng = np.random.default_rng(seed)
        self.timed: dict[Setting, list[float]] = {}
        self.verify_calls: list[tuple[tuple[Setting, ...], int]] = []

    def time(self, s: Setting) -> float:
        return 0.02 + s.steps * self.PER_STEP[s.precision] * self.layout[s.optimization]

    def fidelity(self, s: Setting) -> float:
        return 45.0 - 170.0 / s.steps  # 50 steps: 41.6 dB; 20: 36.5; 10: 28

    def __call__(self, setting, stage, prompts):
        cell = super().__call__(setting, stage, prompts)
        if cell.ok:
            cell.metrics["s_per_image"] *= self.single.get(setting.optimization, 1.0)
            if self.psnr:
                cell.metrics["psnr_db"] = self.fidelity(setting)
        return cell

    def verify(self, settings, rounds):
        self.verify_calls.append((tuple(settings), rounds))
        for _ in range(rounds):
            for s in settings:
                self.timed.setdefault(s, []).append(self.time(s) * math.exp(self.noise * self.rng.standard_normal()))
        return {s: list(self.timed[s]) for s in settings}


def layout_space():
    return space(precisions=["fp32"], optimizations=["none", "channels_last"])


def run(model: Rounds, sp=None, **kw):
    sp = sp or layout_space()
    outcome = Search(model, sp, ADHERENCE, prompts=8, screen_prompts=2, verify=model.verify, default=sp.diffprof_default, **kw).run()
    return outcome, result_of(outcome, sp)


# ---------------------------------------------------------------------------------------------
# The accept rule


def test_a_switch_whose_gain_is_within_the_noise_is_not_chosen_a_a():
    """The issue's case as an A/A test: channels_last is no faster, one run of it reads 7% faster, and
    rounds of one setting vary 2.5x (log-normal spread 0.35). Over 40 searches, tune keeps it off
    (at most 2 false picks: the test's two-sided 5% at most, and it needs the whole interval beyond 5%)."""
    picked = 0
    for seed in range(40):
        model = Rounds(noise=0.35, single={"channels_last": 0.93}, layout=1.0, seed=seed)
        outcome, _ = run(model)
        assert outcome.decision.leader.optimization in ("none", "channels_last")
        picked += outcome.chosen.setting.optimization == "channels_last"
        assert outcome.chosen.setting.steps < 50  # the 5x gain over the 50-step baseline is beyond any of that noise
    assert picked <= 2


def test_a_real_gain_beyond_the_noise_is_chosen():
    """channels_last 30% faster, rounds within ~3%: chosen (nearly) every time."""
    picked = sum(run(Rounds(noise=0.03, layout=0.7, seed=seed))[0].chosen.setting.optimization == "channels_last" for seed in range(40))
    assert picked >= 38


def test_one_runs_seven_percent_on_rounds_that_vary_2_5x_is_too_noisy_and_the_plain_setting_stays():
    """Deterministic rounds: none reads 0.10/0.25/0.12 s, channels_last 7% less in every round. Too
    noisy at 3 rounds: the rounds it asks for are timed once (up to the maximum) and it stays too noisy."""
    pattern = [1.0, 2.5, 1.2]

    class Fixed(Rounds):
        def verify(self, settings, rounds):
            self.verify_calls.append((tuple(settings), rounds))
            for s in settings:
                have = self.timed.setdefault(s, [])
                for i in range(len(have), len(have) + rounds):
                    have.append(self.time(s) * (0.93 if s.optimization == "channels_last" else 1.0) * pattern[i % 3])
            return {s: list(self.timed[s]) for s in settings}

    model = Fixed(single={"channels_last": 0.93}, layout=1.0)
    outcome, result = run(model)
    d = outcome.decision
    assert d.leader.optimization == "channels_last" and outcome.chosen.setting.optimization == "none"
    assert [r for _, r in model.verify_calls] == [3, 9]  # 3 rounds, then what "too noisy" asked for, capped at 12 in all
    needed = d.chain[0].judgement.rounds_needed
    assert d.chain[0].judgement.verdict == "too noisy" and (needed is None or needed > 12)
    assert any("not kept over" in n and "too noisy" in n for n in d.notes)
    assert "not kept over" in result.summary()


def test_nothing_beyond_the_noise_against_the_baseline_keeps_the_baseline():
    """When every setting times like the baseline (time independent of steps), none is accepted."""

    class Flat(Rounds):
        def time(self, s):
            return 0.5

    outcome, result = run(Flat(noise=0.05, seed=1))
    assert outcome.chosen is outcome.baseline and not outcome.decision.accepted
    assert result.summary().startswith("chosen: the baseline, default, 50 steps, fp32: no setting beat it beyond the noise")
    assert result.speedup == 1.0


def test_the_summary_names_its_baseline_and_the_speedup_against_diffprofs_default():
    model = Rounds()  # exact rounds: speedups are the true time ratios
    sp = space()
    outcome, result = run(model, sp)
    chosen, base, default = outcome.chosen.setting, sp.baseline, sp.diffprof_default
    assert default == Setting("default", 20, "fp32") and base == Setting("default", 50, "fp32")
    assert result.speedup == pytest.approx(model.time(base) / model.time(chosen))
    assert result.default_speedup == pytest.approx(model.time(default) / model.time(chosen))
    text = result.summary()
    assert f"{result.speedup:.2f}x faster than the baseline; {result.default_speedup:.2f}x than diffprof's default (default, 20 steps, fp32)" in text
    assert "baseline default, 50 steps, fp32 (the diffusers default: the model's own scheduler at 50 steps, no optimizations)" in text
    assert "timed together in 3 rounds" in text
    assert set(outcome.decision.values) >= {chosen, base, default}


def test_decide_walks_from_the_leader_to_simpler_settings():
    plain, switch, both = Setting("euler", 10, "fp32"), Setting("euler", 10, "fp32", "channels_last"), Setting("euler", 10, "bf16", "channels_last")
    base = Setting("default", 50, "fp32")
    complexity = {plain: 0, switch: 1, both: 2, base: 0}.__getitem__
    values = {plain: [1.0, 1.02, 0.98], switch: [0.9, 0.91, 0.89], both: [0.6, 0.61, 0.59], base: [5.0, 5.1, 4.9]}
    d = decide([plain, switch, both], complexity, base, values, min_gain=0.05)
    assert d.leader == both and d.chosen == both and d.accepted and [x.reference for x in d.chain] == [switch]  # 1.5x over the switch alone
    values[both] = [0.89, 0.895, 0.885]  # bf16 adds 1% over channels_last, which is 10% faster than plain
    d = decide([plain, switch, both], complexity, base, values, min_gain=0.05)
    assert d.chosen == switch and [x.reference for x in d.chain] == [switch, plain] and not d.chain[0].faster and d.chain[1].faster
    values[switch], values[both] = [0.985, 0.99, 0.995], [0.99, 1.0, 1.01]  # neither adds 5%: the plain setting
    d = decide([plain, switch, both], complexity, base, values, min_gain=0.05)
    assert d.chosen == plain and d.accepted and len(d.notes) == 1 and "not kept over euler, 10 steps, fp32" in d.notes[0]
    assert d.baseline.faster and d.baseline.speedup == pytest.approx(5.0, rel=0.02)


# ---------------------------------------------------------------------------------------------
# Fidelity beside adherence


def test_fidelity_rule_defaults_and_refusals():
    assert fidelity_rule(ADHERENCE, None) == FidelityRule(tolerance=FIDELITY_TOLERANCE_DB)
    assert fidelity_rule(TUNE_METRICS["clip_score"], None) == FidelityRule(tolerance=FIDELITY_TOLERANCE_DB)
    assert fidelity_rule(TUNE_METRICS["psnr_db"], None) is None  # convergence holds fidelity itself
    assert fidelity_rule(ADHERENCE, 0) is None and fidelity_rule(ADHERENCE, 35).target(20.0) == 35
    assert FidelityRule(tolerance=3).target(36.3) == pytest.approx(33.3)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="--min-psnr must be"):
            fidelity_rule(ADHERENCE, bad)
    with pytest.raises(ConfigError, match="no psnr_db score") as err:
        FidelityRule(tolerance=3).target(math.nan)
    assert "--min-psnr" in err.value.hint


def test_adherence_alone_would_take_a_setting_the_fidelity_floor_rejects():
    """Adherence saturates (every setting here reaches the floor by 10 steps); PSNR against the
    reference does not: 10 steps read 28 dB against the baseline's 41.6 (floor 38.6)."""
    sp = space(schedulers=["ddim"], precisions=["fp32"], optimizations=["none"])
    loose, _ = run(Rounds(psnr=True), sp, min_quality=0.9)
    held, result = run(Rounds(psnr=True), sp, min_quality=0.9, fidelity=FidelityRule(tolerance=FIDELITY_TOLERANCE_DB))
    assert loose.chosen.setting.steps < held.chosen.setting.steps
    assert held.constraints.fidelity == pytest.approx(45 - 170 / 50 - FIDELITY_TOLERANCE_DB)
    assert held.chosen.fidelity >= held.constraints.fidelity
    rejected = [c for c in held.candidates if c.full and c.meets_quality and not c.meets_fidelity]
    assert rejected and all(c.verdict == "misses fidelity" for c in rejected)
    assert "psnr_db >= 38.6 (against the reference solve)" in result.summary()


def test_cli_tune_refuses_a_bad_gain_or_fidelity_floor_before_loading(tmp_path, capsys):
    from diffprof.cli.app import main

    for flag, value, fragment in (("--min-gain", "2", "--min-gain"), ("--min-gain", "0", "--min-gain"), ("--min-psnr", "-3", "--min-psnr")):
        assert main(["tune", "--model", "tiny-sd", flag, value, "--db", str(tmp_path / "t.db"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and fragment in err and "hint:" in err
    assert not (tmp_path / "t.db").exists()


@pytest.mark.slow
def test_shapes_sd_ddim_10_steps_meets_adherence_but_not_the_default_fidelity_floor(tmp_path):
    """The issue's case for real: DDIM at 10 steps reads adherence 1.0 on shapes-sd but sits far
    below the 50-step baseline's PSNR against the converged reference; tune's default rejects it
    and takes 20 steps. (2 prompts; benchmarks/tune_fidelity.py measures the whole grid.)"""
    from conftest import simulated_host

    from diffprof.config import RunConfig
    from diffprof.tune import SearchSpace, tune

    cfg = RunConfig.from_mapping({"model": "shapes-sd", "device": "cpu", "threads": 1, "repeats": 1, "warmup": 0, "db": str(tmp_path / "t.db")})
    sp = SearchSpace.for_device(CPU, schedulers=["ddim"], steps=[10, 20], precisions=["fp32"], optimizations=["none"])
    with simulated_host(0.0):
        result = tune(cfg, metric="adherence", prompts=2, screen_prompts=2, space=sp, store=cfg.db, max_rounds=2)
    by_steps = {c.setting.steps: c for c in result.candidates if c.full and c.setting.scheduler == "ddim"}
    assert by_steps[10].meets_quality and not by_steps[10].meets_fidelity and by_steps[10].verdict == "misses fidelity"
    assert result.constraints.fidelity == pytest.approx(result.baseline.fidelity - FIDELITY_TOLERANCE_DB)
    assert result.chosen.setting == Setting("ddim", 20, "fp32") and by_steps[20].fidelity >= result.constraints.fidelity
