"""Measured sections inside a hand-written page: only the marked part changes, errors refuse to guess."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from diffprof.cli import main
from diffprof.errors import InputError
from diffprof.report.sections import begin_marker, end_marker, provenance, replace_section, write_section
from diffprof.results import CellResult
from diffprof.store import Store

PAGE = "# Benchmarks\n\nProse a person wrote.\n\n<!-- diffprof:begin e2e -->\nold table\n<!-- diffprof:end e2e -->\n\nMore prose.\n"


def test_a_section_replaces_only_its_own_part():
    text = replace_section(PAGE, "e2e", "| a |\n|---|\n| 1 |\n")
    assert text == PAGE.replace("old table", "| a |\n|---|\n| 1 |")
    assert replace_section(text, "e2e", "| a |\n|---|\n| 1 |") == text  # rewriting is idempotent


def test_a_new_key_is_added_at_the_end_and_an_empty_file_gets_just_the_section(tmp_path):
    text = replace_section(PAGE, "memory-sdxl", "new")
    assert text.startswith(PAGE.rstrip("\n")) and text.endswith(f"{begin_marker('memory-sdxl')}\nnew\n{end_marker('memory-sdxl')}\n")
    path = write_section(tmp_path / "new.md", "x", "body")
    assert path.read_text() == f"{begin_marker('x')}\nbody\n{end_marker('x')}\n"


@pytest.mark.parametrize("page", [
    PAGE.replace("<!-- diffprof:end e2e -->", ""),                          # unpaired
    PAGE + "<!-- diffprof:begin e2e -->\n<!-- diffprof:end e2e -->\n",      # repeated
    "<!-- diffprof:end e2e -->\n<!-- diffprof:begin e2e -->\n",              # out of order
])
def test_broken_markers_are_refused_and_the_file_is_left_alone(tmp_path, page):
    path = tmp_path / "page.md"
    path.write_text(page)
    with pytest.raises(InputError, match="marker"):
        write_section(path, "e2e", "new")
    assert path.read_text() == page


def test_a_key_that_cannot_sit_in_a_marker_is_refused():
    with pytest.raises(InputError, match="section key"):
        replace_section(PAGE, "two words", "x")


def test_provenance_names_command_day_and_machine():
    env = {"gpus": [{"name": "NVIDIA H200"}], "nvml": {"driver_version": "580.1"}, "torch": {"version": "2.11.0", "cuda_version": "13.0"},
           "packages": {"diffusers": "0.42.1", "transformers": "5.17.0"}}
    line = provenance("python3 benchmarks/gpu_e2e.py", env, datetime(2026, 11, 26, tzinfo=timezone.utc))
    assert line == ("_Written by `python3 benchmarks/gpu_e2e.py` on 2026-11-26 (UTC): NVIDIA H200, driver 580.1, "
                    "torch 2.11.0 (CUDA 13.0), diffusers 0.42.1, transformers 5.17.0._")


def test_report_into_writes_the_runs_tables_into_the_page(tmp_path, capsys):
    db, page = tmp_path / "r.db", tmp_path / "bench.md"
    page.write_text(PAGE)
    with Store(db) as store:
        rid = store.create_run("diffprof bench -s schedulers", {}, {"gpus": [{"name": "NVIDIA H100"}]}, name="sched")
        store.add_cell(rid, CellResult("schedulers", {"scheduler": "euler"}, {"steps": 2}, metrics={"s_per_image": 0.5}, samples={"call_s": [0.5, 0.5]}))
        store.finish_run(rid)
    assert main(["report", "sched", "--into", str(page), "--db", str(db)]) == 0
    text = page.read_text()
    assert text.startswith(PAGE)  # a new key goes after everything a person wrote
    section = text[text.index(begin_marker("sched")):text.index(end_marker("sched"))]
    assert "`diffprof bench -s schedulers`" in section and "NVIDIA H100" in section
    assert "#### schedulers" in section and "| status | scheduler | s/image |" in section and "| ok | euler | 500 ms [500.0–500.0] | 2 |" in section
    assert main(["report", "sched", "--into", str(page), "--section", "e2e", "--db", str(db)]) == 0
    assert "old table" not in page.read_text() and page.read_text().count(begin_marker("sched")) == 1
    capsys.readouterr()
    assert main(["report", "sched", "--into", str(page), "--format", "csv", "--db", str(db)]) == 2
    assert "--into writes a markdown section" in capsys.readouterr().err
    assert main(["report", "sched", "--section", "x", "--db", str(db)]) == 2
    assert "--into" in capsys.readouterr().err


def test_report_help_names_the_markers(capsys):
    """Rich drops a literal '<!-- -->' from help text; the help must still say which markers to write."""
    from diffprof.cli import commands  # noqa: F401
    from diffprof.cli.app import app

    with pytest.raises(SystemExit):
        app(["report", "--help"], prog_name="diffprof")
    out = capsys.readouterr().out
    assert "diffprof:begin" in out and "diffprof:end" in out
