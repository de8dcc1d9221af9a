"""JUnit XML for CI systems (Jenkins, GitLab, Azure DevOps, GitHub test reporters): a comparison
shown as test results, one test case per cell.

Layout (valid against the JUnit XML schema Jenkins and Ant use; tests/data/junit-10.xsd):
``<testsuites>`` holds one ``<testsuite name="diffprof.<suite>">`` per diffprof suite, whose
properties say what was compared (runs, metric, threshold, alpha, correction, whether each host
was busy, environment differences) and whose ``<system-out>`` carries the comparison's caption
(summary, warnings); each cell is a ``<testcase classname="diffprof.<suite>" name="<labels>">``.
The verdicts are the gate's (:mod:`diffprof.analysis.verdicts`); this module only maps them:

- a believed **regression** is a ``<failure type="regression">`` whose message has the numbers (A,
  B, the change and its interval, the threshold, the corrected p-value and the test); a cell ok in
  A that fails in B is a ``<failure type="failed">`` with B's error. Exactly these make
  ``diffprof compare`` exit 1, so the test report and the job's status agree.
- **inconclusive** cells (``too noisy``, ``host busy``, ``not significant``) are **skipped**, with
  the verdict as ``type`` and the reason (the rounds that would resolve it, why the host was busy)
  as message, their numbers in ``<system-out>``. Why skipped and not a pass with system-out: a
  pass claims "no regression here", which the gate did not establish, and every CI UI hides a
  passing case's output behind a click, while skipped cases are counted apart in the summary line
  ("2 skipped") and listed with their message (Jenkins, GitLab's test report, Azure DevOps'
  "Not executed", the GitHub reporters), and none of them fails a build on a skipped test.
- a cell failed in both runs, a metric missing on one side and a cell in only one run are skipped
  too, with the reason;
- ``same`` and ``improvement`` pass and say why in ``<system-out>``; a cell failed in A and fixed
  in B passes.

``time`` is B's value when the metric is a time in seconds (a UI's "duration" column then shows
the cell's time), else left out.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import defaultdict

from diffprof.analysis.compare import CellComparison, Comparison
from diffprof.metrics import metric as describe_metric
from diffprof.report.comparison.base import CompareOptions, ComparisonRenderer, register, side
from diffprof.report.comparison.rows import INCONCLUSIVE, caption_lines, shown_value, verdict_reason
from diffprof.results import CellResult


def render_junit(comparison: Comparison, options: CompareOptions | None = None) -> str:
    """The comparison as a JUnit XML document (text, with its XML declaration)."""
    c = comparison
    root = ET.Element("testsuites", name=(options or CompareOptions()).title_for(c))
    by_suite: dict[str, list[ET.Element]] = defaultdict(list)
    for cell in c.cells:
        by_suite[cell.suite].append(_case(c, cell))
    for cells, why in ((c.only_a, f"only in run {side(c, 'A')} (the baseline): not measured in run {side(c, 'B')}"),
                       (c.only_b, f"only in run {side(c, 'B')}: no baseline cell in run {side(c, 'A')} to compare with")):
        for unmatched in cells:
            by_suite[unmatched.suite].append(_unmatched(unmatched, why))
    caption = "\n".join(caption_lines(c))
    totals = {"tests": 0, "failures": 0}
    for suite, cases in by_suite.items():
        failures = sum(1 for case in cases if case.find("failure") is not None)
        skipped = sum(1 for case in cases if case.find("skipped") is not None)
        element = ET.SubElement(
            root, "testsuite", name=f"diffprof.{suite}", tests=str(len(cases)), failures=str(failures), errors="0", skipped=str(skipped)
        )
        _properties(element, c)
        element.extend(cases)
        ET.SubElement(element, "system-out").text = caption
        totals["tests"] += len(cases)
        totals["failures"] += failures
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _case(c: Comparison, cell: CellComparison) -> ET.Element:
    case = ET.Element("testcase", classname=f"diffprof.{cell.suite}", name=cell.label)
    seconds = shown_value(cell, "B") if describe_metric(c.metric).unit == "s" else None
    if seconds is not None and math.isfinite(seconds) and seconds >= 0:
        case.set("time", f"{seconds:.3f}")
    reason = verdict_reason(c, cell)
    if cell.verdict == "regression":
        _child(case, "failure", f"regression: {reason}", "regression", _details(cell))
    elif cell.failed_in == "B":
        _child(case, "failure", cell.note, "failed", _details(cell))
    elif cell.verdict in INCONCLUSIVE:
        _child(case, "skipped", f"{cell.verdict}: {reason}", cell.verdict, None)
        ET.SubElement(case, "system-out").text = _details(cell)
    elif cell.failed_in == "both" or cell.verdict == "missing":
        _child(case, "skipped", cell.note, None, None)
    else:
        ET.SubElement(case, "system-out").text = f"{cell.verdict}: {reason}"
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
    """The raw numbers, for whoever opens the case: values weighed, means, ratio and interval, test."""
    lines = [f"verdict: {cell.verdict}", f"A: {cell.value_a}  B: {cell.value_b}  ratio B/A: {cell.ratio}"]
    if cell.n_a or cell.n_b:
        lines.append(f"{cell.evidence or 'values'} weighed: A {cell.values_a} (geometric mean {cell.mean_a}), B {cell.values_b} (geometric mean {cell.mean_b})")
        lines.append(f"interval of B/A: [{cell.low}, {cell.high}]; test {cell.test}, p={cell.p_value}, corrected {cell.p_adjusted}")
    if cell.history_runs:
        lines.append(f"noise floor from {cell.history_runs} earlier runs")
    if cell.rounds_needed:
        lines.append(f"rounds per run that would resolve it: {cell.rounds_needed}")
    if cell.note:
        lines.append(f"note: {cell.note}")
    lines += [f"setting {k}: {va!r} -> {vb!r}" for k, (va, vb) in cell.settings_changes.items()]
    return "\n".join(lines)


def _properties(element: ET.Element, c: Comparison) -> None:
    props = ET.SubElement(element, "properties")
    items: list[tuple[str, object]] = [
        ("baseline", f"run {side(c, 'A')}"), ("candidate", f"run {side(c, 'B')}"), ("metric", c.metric), ("better", c.direction),
        ("threshold", c.threshold), ("alpha", c.alpha), ("correction", c.correction), ("sample", c.sample or "none"),
    ]
    items += [(f"host_busy.{which}", (load.reason if load.busy else "no") if load.recorded else "unknown")
              for which, load in (("A", c.load_a), ("B", c.load_b))]
    items += [(f"environment.{k}", f"{va} -> {vb}") for k, (va, vb) in c.environment_changes.items()]
    for name, value in items:
        ET.SubElement(props, "property", name=name, value=str(value))


@register
class JUnitComparisonRenderer(ComparisonRenderer):
    name = "junit"
    file_extension = "xml"

    def render(self, comparison: Comparison, options: CompareOptions | None = None) -> str:
        return render_junit(comparison, options)
