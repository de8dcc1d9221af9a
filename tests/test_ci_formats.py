"""CI-native comparison outputs: JUnit XML validated against the JUnit XML schema (Jenkins' and
Ant's, tests/data/junit-10.xsd), GitHub job-summary markdown, both through `diffprof compare
--format`, and the rendered example in docs/ci.md kept true.

The runs are written out sample by sample (no randomness), so every verdict, p-value and number
below is fixed: a cell per verdict the comparison knows.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from diffprof.analysis.compare import Comparison, compare
from diffprof.cli import main
from diffprof.report.comparison import ComparisonOptions, get_comparison_renderer
from diffprof.report.github import render_github
from diffprof.report.junit import render_junit
from diffprof.report.sections import replace_section
from diffprof.results import CellResult, RunInfo
from diffprof.store import Store

DATA = Path(__file__).parent / "data"
CI_DOC = Path(__file__).resolve().parents[1] / "docs" / "ci.md"
BASE = [1.00, 1.01, 0.99, 1.02, 0.98]
ENV_A = {"torch": {"version": "2.13.0"}, "diffusers": {"version": "0.42.1"}, "git": {"commit": "4f2a9c1"}, "gpus": [{"name": "NVIDIA H200"}]}
ENV_B = {"torch": {"version": "2.13.0"}, "diffusers": {"version": "0.43.0"}, "git": {"commit": "b7e01d3"}, "gpus": [{"name": "NVIDIA H200"}]}


def _cell(suite: str, labels: dict, factor: float | None, *, error: str | None = None, metric: bool = True) -> CellResult:
    if factor is None:  # a failed cell
        return CellResult(suite, labels, {"steps": 20}, status="failed", error=error or "torch.OutOfMemoryError: CUDA out of memory\n  at ...")
    calls = [x * factor for x in BASE]
    metrics = {"s_per_image": sorted(calls)[2]} if metric else {"peak_allocated_bytes": 1e9}
    return CellResult(suite, labels, {"steps": 20}, metrics=metrics, samples={"call_s": calls})


def runs() -> tuple[RunInfo, RunInfo]:
    """Baseline and candidate: one cell per verdict, plus a cell only in each."""
    plan = [  # suite, labels, A's factor, B's factor (None: failed)
        ("schedulers", {"scheduler": "euler"}, 1.0, 1.3),  # regression
        ("schedulers", {"scheduler": "ddim"}, 1.2, 1.2),  # same
        ("schedulers", {"scheduler": "dpm++"}, 1.0, 0.7),  # improvement
        ("resolutions", {"width": 768, "height": 768}, 2.0, None),  # newly failing: a regression too
        ("resolutions", {"width": 1024, "height": 1024}, None, 3.0),  # failed in A, fixed in B
        ("resolutions", {"width": 1536, "height": 1536}, None, None),  # failed in both
    ]
    a = RunInfo(41, "2026-12-01T10:00:00+00:00", "2026-12-01T10:05:00+00:00", "finished", "diffprof bench", {}, ENV_A, name="main")
    b = RunInfo(42, "2026-12-02T10:00:00+00:00", "2026-12-02T10:05:00+00:00", "finished", "diffprof bench", {}, ENV_B)
    for i, (suite, labels, fa, fb) in enumerate(plan):
        a.cells.append(_cell(suite, labels, fa))
        b.cells.append(_cell(suite, labels, fb))
        a.cells[-1].id, b.cells[-1].id = 100 + i, 200 + i
    noisy_a, noisy_b = _cell("steps", {"steps": 10}, 1.0), _cell("steps", {"steps": 10}, 1.0)
    noisy_a.samples["call_s"], noisy_b.samples["call_s"] = [1.0, 2.0, 0.6], [1.3, 0.7, 2.5]  # +30%, but noise could explain it
    noisy_a.metrics["s_per_image"], noisy_b.metrics["s_per_image"] = 1.0, 1.3
    a.cells.append(noisy_a)
    b.cells.append(noisy_b)
    a.cells.append(_cell("steps", {"steps": 50}, 1.0, metric=False))  # s_per_image missing in A
    b.cells.append(_cell("steps", {"steps": 50}, 1.0))
    a.cells.append(_cell("batch", {"batch": 8}, 1.0))  # only in A
    b.cells.append(_cell("batch", {"batch": 16}, 1.0))  # only in B
    return a, b


def comparison() -> Comparison:
    return compare(*runs())


LABELS = ComparisonOptions(label_a="main (run 41)", label_b="run 42")


# ----------------------------------------------------------------------------- junit
def test_junit_is_valid_against_the_junit_xml_schema() -> None:
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(DATA / "junit-10.xsd")
    c = comparison()
    assert sorted({x.verdict for x in c.cells}) == ["failed", "improvement", "missing", "not significant", "regression", "same"]
    text = render_junit(c, LABELS)
    schema.validate(text)  # raises with the offending element and rule
    assert schema.is_valid(render_junit(compare(RunInfo(1, "", None, "finished", "", {}, {}), RunInfo(2, "", None, "finished", "", {}, {}))))


def test_junit_has_a_case_per_cell_and_a_regression_fails_with_its_numbers() -> None:
    root = ET.fromstring(render_junit(comparison(), LABELS))
    assert root.tag == "testsuites" and root.get("name") == "diffprof compare: run 42 against main (run 41)"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("10", "2", "0")
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["diffprof.schedulers", "diffprof.resolutions", "diffprof.steps", "diffprof.batch"]
    assert [(s.get("tests"), s.get("failures"), s.get("skipped")) for s in suites.values()] == [
        ("3", "1", "0"), ("3", "1", "1"), ("2", "0", "1"), ("2", "0", "2")]  # fmt: skip
    props = {p.get("name"): p.get("value") for p in suites["diffprof.schedulers"].iter("property")}
    assert props["baseline"] == "main (run 41)" and props["metric"] == "s_per_image" and props["threshold"] == "0.05"
    assert props["environment.diffusers.version"] == "0.42.1 -> 0.43.0" and props["environment.git.commit"] == "4f2a9c1 -> b7e01d3"

    def outcome(case: ET.Element) -> tuple[str, str | None, str | None]:
        child = next((x for x in case if x.tag in ("failure", "skipped")), None)
        return (case.get("name", ""), None if child is None else child.tag, None if child is None else child.get("message"))

    cases = {c.get("classname", "") + " " + c.get("name", ""): c for c in root.iter("testcase")}
    euler = cases["diffprof.schedulers scheduler=euler"]
    failure = euler.find("failure")
    assert failure is not None and failure.get("type") == "regression"
    assert failure.get("message") == (
        "regression: s_per_image 1 s -> 1.3 s (+30.0%, beyond the 5% threshold; p=0.0079 < 0.05, mann-whitney, 5/5 samples)")
    assert "ratio: 1.3" in (failure.text or "") and "samples: 5 in A" in (failure.text or "")
    assert euler.get("time") == "1.300"  # B's seconds per image: a UI's duration column shows the cell's time
    broke = cases["diffprof.resolutions width=768, height=768"].find("failure")
    assert broke is not None and broke.get("type") == "failed" and broke.get("message") == "failed in B: torch.OutOfMemoryError: CUDA out of memory"
    assert outcome(cases["diffprof.resolutions width=1536, height=1536"])[1:] == ("skipped", "failed in both runs")
    assert outcome(cases["diffprof.steps steps=50"])[1:] == ("skipped", "s_per_image missing in A")
    assert outcome(cases["diffprof.batch batch=8"])[1:] == ("skipped", "only in main (run 41) (the baseline): not measured in run 42")
    assert outcome(cases["diffprof.batch batch=16"])[1] == "skipped"
    for name, says in (("diffprof.schedulers scheduler=ddim", "same: s_per_image 1.2 s -> 1.2 s (+0.0%, within the 5% threshold"),
                       ("diffprof.schedulers scheduler=dpm++", "improvement: s_per_image 1 s -> 700 ms (-30.0%"),
                       ("diffprof.steps steps=10", "not significant: s_per_image 1 s -> 1.3 s (+30.0%, beyond the 5% threshold; p=0.7"),
                       ("diffprof.resolutions width=1024, height=1024", "failed: failed in A: torch.OutOfMemoryError")):
        case = cases[name]
        assert outcome(case)[1] is None, name  # passes
        assert (case.findtext("system-out") or "").startswith(says), (name, case.findtext("system-out"))


# ----------------------------------------------------------------------------- github
def test_github_markdown_has_the_verdict_table_and_the_environment_diff() -> None:
    text = render_github(comparison(), LABELS)
    lines = text.splitlines()
    assert lines[0] == "### diffprof compare: ❌ 2 regressions"
    assert lines[2] == "**run 42** against the baseline **main (run 41)** · `s_per_image` (lower is better) · threshold 5% · alpha 0.05"
    assert "| suite | cell | A | B | change | p | n | verdict | note |" in lines
    assert "| schedulers | scheduler=euler | 1 s | 1.3 s | +30.0% | 0.0079 | 5/5 | ❌ regression |  |" in lines
    assert "| schedulers | scheduler=dpm++ | 1 s | 700 ms | -30.0% | 0.0079 | 5/5 | 🚀 improvement |  |" in lines
    assert any(line.startswith("| resolutions | width=768, height=768 | 2 s | - | - | - | - | 💥 failed | failed in B: torch.OutOfMemoryError") for line in lines)
    assert "**1 regression, 1 improvement, 1 same, 1 not significant, 3 failed, 1 missing; 1 cell only in A, 1 cell only in B**" in text
    assert "Only in main (run 41): batch batch=8" in lines and "Only in run 42: batch batch=16" in lines
    assert "<details><summary>Environment: 2 differences</summary>" in lines
    assert "| `diffusers.version` | 0.42.1 | 0.43.0 |" in lines and "| `git.commit` | 4f2a9c1 | b7e01d3 |" in lines
    same = render_github(compare(runs()[0], runs()[0]), LABELS)
    assert same.startswith("### diffprof compare: ✅ no regression") and "Environment: the same software and hardware in both runs." in same


def test_github_markdown_escapes_what_would_break_a_table() -> None:
    a, b = RunInfo(1, "", None, "finished", "", {}, {"x": "a|b"}), RunInfo(2, "", None, "finished", "", {}, {"x": "<script>"})
    a.cells, b.cells = [_cell("s", {"p": "x|y"}, 1.0)], [_cell("s", {"p": "x|y"}, 1.0)]
    text = render_github(compare(a, b))
    assert "| s | p=x\\|y |" in text and "| `x` | a\\|b | &lt;script&gt; |" in text and "<script>" not in text


def test_the_rendered_example_in_docs_ci_md_is_what_diffprof_writes() -> None:
    """docs/ci.md shows the github format rendered; refresh it with DIFFPROF_UPDATE_DOCS=1."""
    body = render_github(comparison(), LABELS)
    page = CI_DOC.read_text(encoding="utf-8")
    updated = replace_section(page, "github-example", body)
    if os.environ.get("DIFFPROF_UPDATE_DOCS") and updated != page:
        CI_DOC.write_text(updated, encoding="utf-8")
        page = CI_DOC.read_text(encoding="utf-8")
    assert updated == page, "docs/ci.md's github example is stale: DIFFPROF_UPDATE_DOCS=1 pytest tests/test_ci_formats.py"


# ----------------------------------------------------------------------------- the command line
def _store_with(path: Path) -> None:
    a, b = runs()
    with Store(path) as store:
        for run in (a, b):
            rid = store.create_run(run.command, run.config, run.environment, name=run.name)
            for c in run.cells:
                store.add_cell(rid, c)
            store.finish_run(rid)


def test_compare_writes_junit_and_github_and_exits_1_on_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    _store_with(db)
    out = tmp_path / "reports" / "compare.xml"
    assert main(["compare", "main", "latest", "--db", str(db), "--format", "junit", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "1 regression, 1 improvement" in captured.err and "junit: " in captured.err
    root = ET.fromstring(out.read_text())
    assert root.get("name") == "diffprof compare: run 2 against main (run 1)" and root.get("failures") == "2"
    assert main(["compare", "main", "latest", "--db", str(db), "-f", "github"]) == 1
    assert capsys.readouterr().out.startswith("### diffprof compare: ❌ 2 regressions\n")
    assert main(["compare", "latest", "latest", "--db", str(db), "-f", "github"]) == 0
    assert "✅ no regression" in capsys.readouterr().out
    assert main(["compare", "main", "latest", "--db", str(db), "--out", str(out)]) == 2  # the console table is printed, not written
    assert "add --format junit" in capsys.readouterr().err
    assert main(["compare", "main", "latest", "--db", str(db), "-f", "tap"]) == 2
    assert "unknown compare format 'tap'" in capsys.readouterr().err
    assert get_comparison_renderer("junit").file_extension == "xml" and get_comparison_renderer("github").file_extension == "md"
