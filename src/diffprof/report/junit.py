"""JUnit XML for CI systems (Jenkins, GitLab, Azure DevOps, GitHub test reporters): a comparison
shown as test results, one test case per cell.

Layout (valid against the JUnit XML schema Jenkins and Ant use; tests/data/junit-10.xsd):
``<testsuites>`` holds one ``<testsuite name="diffprof.<suite>">`` per diffprof suite, whose
properties say what was compared (metric, threshold, alpha, the runs, environment differences);
each cell is a ``<testcase classname="diffprof.<suite>" name="<labels>">``:

- a **regression** is a ``<failure type="regression">`` whose message has the numbers (A, B, the
  change, the threshold, the test and its p-value); a cell that was ok in A and fails in B is a
  ``<failure type="failed">`` with B's error: what makes ``diffprof compare`` exit 1;
- a cell failed in both runs, a metric missing on one side, and a cell in only one run are
  ``<skipped>`` with the reason;
- everything else passes; ``not significant`` and ``improvement`` say why in ``<system-out>``.

``time`` is B's value when the metric is a time in seconds (a UI's "duration" column then shows
the cell's time), else left out.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable

from diffprof.analysis.compare import CellComparison, Comparison
from diffprof.metrics import metric as describe_metric
from diffprof.report.comparison import ComparisonOptions, ComparisonRenderer, register_comparison, verdict_reason
from diffprof.results import CellResult


def render_junit(comparison: Comparison, options: ComparisonOptions | None = None) -> str:
    """The comparison as a JUnit XML document (text, with its XML declaration)."""
    c = comparison
    label_a, label_b = (options or ComparisonOptions()).labels(c)
    root = ET.Element("testsuites", name=f"diffprof compare: {label_b} against {label_a}")
    by_suite: dict[str, list[ET.Element]] = defaultdict(list)
    for cell in c.cells:
        by_suite[cell.suite].append(_case(c, cell))
    for side, cells, why in (("A", c.only_a, f"only in {label_a} (the baseline): not measured in {label_b}"),
                             ("B", c.only_b, f"only in {label_b}: no baseline cell in {label_a} to compare with")):
        for cell in cells:
            by_suite[cell.suite].append(_unmatched(cell, why))
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for suite, cases in by_suite.items():
        failures = sum(1 for case in cases if case.find("failure") is not None)
        skipped = sum(1 for case in cases if case.find("skipped") is not None)
        element = ET.SubElement(
            root, "testsuite", name=f"diffprof.{suite}", tests=str(len(cases)), failures=str(failures), errors="0", skipped=str(skipped)
        )
        _properties(element, c, label_a, label_b)
        element.extend(cases)
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["skipped"] += skipped
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _case(c: Comparison, cell: CellComparison) -> ET.Element:
    case = ET.Element("testcase", classname=f"diffprof.{cell.suite}", name=cell.label)
    seconds = cell.value_b if describe_metric(c.metric).unit == "s" else None
    if seconds is not None and math.isfinite(seconds) and seconds >= 0:
        case.set("time", f"{seconds:.3f}")
    reason = verdict_reason(c, cell)
    if cell.verdict == "regression":
        _child(case, "failure", f"regression: {reason}", "regression", _details(cell))
    elif cell.failed_in == "B":
        _child(case, "failure", cell.note, "failed", _details(cell))
    elif cell.failed_in == "both" or cell.verdict == "missing":
        _child(case, "skipped", cell.note, None, None)
    else:
        out = ET.SubElement(case, "system-out")
        out.text = f"{cell.verdict}: {reason}" + (": more repeats would tell" if cell.verdict == "not significant" else "")
    return case


def _unmatched(cell: CellResult, why: str) -> ET.Element:
    case = ET.Element("testcase", classname=f"diffprof.{cell.suite}", name=cell.label)
    _child(case, "skipped", why, None, None)
    return case


def _child(case: ET.Element, tag: str, message: str, kind: str | None, body: str | None) -> None:
    element = ET.SubElement(case, tag, message=message)
    if kind:
        element.set("type", kind)
    if body:
        element.text = body


def _details(cell: CellComparison) -> str:
    lines = [f"verdict: {cell.verdict}", f"A: {cell.value_a}  B: {cell.value_b}  ratio: {cell.ratio}"]
    if cell.n_a or cell.n_b:
        lines.append(f"samples: {cell.n_a} in A (median {cell.median_a}), {cell.n_b} in B (median {cell.median_b}); test {cell.test}, p={cell.p_value}")
    if cell.note:
        lines.append(f"note: {cell.note}")
    lines += [f"setting {k}: {va!r} -> {vb!r}" for k, (va, vb) in cell.settings_changes.items()]
    return "\n".join(lines)


def _properties(element: ET.Element, c: Comparison, label_a: str, label_b: str) -> None:
    props = ET.SubElement(element, "properties")
    items: Iterable[tuple[str, object]] = [
        ("baseline", label_a), ("candidate", label_b), ("metric", c.metric), ("better", c.direction),
        ("threshold", c.threshold), ("alpha", c.alpha), ("sample", c.sample or "none"),
    ]
    items = [*items, *((f"environment.{k}", f"{va} -> {vb}") for k, (va, vb) in c.environment_changes.items())]
    for name, value in items:
        ET.SubElement(props, "property", name=name, value=str(value))


@register_comparison
class JUnitRenderer(ComparisonRenderer):
    name = "junit"
    file_extension = "xml"

    def render(self, comparison: Comparison, options: ComparisonOptions | None = None) -> str:
        return render_junit(comparison, options)
