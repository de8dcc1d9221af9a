"""Run references: how a user names a run on the command line.

A reference is a run id (``7``), ``latest``, ``latest~N`` (N runs before the latest, as in git), or
a run name given with ``--name`` (the newest run of that name). "Latest" means highest id: ids only
grow, while clocks can step back. A reference that names nothing raises a
:class:`~diffprof.errors.StoreError` that says which runs do exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from diffprof.errors import StoreError, closest

if TYPE_CHECKING:  # pragma: no cover
    from diffprof.store.connection import Connection

RunRefLike = str | int

_LATEST = re.compile(r"latest(?:~(\d+))?")
_HINT_FORMS = "use a run id, latest, latest~N (N runs before the latest) or a run name"


@dataclass(frozen=True)
class RunRef:
    """A parsed reference: ``kind`` says how ``value`` picks a run."""

    kind: Literal["id", "latest", "name"]
    value: int | str

    def __str__(self) -> str:
        if self.kind == "latest":
            return "latest" if self.value == 0 else f"latest~{self.value}"
        return str(self.value)


def parse_ref(ref: RunRefLike) -> RunRef:
    """Parse ``7``, ``"7"``, ``"latest"``, ``"latest~2"`` or a name; reject malformed ones."""
    if isinstance(ref, bool) or not isinstance(ref, (int, str)):
        raise StoreError(f"bad run reference {ref!r}", _HINT_FORMS)
    if isinstance(ref, int):
        if ref < 1:
            raise StoreError(f"bad run id {ref}: ids start at 1", _HINT_FORMS)
        return RunRef("id", ref)
    text = ref.strip()
    if not text:
        raise StoreError("empty run reference", _HINT_FORMS)
    if text.isdigit():
        return parse_ref(int(text))
    match = _LATEST.fullmatch(text)
    if match:
        return RunRef("latest", int(match.group(1) or 0))
    if text.startswith("latest"):
        raise StoreError(f"bad run reference {text!r}", _HINT_FORMS)
    return RunRef("name", text)


def id_ranges(ids: list[int], max_ranges: int = 6) -> str:
    """``[1, 2, 3, 5, 7, 8]`` -> ``"1-3, 5, 7-8"``; long lists keep their ends around an ellipsis."""
    ranges: list[str] = []
    for value in sorted(ids):
        if ranges and value == _range_end(ranges[-1]) + 1:
            start = ranges[-1].split("-")[0]
            ranges[-1] = f"{start}-{value}"
        else:
            ranges.append(str(value))
    if len(ranges) > max_ranges:
        head = max_ranges // 2
        ranges = ranges[:head] + ["..."] + ranges[-(max_ranges - head) :]
    return ", ".join(ranges)


def _range_end(text: str) -> int:
    return int(text.split("-")[-1])


def resolve_ref(conn: Connection, ref: RunRefLike, where: str) -> int:
    """The id of the run ``ref`` names in the store at ``where`` (used in messages only)."""
    parsed = parse_ref(ref)
    ids = [row[0] for row in conn.execute("SELECT id FROM runs ORDER BY id DESC")]
    if not ids:
        raise StoreError(
            f"run {parsed} not found: {where} holds no runs yet",
            "`diffprof bench` records one, or pass --db to point at another store",
        )
    available = f"runs {id_ranges(ids)} exist; or use latest / latest~1"
    if parsed.kind == "id":
        if parsed.value in ids:
            return int(parsed.value)
        raise StoreError(f"run {parsed.value} not found in {where}", f"{available} (`diffprof runs` lists them)")
    if parsed.kind == "latest":
        back = int(parsed.value)
        if back < len(ids):
            return ids[back]
        raise StoreError(
            f"{parsed} not found: {where} holds {len(ids)} run(s)",
            f"the oldest is latest~{len(ids) - 1} (run {ids[-1]})",
        )
    row = conn.execute("SELECT id FROM runs WHERE name = ? ORDER BY id DESC LIMIT 1", (parsed.value,)).fetchone()
    if row:
        return int(row[0])
    names = sorted({r[0] for r in conn.execute("SELECT DISTINCT name FROM runs WHERE name IS NOT NULL")})
    guess = closest(str(parsed.value), names)
    hint = f"did you mean {guess!r}? " if guess else ""
    named = f"run names: {', '.join(names)}; " if names else ""
    raise StoreError(f"no run named {parsed.value!r} in {where}", f"{hint}{named}{available}")
