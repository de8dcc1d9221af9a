"""`diffprof device`: the device, its measured matmul peaks and memory bandwidth (the MFU ceiling)."""

from __future__ import annotations

import typer
from rich.table import Table

from diffprof.cli.app import app, console


@app.command()
def device(
    name: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    refresh: bool = typer.Option(False, help="Measure again instead of reading the cached probe."),
) -> None:
    """Print the device and its measured peaks: dense matmul TFLOP/s per precision and copy bandwidth.

    The probe (random-data 8192^3 matmuls and a 1 GiB device copy on a GPU) runs once per device
    and is cached; MFU in reports is achieved FLOP/s over these measured ceilings.
    """
    from diffprof.device import device_peaks
    from diffprof.engine.engine import resolve_engine_device

    dev = resolve_engine_device(name)
    peaks = device_peaks(dev, refresh=refresh)
    table = Table(title=f"{peaks.name} ({peaks.kind}) · measured {peaks.measured_at} · torch {peaks.torch_version}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for precision, flops in peaks.matmul_flops.items():
        table.add_row(f"dense matmul {precision}", f"{flops / 1e12:.1f} TFLOP/s")
    table.add_row("copy bandwidth (read + write)", f"{peaks.copy_bytes_per_s / 1e9:.0f} GB/s")
    table.add_row("memory", f"{peaks.memory_bytes / 2**30:.1f} GiB")
    console.print(table)
