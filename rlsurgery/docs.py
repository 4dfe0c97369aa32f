"""Generate ``docs/surgeries.md`` from the catalog (``rlsurgery catalog --markdown``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlsurgery import catalog

#: per-key wall-time ratios and extra memory, written by ``scripts/bench/surgery_costs.py --summary``
COSTS_FILE = Path(__file__).parent / "data" / "surgery_costs.json"

HEADER = """# Surgeries

Generated from the catalog by `rlsurgery catalog --markdown -o docs/surgeries.md`;
do not edit by hand (a test checks that this file is current).

Status `implemented`: the surgery can be applied and the *proof* test shows its effect.
Status `planned`: the key is reserved; applying it is refused with a clear message.

*cost*: the wall time of a short standard run (build and train) with the surgery, over the same run
of the agent without surgeries, measured in one process, interleaved (median and range over runs),
and the memory it adds (tensors and arrays the model holds: networks, optimizer states, buffers,
surgery state). Command, machine and date: `docs/benchmarks.md`, "The cost of every surgery".

"""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def range_text(bounds: dict[str, float]) -> str:
    """A parameter's bounds in interval notation (``[1, 1000]``, ``(0, 1)``, ``≥ 1``; ``—`` if none).

    >>> [range_text(b) for b in ({"ge": 1, "le": 1000}, {"gt": 0.0, "lt": 1.0}, {"ge": 2}, {})]
    ['[1, 1000]', '(0.0, 1.0)', '≥ 2', '—']
    """
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = (bounds["le"], "]") if "le" in bounds else (bounds["lt"], ")") if "lt" in bounds else None
    if low and high:
        return f"{low[0]}{low[1]}, {high[0]}{high[1]}"
    if low:
        return f"{'≥' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{'≤' if high[1] == ']' else '<'} {high[0]}"
    return "—"


def load_costs(path: Path = COSTS_FILE) -> dict[str, dict[str, Any]]:
    """The per-key cost summary (empty when it has not been measured)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def cost_text(cost: dict[str, Any] | None) -> str:
    """A key's cost line.

    >>> cost_text({"ratio": 1.234, "ratio_min": 1.2, "ratio_max": 1.3, "runs": 2, "extra_mb": 2.1,
    ...            "run": "DQN, CartPole-v1, 5k steps"})
    '1.23× the plain agent (1.20–1.30 over 2 runs; DQN, CartPole-v1, 5k steps), +2.1 MB'
    >>> cost_text({"skipped": "no standard run for its agents ('sac',)"})
    "not measured: no standard run for its agents ('sac',)"
    """
    if not cost:
        return "not measured yet"
    if "ratio" not in cost:
        return f"not measured: {cost.get('skipped') or cost.get('error')}"
    companions = f", with {', '.join(cost['with'])}" if cost.get("with") else ""
    memory = f", {cost['extra_mb']:+.1f} MB" if abs(cost["extra_mb"]) >= 0.05 else ""
    return (
        f"{cost['ratio']:.2f}× the plain agent ({cost['ratio_min']:.2f}–{cost['ratio_max']:.2f} over "
        f"{cost['runs']} runs; {cost['run']}{companions}){memory}"
    )


def surgeries_markdown() -> str:
    """The whole ``docs/surgeries.md`` text."""
    entries = catalog.entries()
    costs = load_costs()
    implemented = [e for e in entries if e.status == "implemented"]
    lines = [HEADER.rstrip("\n"), ""]
    lines.append(f"{len(implemented)} of {len(entries)} keys implemented.")
    lines.append("")
    lines.append("## Implemented")
    lines.append("")
    for entry in implemented:
        data = entry.as_dict()
        lines.append(f"### `{entry.key}` — {entry.name}")
        lines.append("")
        sections = ", ".join(f"{n} ({t})" for n, t in zip(entry.sections, entry.section_titles))
        lines.append(f"- section: {sections}{'' if entry.seed else ' (added by rlsurgery, not a seed key)'}")
        lines.append(f"- formula: {_cell(entry.translation)}")
        lines.append(f"- attaches to: {', '.join(data['attaches_to'])}")
        lines.append(f"- agents: {', '.join(data['families'])}; stages: {', '.join(data['stages']) or '—'}")
        for family, note in data["family_notes"].items():
            lines.append(f"- on {family}: {_cell(note)}")
        lines.append(f"- class: `{data['class']}`")
        lines.append(f"- proof: `{entry.proof}`")
        why = f" — why: {entry.surgery.cost_note}" if entry.surgery and entry.surgery.cost_note else ""
        lines.append(f"- cost: {_cell(cost_text(costs.get(entry.key)) + why)}")
        lines.append("")
        if data["params"]:
            lines.append("| parameter | type | default | range | meaning |")
            lines.append("| --- | --- | --- | --- | --- |")
            for p in data["params"]:
                lines.append(
                    f"| `{p['name']}` | {_cell(p['type'])} | `{p['default']!r}` | "
                    f"{range_text(p.get('bounds') or {})} | {_cell(p['doc'])} |"
                )
        else:
            lines.append("No parameters.")
        lines.append("")
    lines.append("## All keys")
    lines.append("")
    lines.append("| key | name | section | status | attaches to |")
    lines.append("| --- | --- | --- | --- | --- |")
    for entry in entries:
        lines.append(
            f"| `{entry.key}` | {_cell(entry.name)} | {', '.join(map(str, entry.sections))} | "
            f"{entry.status} | {', '.join(entry.attaches_to) or '—'} |"
        )
    return "\n".join(lines) + "\n"


def write_surgeries_markdown(path: str | Path) -> Path:
    """Write :func:`surgeries_markdown` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(surgeries_markdown(), encoding="utf-8")
    return path
