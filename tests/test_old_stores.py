"""Stores written by older diffprof versions still open, list, show, compare and render.

tests/data/store-v1.db was written by main at schema version 1 (commit d800e58, before issue 20's
refactors) with, from tests/data/:

    diffprof bench -s schedulers --model tiny-sd --steps 2 --repeats 2 --threads 1 \
        --schedulers euler,ddim --no-report --db store-v1.db [--name baseline]

(twice: run 1 named ``baseline``, run 2 unnamed). Never regenerate it with newer code: it stands
for a user's existing file. Each test works on a copy, since opening a store may migrate it.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

from diffprof.cli import main
from diffprof.store import SCHEMA_VERSION, Store

DATA = Path(__file__).parent / "data"


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    db = tmp_path / "store-v1.db"
    shutil.copyfile(DATA / "store-v1.db", db)
    return db


def test_the_fixture_is_a_schema_1_store_written_by_diffprof_0_1(v1: Path) -> None:
    with closing(sqlite3.connect(v1)) as conn:
        assert dict(conn.execute("SELECT key, value FROM meta")) == {"schema_version": "1", "written_by": "diffprof 0.1.0"}


def test_a_v1_store_opens_with_its_runs_cells_samples_and_artifacts(v1: Path) -> None:
    with Store(v1) as store:
        assert store.schema_version == SCHEMA_VERSION  # migrated, if the schema moved on
        runs = store.list_runs()
        assert [(r.id, r.name, r.status, r.counts) for r in runs] == [(2, None, "finished", {"ok": 2}), (1, "baseline", "finished", {"ok": 2})]
        run = store.get_run("baseline", artifacts=True)
        assert store.resolve("latest~1") == run.id == 1
    assert [c.labels for c in run.cells] == [{"scheduler": "euler"}, {"scheduler": "ddim"}]
    for cell in run.cells:
        assert cell.status == "ok" and cell.key == cell.cell_key
        assert len(cell.samples["call_s"]) == 2 and cell.metrics["s_per_call"] == pytest.approx(sorted(cell.samples["call_s"])[0] / 2 + sorted(cell.samples["call_s"])[1] / 2)
        assert cell.settings["steps"] == 2 and cell.settings["scheduler"] == cell.labels["scheduler"]
        with Image.open(io.BytesIO(cell.artifacts["image.png"])) as image:
            assert image.size[0] > 0
        assert json.loads(cell.artifacts["timeline.json"])
    assert run.config["schedulers"] == ["euler", "ddim"] and "torch" in run.environment


def test_a_v1_store_takes_new_runs_and_resumes(v1: Path) -> None:
    with Store(v1) as store:
        rid = store.create_run("diffprof bench", {}, {})
        old = store.get_run(2).cells[0]
        old.metrics["s_per_image"] *= 2
        store.add_cell(rid, old)
        store.finish_run(rid)
        assert rid == 3 and store.finished_keys(rid) == {old.key}
        assert store.get_run("latest").cells[0].metrics["s_per_image"] == old.metrics["s_per_image"]


def test_the_cli_lists_shows_compares_and_renders_a_v1_store(v1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from diffprof.cli.app import console

    monkeypatch.setattr(console, "width", 240)  # every column whole, whatever terminal runs the tests
    db = ["--db", str(v1)]
    assert main(["runs", *db]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"^│\s+(\d+) │", out, flags=re.M) == ["2", "1"] and "baseline" in out and "finished" in out
    assert main(["show", "baseline", *db]) == 0  # a run name from a v1 store
    out = capsys.readouterr().out
    assert "euler" in out and "ddim" in out
    assert main(["compare", "baseline", "latest", *db]) == 0  # two repeats: nothing is significant
    out = capsys.readouterr().out
    assert "scheduler=euler" in out and "scheduler=ddim" in out
    for fmt in ("markdown", "csv", "json", "html"):
        out_file = tmp_path / f"report.{fmt}"
        assert main(["report", "baseline", "--format", fmt, "--out", str(out_file), *db]) == 0, fmt
        assert out_file.stat().st_size > 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["labels"] for c in report["cells"]] == [{"scheduler": "euler"}, {"scheduler": "ddim"}]
    assert "data:image/png" in (tmp_path / "report.html").read_text()
    assert main(["report", "latest", "--format", "console", *db]) == 0 and "schedulers" in capsys.readouterr().out
