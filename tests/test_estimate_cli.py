"""`diffprof calibrate` and `diffprof estimate` end to end on the built-in tiny model (a few seconds)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import simulated_host

from diffprof.cli.app import main
from diffprof.store import Store


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> SimpleNamespace:
    """A tmp store holding one small calibration of tiny-sd on the CPU (4 cells, 2 steps, 1 repeat),
    and what `calibrate` printed."""
    db = str(tmp_path_factory.mktemp("cal") / "cal.db")
    with redirect_stdout(io.StringIO()) as out, simulated_host(0.0):
        code = main(["calibrate", "--model", "tiny-sd", "--device", "cpu", "--threads", "1", "--resolutions", "32,48",
                     "--batch-sizes", "1,2", "--steps", "2", "--repeats", "2", "--warmup", "0", "--no-isolate", "--no-progress", "--db", db])
    assert code == 0
    return SimpleNamespace(db=db, out=out.getvalue())


@pytest.fixture(scope="module")
def calibrated(calibration) -> str:
    return calibration.db


def test_calibrate_leaves_one_store_file_and_names_the_next_command(calibration):
    """The store is closed when calibrate returns (one checkpointed file, nothing in a -wal beside it)."""
    assert not Path(f"{calibration.db}-wal").exists()
    assert "next: diffprof estimate --model tiny-sd" in " ".join(calibration.out.split())


def test_calibrate_stores_a_calibration_run(calibrated, capsys):
    with Store(calibrated) as store:
        runs = store.list_runs()
        assert len(runs) == 1 and runs[0].config["suites"] == ["calibration"] and runs[0].status == "finished"
        run = store.get_run(runs[0].id)
    assert [c.labels for c in run.cells] == [
        {"width": 32, "height": 32, "batch": 1}, {"width": 32, "height": 32, "batch": 2},
        {"width": 48, "height": 48, "batch": 1}, {"width": 48, "height": 48, "batch": 2},
    ]
    assert all(c.ok and c.suite == "calibration" and c.settings["steps"] == 2 for c in run.cells)


def test_estimate_prints_components_memory_and_its_basis(calibrated, capsys):
    capsys.readouterr()
    assert main(["estimate", "--model", "tiny-sd", "--width", "40", "--height", "40", "--steps", "10", "--batch", "2", "--db", calibrated]) == 0
    out = capsys.readouterr().out
    for fragment in ("denoising loop", "VAE decode", "load + call", "host_peak_rss_bytes", "95% interval", "rests on: run 1", "cells 1-4"):
        assert fragment in out, fragment
    assert "beyond the calibrated" not in out


def test_estimate_json_and_extrapolation_warning(calibrated, capsys):
    capsys.readouterr()
    assert main(["estimate", "--model", "tiny-sd", "--width", "96", "--height", "96", "--steps", "20", "--batch", "4",
                 "--format", "json", "--db", calibrated]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["extrapolated"] is True
    assert any("96x96 is beyond" in w for w in data["warnings"]) and any("batch 4 is beyond" in w for w in data["warnings"])
    assert data["interval"]["low"] <= data["time_s"] <= data["interval"]["high"]
    assert data["peak_interval"]["low"] <= data["peak_bytes"] <= data["peak_interval"]["high"]
    assert data["basis"]["run_id"] == 1 and len(data["basis"]["cell_ids"]) == 4
    assert [c["name"] for c in data["components"]][:2] == ["load", "text_encode"]


def test_max_memory_answers_fit_and_nothing_fits(calibrated, capsys):
    capsys.readouterr()
    assert main(["estimate", "--model", "tiny-sd", "--width", "48", "--height", "48", "--batch", "2", "--max-memory", "64",
                 "--format", "json", "--db", calibrated]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fits"] is True and data["best"] is not None
    # nothing fitting is the answer, not an error: exit 0 (1 is compare's regression code, 2 bad input)
    assert main(["estimate", "--model", "tiny-sd", "--width", "48", "--height", "48", "--batch", "2", "--max-memory", "0.01",
                 "--db", calibrated]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "nothing fits in 10.2 MiB: the closest is" in out and "more memory" in out


def test_estimate_without_calibration_names_the_command(tmp_path, calibrated, capsys):
    assert main(["estimate", "--model", "tiny-sd", "--db", str(tmp_path / "none.db")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "does not exist" in err and "diffprof calibrate --model tiny-sd" in err
    assert main(["estimate", "--model", "tiny-sd", "--precision", "bf16", "--db", calibrated]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no calibration for tiny-sd on cpu (bf16, optimizations: none)" in err
    assert f"diffprof calibrate --model tiny-sd --device cpu --precision bf16 --db {calibrated} --threads 1" in err


def test_an_uncalibrated_optimization_is_derived_only_when_asked(calibrated, capsys):
    args = ["estimate", "--model", "tiny-sd", "--width", "48", "--height", "48", "--batch", "2", "--optimize", "vae_slicing", "--db", calibrated]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--optimize vae_slicing" in err and "--derive" in err
    assert main([*args, "--derive", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["optimizations"] == "vae_slicing" and data["measured"] is False
    vae = next(c for c in data["components"] if c["name"] == "vae_decode")
    assert vae["source"].startswith("modelled") and "2 decoder call(s)" in vae["detail"]
    assert any("derived from the none calibration" in n for n in data["notes"])


@pytest.mark.parametrize("index", [
    {"_class_name": "Kandinsky3Pipeline", "unet": ["diffusers", "Kandinsky3UNet"], "movq": ["diffusers", "VQModel"],
     "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"]},
    {"_class_name": "Lumina2Pipeline", "transformer": ["diffusers", "Lumina2Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]},
])
def test_a_folder_estimates_cannot_read_is_refused_before_calibrating(tmp_path, capsys, index):
    """A UNet folder of no SD layout (Kandinsky 3: a MoVQ, no vae) used to be read as SD and crash
    with KeyError: 'vae'; a transformer of no registered family was refused only after every cell ran."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_index.json").write_text(json.dumps(index))
    db = tmp_path / "cal.db"
    for command in (["calibrate", "--device", "cpu", "--no-progress"], ["estimate"]):
        assert main([*command, "--model", str(tmp_path / "m"), "--db", str(db)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"estimates cover the registered families (sd, sdxl, sd3, flux, pixart, sana), not {index['_class_name']}" in err
    assert not db.exists()  # nothing measured, nothing stored
