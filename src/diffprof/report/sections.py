"""Measured sections inside a hand-written markdown document.

A benchmarks page mixes prose a person writes with tables a script measures. Pasting the tables by
hand lets them drift from what the scripts print; regenerating the whole page loses the prose. So
each measured part sits between two markers, and a script replaces only its own part::

    <!-- diffprof:begin e2e-sdxl -->
    ...tables written by benchmarks/gpu_e2e.py...
    <!-- diffprof:end e2e-sdxl -->

Markers are HTML comments, invisible when the page renders. A key missing from the document is
added at its end, so a new section needs no hand edit first.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from diffprof.errors import InputError
from diffprof.fileio import write_bytes_atomic

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def begin_marker(key: str) -> str:
    return f"<!-- diffprof:begin {key} -->"


def end_marker(key: str) -> str:
    return f"<!-- diffprof:end {key} -->"


def replace_section(text: str, key: str, body: str) -> str:
    """``text`` with the section ``key`` holding ``body`` (appended at the end when absent).

    Refuses a document whose markers for ``key`` are unpaired, repeated or out of order: guessing
    which part to overwrite could destroy hand-written prose.
    """
    if not _KEY.fullmatch(key):
        raise InputError(f"section key {key!r} is not usable in a marker", "use letters, digits, '.', '_' and '-', e.g. e2e-sdxl")
    begin, end = begin_marker(key), end_marker(key)
    block = f"{begin}\n{body.strip()}\n{end}"
    n_begin, n_end = text.count(begin), text.count(end)
    if n_begin == 0 and n_end == 0:
        return (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    if n_begin != 1 or n_end != 1 or text.index(begin) > text.index(end):
        raise InputError(
            f"the document has {n_begin} '{begin}' and {n_end} '{end}' marker(s), not one of each in order",
            "fix or delete the markers of that section by hand, then write it again",
        )
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + block + text[stop:]


def write_section(path: str | Path, key: str, body: str) -> Path:
    """Replace (or add) the section ``key`` of the markdown file ``path``; creates the file if missing.

    The write is atomic: an interrupted run leaves the old document, never half of a new one.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    write_bytes_atomic(path, replace_section(text, key, body).encode("utf-8"))
    return path


def provenance(command: str, env: dict[str, Any] | None = None, when: datetime | None = None) -> str:
    """One italic line saying what wrote a section, where and when, e.g. ``_Written by `python3
    benchmarks/gpu_e2e.py --model sdxl` on 2026-11-26 (UTC): NVIDIA H200, driver 580.159.04, torch
    2.11.0+cu130 (CUDA 13.0), diffusers 0.42.1._`` A number without its machine means nothing."""
    from diffprof.environment import capture_environment, describe_environment

    env = env if env is not None else capture_environment()
    day = (when or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
    packages = env.get("packages") or {}
    extra = f", transformers {packages['transformers']}" if packages.get("transformers") else ""
    return f"_Written by `{command}` on {day} (UTC): {describe_environment(env)}{extra}._"
