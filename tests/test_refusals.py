"""A refused flag or config answers before anything heavy loads: the refusal path imports neither
torch nor diffusers (benchmarks/refusal_latency.py times it: well under 1 s on 2 cores), and
`--dry-run` lists what a config expands to without measuring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from diffprof.cli.app import main

#: One refusal per kind of check, each as a command line ({cfg}: a config file holding the text).
REFUSALS: list[tuple[list[str], str | None]] = [
    (["bench", "--steps", "0"], None), (["bench", "--scheduler", "nope"], None), (["bench", "--guidance", "nan"], None),
    (["bench", "-s", "nope"], None), (["bench", "-O", "nope"], None), (["bench", "--memory-optimizations", "vae_slicing+nope"], None),
    (["bench", "--precision", "fp13"], None), (["bench", "--stpes", "3"], None), (["bench", "--steps", "abc"], None),
    (["bench", "--config", "{cfg}"], "profile_level: 0\n"), (["bench", "--config", "{cfg}"], "batch_sizes: euler\n"),
    (["bench", "--dry-run", "--config", "{cfg}"], "mask: {a: 1}\n"), (["bench", "--model", "tiny-sdd"], None),
    (["bench", "--model", "runwayml/stable-diffusion-v1-5"], None), (["bench", "--resume", "7", "--db", "{tmp}/none.db"], None),
    (["generate", "x", "--batch", "0"], None), (["generate", "x", "--scheduler", "nope"], None), (["generate", "x", "--model", "nope"], None),
    (["tune", "--precisions", "fp13"], None), (["tune", "--tolerance", "nan"], None), (["calibrate", "--resolutions", "7x7"], None),
    (["estimate", "--max-memory", "-1", "--db", "{tmp}/none.db"], None), (["estimate", "--guidance", "inf"], None),
    (["estimate", "--scheduler", "huen", "--db", "{tmp}/none.db"], None), (["estimate", "--task", "img2img", "--strength", "0"], None),
    (["tune", "--min-gain", "2"], None), (["tune", "--min-psnr", "-1"], None),
]

_BLOCKED = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "diffusers", "transformers"):
            raise ImportError("blocked on the refusal path: " + name)
sys.meta_path.insert(0, Block())
from diffprof.cli.app import main
codes = [main(args) for args in json.loads(sys.argv[1])]
print(json.dumps(codes))
"""


def _argv(tmp: Path, n: int, args: list[str], text: str | None) -> list[str]:
    cfg = tmp / f"case{n}.yaml"
    if text is not None:
        cfg.write_text(text)
    return [a.replace("{cfg}", str(cfg)).replace("{tmp}", str(tmp)) for a in args]


def test_refusals_import_neither_torch_nor_diffusers(tmp_path):
    cases = [_argv(tmp_path, n, args, text) for n, (args, text) in enumerate(REFUSALS)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    out = subprocess.run([sys.executable, "-c", _BLOCKED, json.dumps(cases)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    codes = json.loads(out.stdout.strip().splitlines()[-1])
    assert codes == [2] * len(cases), list(zip(codes, cases))
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    hints = [line for line in out.stderr.splitlines() if line.startswith("hint: ")]
    assert len(errors) == len(hints) == len(cases) and "blocked" not in out.stderr, out.stderr[-3000:]


def test_every_refusal_is_one_error_line_and_one_hint_line(tmp_path, capsys):
    for n, (args, text) in enumerate(REFUSALS):
        assert main(_argv(tmp_path, n, args, text)) == 2, args
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), (args, lines)


def test_bench_dry_run_lists_the_cells_and_measures_nothing(tmp_path, capsys):
    db = tmp_path / "never.db"
    assert main(["bench", "--dry-run", "-s", "steps,batch", "--step-counts", "1,2", "--batch-sizes", "1", "--model", "tiny-sd", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in out[:3]] == ["steps: steps=1", "steps: steps=2", "batch: batch=1"]
    assert "3 cells" in out[-1] and "nothing measured" in out[-1]
    assert not db.exists()  # nothing stored, not even a run


def test_bench_dry_run_of_a_resume_marks_what_is_done(tmp_path, capsys):
    db = tmp_path / "r.db"
    common = ["--model", "tiny-sd", "--width", "32", "--height", "32", "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-progress", "--no-report"]
    assert main(["bench", "-s", "steps", "--step-counts", "1", *common, "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["bench", "--resume", "latest", "--dry-run", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("done steps: steps=1") and "1 cells, 0 to run" in out


def test_other_commands_dry_run_too(tmp_path, capsys):
    assert main(["generate", "a red circle", "--model", "tiny-sd", "--steps", "3", "--dry-run", "--out", str(tmp_path / "img")]) == 0
    assert "1 job(s) on tiny-sd; nothing generated" in capsys.readouterr().out and not (tmp_path / "img").exists()
    assert main(["calibrate", "--model", "tiny-sd", "--device", "cpu", "--dry-run", "--db", str(tmp_path / "c.db")]) == 0
    assert "workloads of tiny-sd" in capsys.readouterr().out and not (tmp_path / "c.db").exists()
    assert main(["tune", "--model", "tiny-sd", "--device", "cpu", "--precisions", "auto,half", "--dry-run", "--db", str(tmp_path / "t.db")]) == 0
    out = capsys.readouterr().out
    assert "precisions: fp32, bf16" in out and not (tmp_path / "t.db").exists()  # auto and half resolve per device, as --precision does


def test_sidecars_are_strict_json_and_name_the_scheduler_that_ran(tmp_path, capsys):
    out = tmp_path / "img"
    assert main(["generate", "a red circle", "--model", "tiny-sd", "--steps", "1", "--width", "32", "--height", "32", "--threads", "1", "--out", str(out)]) == 0
    (sidecar,) = out.glob("*.json")
    meta = json.loads(sidecar.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # NaN/Infinity refused
    assert meta["scheduler"].startswith("default (") and meta["scheduler"] != "default ()"


def test_compare_prints_its_summary_once(tmp_path, capsys):
    db = tmp_path / "c.db"
    common = ["-s", "steps", "--step-counts", "1", "--model", "tiny-sd", "--width", "32", "--height", "32", "--repeats", "2", "--warmup", "0",
              "--threads", "1", "--no-progress", "--no-report", "--db", str(db)]
    assert main(["bench", *common]) == 0 and main(["bench", *common]) == 0
    capsys.readouterr()
    main(["compare", "1", "2", "--db", str(db)])
    out = capsys.readouterr().out
    from diffprof.store import Store
    from diffprof.store.compare import compare_runs

    with Store(db) as store:
        summary = compare_runs(store, 1, 2).summary()
    assert out.count(summary) == 1
