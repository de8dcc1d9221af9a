"""Console tables for ``diffprof estimate`` and ``calibrate``: estimates, budget answers and fitted
calibrations (formatting only; the numbers come from :mod:`diffprof.estimate`)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from diffprof.estimate.budget import BudgetAnswer, speed_key
from diffprof.estimate.model import CostModel
from diffprof.estimate.result import MEASURED, Estimate, Interval
from diffprof.units import fmt_bytes, fmt_seconds

COMPONENT_NAMES = {
    "load": "load (once)",
    "text_encode": "text encoding",
    "vae_encode": "VAE encode",
    "denoise": "denoising loop",
    "vae_decode": "VAE decode",
    "other": "other",
    "offload_transfer": "offload transfers",
}


def _span(interval: Interval | None, fmt: object) -> str:
    if interval is None:
        return ""
    return f"{fmt(interval.low)} – {fmt(interval.high)}"  # type: ignore[operator]


def _source(source: str) -> str:
    return "measured" if source == MEASURED else source


def estimate_view(e: Estimate) -> Group:
    """Time per component, peak memory parts, warnings, and the measurements behind them."""
    w = e.workload
    title = (f"{e.model} on {e.device} ({e.precision}, optimizations: {e.optimizations}): "
             f"{w.label}, guidance {w.guidance:g}")
    time = Table(title="time", title_justify="left")
    for col in ("part", "predicted", "95% interval", "source", "detail"):
        time.add_column(col, justify="right" if col in ("predicted", "95% interval") else "left")
    for c in e.components:
        time.add_row(COMPONENT_NAMES.get(c.name, c.name), fmt_seconds(c.seconds), _span(c.interval, fmt_seconds), _source(c.source), c.detail)
    time.add_row("[bold]one call[/]", f"[bold]{fmt_seconds(e.call_s)}[/]", _span(e.call_interval, fmt_seconds), "", "a loaded pipeline")
    time.add_row("[bold]load + call[/]", f"[bold]{fmt_seconds(e.time_s)}[/]", _span(e.interval, fmt_seconds), "", "from a cold start")
    memory = Table(title=f"peak memory ({e.memory_metric}, in the {e.peak_phase or '?'} phase)", title_justify="left")
    for col in ("part", "predicted", "95% interval", "source", "detail"):
        memory.add_column(col, justify="right" if col in ("predicted", "95% interval") else "left")
    for p in e.memory_parts:
        memory.add_row(p.name, fmt_bytes(p.bytes), "", _source(p.source), p.detail)
    memory.add_row("[bold]peak[/]", f"[bold]{fmt_bytes(e.peak_bytes)}[/]", _span(e.peak_interval, fmt_bytes), "", "")
    lines: list[object] = [Text(title, style="bold"), time, memory]
    for warning in e.warnings:
        lines.append(Text(f"warning: {warning}", style="yellow"))
    for note in e.notes:
        lines.append(Text(f"note: {note}", style="dim"))
    if e.basis is not None:
        b = e.basis
        cells = f"cells {b.cell_ids[0]}-{b.cell_ids[-1]}" if b.cell_ids else "no cell ids"
        lines.append(Text(f"rests on: run {b.run_id} ({b.created_at}, {b.environment}), {cells}: {', '.join(b.points)}", style="dim"))
    return Group(*lines)  # type: ignore[arg-type]


def budget_view(answer: BudgetAnswer) -> Group:
    """Every option against the budget, fastest first, then the answer."""
    table = Table(title=f"memory budget {fmt_bytes(answer.max_bytes)}" + (f" (headroom {fmt_bytes(answer.headroom_bytes)})" if answer.headroom_bytes else ""),
                  title_justify="left")
    for col in ("optimizations", "fits", "peak", "up to", "time per call", "source"):
        table.add_column(col, justify="right" if col in ("peak", "up to", "time per call") else "left")
    best = answer.best
    for o in sorted(answer.options, key=speed_key):
        e = o.estimate
        mark = "[green]yes[/]" if o.fits else "[red]no[/]"
        name = f"[bold]{o.optimizations}[/]" if best is not None and o is best else o.optimizations
        table.add_row(name, mark, fmt_bytes(e.peak_bytes), fmt_bytes(e.peak_interval.high), fmt_seconds(e.call_s),
                      "measured" if e.measured else "modelled")
    style = "bold green" if answer.fits else "bold red"
    lines: list[object] = [table, Text(answer.message, style=style)]
    warnings = sorted({w for o in answer.options for w in o.estimate.warnings})
    for warning in warnings:
        lines.append(Text(f"warning: {warning}", style="yellow"))
    lines.append(Text("measured: the option's own calibration; modelled: derived from the base calibration "
                      "(rules in diffprof.estimate.model; `diffprof calibrate --optimize ...` measures one)", style="dim"))
    return Group(*lines)  # type: ignore[arg-type]


def calibration_view(model: CostModel) -> Group:
    """The calibration points as measured and as fitted, and the fitted coefficients."""
    from diffprof.estimate.calibration import MEMORY_METRICS

    key = model.key
    table = Table(title=f"calibration of {key.describe()} (run {model.calibration.run_id})", title_justify="left")
    for col in ("point", "steps", "call", "fitted", "step", "VAE", "peak", "fitted peak"):
        table.add_column(col, justify="left" if col == "point" else "right")
    for p in model.points:
        e = model.predict(p.workload)
        table.add_row(p.label, str(p.workload.steps), fmt_seconds(p.call_s), fmt_seconds(e.call_s), fmt_seconds(p.step_s),
                      fmt_seconds(p.vae_s), fmt_bytes(p.peak_bytes), fmt_bytes(e.peak_bytes))
    s = model.summary()
    lines: list[object] = [table]

    def tf(v: float | None) -> str:
        return f"{v * 1e3:.3g} GFLOP/s" if v is not None else "-"

    def part(name: str, overhead: str, unit: str) -> str:
        d = s[name]
        combine = "+" if d["overlap"] == 1 else f"(+)k={d['overlap']:g}"
        return f"{fmt_seconds(d[overhead])}{unit} {combine} FLOPs at {tf(d['tflops'])} (residual {d['residual']:.1%})"

    lines.append(Text(f"step = {part('step', 'per_step_s', '')}; VAE = {part('vae_decode', 'per_decoder_call_s', ' per decoder call')}; "
                      f"text = {part('text_encode', 'per_call_s', '')}; load {fmt_seconds(s['load_s'])}"))
    if any(s[n]["overlap"] != 1 for n in ("step", "vae_decode", "text_encode")):
        lines.append(Text("(+)k: overhead and compute overlap, (a^k + b^k)^(1/k), as on a GPU that computes while the host launches", style="dim"))
    if "memory" in s:
        m = s["memory"]
        lines.append(Text(f"peak {MEMORY_METRICS.get(key.device)} = baseline {fmt_bytes(m['baseline_bytes'])} + weights + "
                          f"{m['activation_factor']:.2f} x traced activations (residual {m['residual']:.1%})"))
    for failed in model.calibration.failed:
        lines.append(Text(f"failed cell: {failed}", style="yellow"))
    return Group(*lines)  # type: ignore[arg-type]
