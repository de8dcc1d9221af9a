"""CI-native comparison outputs: JUnit XML validated against the JUnit XML schema (Jenkins' and
Ant's, tests/data/junit-10.xsd), GitHub job-summary markdown, both through `diffprof compare
--format`, and the rendered example in docs/ci.md kept true.

The runs are written out round by round (no randomness) as the runner stores them, with each
host's machine state, so every verdict, p-value and number below is fixed: a cell per verdict the
gate knows, and a second pair whose candidate ran on a busy host.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from diffprof.analysis.compare import Comparison, compare
from diffprof.cli import main
from diffprof.report.comparison import get_comparison_renderer
from diffprof.report.comparison.github import render_github
from diffprof.report.comparison.junit import render_junit
from diffprof.report.sections import replace_section
from diffprof.results import CellResult, RunInfo
from diffprof.store import Store

DATA = Path(__file__).parent / "data"
CI_DOC = Path(__file__).resolve().parents[1] / "docs" / "ci.md"
BASE = [1.000, 1.005, 0.995]  # three rounds
ENV_A = {"torch": {"version": "2.13.0"}, "diffusers": {"version": "0.42.1"}, "git": {"commit": "4f2a9c1"}, "gpus": [{"name": "NVIDIA H200"}]}
ENV_B = {"torch": {"version": "2.13.0"}, "diffusers": {"version": "0.43.0"}, "git": {"commit": "b7e01d3"}, "gpus": [{"name": "NVIDIA H200"}]}
QUIET = {"cpus": 16, "wall_s": 60.0, "own_cpu_s": 60.0, "others_cpu_s": 1.0, "steal_s": 0.0, "before": {"loadavg": [0.2, 0.2, 0.2]},
         "after": {"loadavg": [1.0, 0.5, 0.3]}, "spans": []}
BUSY = {**QUIET, "others_cpu_s": 600.0}  # others took 10 of the 16 cores


def _cell(suite: str, labels: dict, factor: float | None, *, error: str | None = None, metric: bool = True,
          rounds: list[float] | None = None) -> CellResult:
    if factor is None:  # a failed cell
        return CellResult(suite, labels, {"steps": 20, "rounds": 3}, status="failed",
                          error=error or "torch.OutOfMemoryError: CUDA out of memory\n  at ...")
    values = [x * factor for x in (rounds or BASE)]
    metrics = {"s_per_image": sorted(values)[1]} if metric else {"peak_allocated_bytes": 1e9}
    return CellResult(suite, labels, {"steps": 20, "rounds": 3}, metrics=metrics, samples={"call_s": values},
                      rounds={"s_per_image": values} if metric else {})


def runs(busy_b: bool = False) -> tuple[RunInfo, RunInfo]:
    """Baseline and candidate: one cell per verdict, plus a cell only in each."""
    plan = [  # suite, labels, A's factor, B's factor (None: failed)
        ("schedulers", {"scheduler": "euler"}, 1.0, 1.3),  # regression
        ("schedulers", {"scheduler": "ddim"}, 1.2, 1.2),  # same
        ("schedulers", {"scheduler": "dpm++"}, 1.0, 0.7),  # improvement
        ("resolutions", {"width": 768, "height": 768}, 2.0, None),  # newly failing: a regression too
        ("resolutions", {"width": 1024, "height": 1024}, None, 3.0),  # failed in A, fixed in B
        ("resolutions", {"width": 1536, "height": 1536}, None, None),  # failed in both
    ]
    a = RunInfo(41, "2026-12-01T10:00:00+00:00", "2026-12-01T10:05:00+00:00", "finished", "diffprof bench", {}, ENV_A, name="main",
                machine=QUIET)
    b = RunInfo(42, "2026-12-02T10:00:00+00:00", "2026-12-02T10:05:00+00:00", "finished", "diffprof bench", {}, ENV_B,
                machine=BUSY if busy_b else QUIET)
    for i, (suite, labels, fa, fb) in enumerate(plan):
        a.cells.append(_cell(suite, labels, fa))
        b.cells.append(_cell(suite, labels, fb))
        a.cells[-1].id, b.cells[-1].id = 100 + i, 200 + i
    # +8%, but its rounds scatter by ±6%: too noisy to judge at 5%
    a.cells.append(_cell("steps", {"steps": 10}, 1.0, rounds=[1.00, 1.06, 0.94]))
    b.cells.append(_cell("steps", {"steps": 10}, 1.08, rounds=[0.95, 1.05, 1.00]))
    a.cells.append(_cell("steps", {"steps": 50}, 1.0, metric=False))  # s_per_image missing in A
    b.cells.append(_cell("steps", {"steps": 50}, 1.0))
    a.cells.append(_cell("batch", {"batch": 8}, 1.0))  # only in A
    b.cells.append(_cell("batch", {"batch": 16}, 1.0))  # only in B
    return a, b


def comparison(busy_b: bool = False) -> Comparison:
    return compare(*runs(busy_b))


def _cases(root: ET.Element) -> dict[str, ET.Element]:
    return {c.get("classname", "") + " " + c.get("name", ""): c for c in root.iter("testcase")}


def _outcome(case: ET.Element) -> tuple[str | None, str | None, str | None]:
    """(failure/skipped/None, its type, its message)."""
    child = next((x for x in case if x.tag in ("failure", "skipped")), None)
    return (None, None, None) if child is None else (child.tag, child.get("type"), child.get("message"))


# ----------------------------------------------------------------------------- junit
def test_junit_is_valid_against_the_junit_xml_schema() -> None:
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(DATA / "junit-10.xsd")
    c = comparison()
    assert sorted({x.verdict for x in c.cells}) == ["failed", "improvement", "missing", "regression", "same", "too noisy"]
    schema.validate(render_junit(c))  # raises with the offending element and rule
    schema.validate(render_junit(comparison(busy_b=True)))
    assert schema.is_valid(render_junit(compare(RunInfo(1, "", None, "finished", "", {}, {}), RunInfo(2, "", None, "finished", "", {}, {}))))


def test_junit_has_a_case_per_cell_and_a_regression_fails_with_its_numbers() -> None:
    root = ET.fromstring(render_junit(comparison()))
    assert root.tag == "testsuites" and root.get("name") == "diffprof compare: run 42 against run 41 (main)"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("10", "2", "0")
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["diffprof.schedulers", "diffprof.resolutions", "diffprof.steps", "diffprof.batch"]
    assert [(s.get("tests"), s.get("failures"), s.get("skipped")) for s in suites.values()] == [
        ("3", "1", "0"), ("3", "1", "1"), ("2", "0", "2"), ("2", "0", "2")]  # fmt: skip
    props = {p.get("name"): p.get("value") for p in suites["diffprof.schedulers"].iter("property")}
    assert props["baseline"] == "run 41 (main)" and props["metric"] == "s_per_image" and props["threshold"] == "0.05"
    assert props["correction"] == "bh" and props["host_busy.B"] == "no"
    assert props["environment.diffusers.version"] == "0.42.1 -> 0.43.0" and props["environment.git.commit"] == "4f2a9c1 -> b7e01d3"
    assert (suites["diffprof.schedulers"].findtext("system-out") or "").startswith("1 regression, 1 improvement, 1 same, 1 too noisy")

    cases = _cases(root)
    euler = cases["diffprof.schedulers scheduler=euler"]
    kind, why, message = _outcome(euler)
    assert (kind, why) == ("failure", "regression")
    assert message is not None and message.startswith("regression: s/image 1 s -> 1.3 s: +30.0% [+")
    assert "beyond the 5% threshold; p=" in message and "< 0.05, welch-log rounds, 3/3 values" in message
    failure = euler.find("failure")
    assert failure is not None and "ratio B/A: 1.3" in (failure.text or "") and "rounds weighed: A [1.0, 1.005, 0.995]" in (failure.text or "")
    assert euler.get("time") == "1.300"  # B's seconds per image: a UI's duration column shows the cell's time
    assert _outcome(cases["diffprof.resolutions width=768, height=768"]) == ("failure", "failed", "failed in B: torch.OutOfMemoryError: CUDA out of memory")
    assert _outcome(cases["diffprof.resolutions width=1536, height=1536"]) == ("skipped", None, "failed in both runs")
    assert _outcome(cases["diffprof.steps steps=50"]) == ("skipped", None, "s_per_image missing in A")
    assert _outcome(cases["diffprof.batch batch=8"]) == ("skipped", None, "only in run 41 (main) (the baseline): not measured in run 42")
    assert _outcome(cases["diffprof.batch batch=16"])[0] == "skipped"
    for name, says in (("diffprof.schedulers scheduler=ddim", "same: s/image 1.2 s -> 1.2 s: +0.0%"),
                       ("diffprof.schedulers scheduler=dpm++", "improvement: s/image 1 s -> 700 ms: -30.0%"),
                       ("diffprof.resolutions width=1024, height=1024", "failed: failed in A: torch.OutOfMemoryError")):
        case = cases[name]
        assert _outcome(case)[0] is None, name  # passes
        assert (case.findtext("system-out") or "").startswith(says), (name, case.findtext("system-out"))


def test_junit_skips_what_the_gate_could_not_decide_and_says_why() -> None:
    """'too noisy' and 'host busy' fail nothing: each is a skipped case whose type is the verdict
    and whose message carries the reason and the numbers (see report/comparison/junit.py)."""
    noisy = _cases(ET.fromstring(render_junit(comparison())))["diffprof.steps steps=10"]
    kind, why, message = _outcome(noisy)
    assert (kind, why) == ("skipped", "too noisy") and message is not None
    assert message.startswith("too noisy: s/image ") and "rounds" in message and "+8.0%" in message
    assert "rounds weighed: A [1.0, 1.06, 0.94]" in (noisy.findtext("system-out") or "")

    busy = comparison(busy_b=True)
    assert busy.regressions == [] and [c.verdict for c in busy.cells[:3]] == ["host busy", "same", "host busy"]
    root = ET.fromstring(render_junit(busy))
    assert root.get("failures") == "1"  # the newly failing cell still fails: a crash is not noise
    cases = _cases(root)
    kind, why, message = _outcome(cases["diffprof.schedulers scheduler=euler"])
    assert (kind, why) == ("skipped", "host busy") and message is not None
    assert message.startswith("host busy: s/image 1 s -> 1.3 s: +30.0%") and "inconclusive: would be a regression, but run B's host was busy" in message
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["host_busy.A"] == "no" and "cores" in (props["host_busy.B"] or "")


# ----------------------------------------------------------------------------- github
def test_github_markdown_has_the_verdict_table_and_the_environment_diff() -> None:
    text = render_github(comparison())
    lines = text.splitlines()
    assert lines[0] == "### diffprof compare: ❌ 2 regressions"
    assert lines[2].startswith("**run 42** against the baseline **run 41 (main)** · s/image, lower is better · threshold 5% · alpha 0.05, Benjamini-Hochberg")
    assert "| suite | cell | A | B | change | interval | p (adj.) | n | verdict | note |" in lines
    euler = next(line for line in lines if line.startswith("| schedulers | scheduler=euler | 1 s | 1.3 s | +30.0% | [+"))
    assert euler.endswith("| 3/3 | ❌ regression |  |")
    assert any(line.startswith("| schedulers | scheduler=dpm++ | 1 s | 700 ms | -30.0% |") and "🚀 improvement" in line for line in lines)
    assert any(line.startswith("| steps | steps=10 |") and "❔ too noisy" in line and "rounds" in line for line in lines)
    assert any(line.startswith("| resolutions | width=768, height=768 | 2 s | - | - | - | - | - | 💥 failed | failed in B: torch.OutOfMemoryError")
               for line in lines)
    assert "**1 regression, 1 improvement, 1 same, 1 too noisy, 3 failed, 1 missing; 1 cell only in A, 1 cell only in B**" in text
    assert "- only in A: batch batch=8" in lines and "- only in B: batch batch=16" in lines
    assert "<details><summary>Machine state</summary>" in lines and "<details><summary>Environment: 2 differences</summary>" in lines
    assert "| `diffusers.version` | 0.42.1 | 0.43.0 |" in lines and "| `git.commit` | 4f2a9c1 | b7e01d3 |" in lines
    same = render_github(compare(runs()[0], runs()[0]))
    assert same.startswith("### diffprof compare: ✅ no regression · ❔ 1 inconclusive") and "Environment: the same software and hardware in both runs." in same
    busy = render_github(comparison(busy_b=True))
    assert busy.startswith("### diffprof compare: ❌ 1 regression\n") and "⚠️ host busy" in busy and "- warning: run B (42): host busy" in busy


def test_github_markdown_escapes_what_would_break_a_table() -> None:
    a, b = RunInfo(1, "", None, "finished", "", {}, {"x": "a|b"}), RunInfo(2, "", None, "finished", "", {}, {"x": "<script>"})
    a.cells, b.cells = [_cell("s", {"p": "x|y"}, 1.0)], [_cell("s", {"p": "x|y"}, 1.0)]
    text = render_github(compare(a, b))
    assert "| s | p=x\\|y |" in text and "| `x` | a\\|b | &lt;script&gt; |" in text and "<script>" not in text


def test_the_rendered_example_in_docs_ci_md_is_what_diffprof_writes() -> None:
    """docs/ci.md shows the github format rendered; refresh it with DIFFPROF_UPDATE_DOCS=1."""
    body = render_github(comparison())
    page = CI_DOC.read_text(encoding="utf-8")
    updated = replace_section(page, "github-example", body)
    if os.environ.get("DIFFPROF_UPDATE_DOCS") and updated != page:
        CI_DOC.write_text(updated, encoding="utf-8")
        page = CI_DOC.read_text(encoding="utf-8")
    assert updated == page, "docs/ci.md's github example is stale: DIFFPROF_UPDATE_DOCS=1 pytest tests/test_ci_formats.py"


# ----------------------------------------------------------------------------- the command line
def _store_with(path: Path, busy_b: bool = False) -> None:
    with Store(path) as store:
        for run in runs(busy_b):
            rid = store.create_run(run.command, run.config, run.environment, name=run.name)
            for c in run.cells:
                store.add_cell(rid, c)
            store.set_machine(rid, run.machine)
            store.finish_run(rid)


def test_compare_writes_junit_and_github_and_exits_1_on_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    _store_with(db)
    out = tmp_path / "reports" / "compare.xml"
    assert main(["compare", "main", "latest", "--db", str(db), "--format", "junit", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "comparison: " in captured.out and "1 regression, 1 improvement" in captured.out
    root = ET.fromstring(out.read_text())
    assert root.get("name") == "diffprof compare: run 2 against run 1 (main)" and root.get("failures") == "2"
    assert main(["compare", "main", "latest", "--db", str(db), "-f", "github"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("### diffprof compare: ❌ 2 regressions\n") and "1 regression, 1 improvement" in captured.err
    assert main(["compare", "latest", "latest", "--db", str(db), "-f", "github"]) == 0
    assert "✅ no regression" in capsys.readouterr().out
    assert main(["compare", "main", "latest", "--db", str(db), "-f", "tap"]) == 2
    assert "unknown comparison format 'tap'" in capsys.readouterr().err
    assert get_comparison_renderer("junit").file_extension == "xml" and get_comparison_renderer("github").file_extension == "md"


def test_a_regression_on_a_busy_host_does_not_fail_the_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "busy.db"
    _store_with(db, busy_b=True)
    # only the newly failing cell fails it; drop that cell's B side and the job passes
    with Store(db) as store:
        fixed = next(c for c in store.get_run("latest").cells if c.labels == {"width": 768, "height": 768})
        store.add_cell("latest", CellResult(fixed.suite, fixed.labels, fixed.settings, metrics={"s_per_image": 2.0},
                                            samples={"call_s": [2.0, 2.02, 1.98]}, rounds={"s_per_image": [2.0, 2.02, 1.98]}))
    assert main(["compare", "main", "latest", "--db", str(db), "-f", "junit"]) == 0
    root = ET.fromstring(capsys.readouterr().out)
    assert root.get("failures") == "0"
    assert _outcome(_cases(root)["diffprof.schedulers scheduler=euler"])[:2] == ("skipped", "host busy")
