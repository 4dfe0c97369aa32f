"""Generate ``docs/surgeries.md`` from the catalog (``rlsurgery catalog --markdown``)."""

from __future__ import annotations

from pathlib import Path

from rlsurgery import catalog

HEADER = """# Surgeries

Generated from the catalog by `rlsurgery catalog --markdown -o docs/surgeries.md`;
do not edit by hand (a test checks that this file is current).

Status `implemented`: the surgery can be applied and the *proof* test shows its effect.
Status `planned`: the key is reserved; applying it is refused with a clear message.

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


def surgeries_markdown() -> str:
    """The whole ``docs/surgeries.md`` text."""
    entries = catalog.entries()
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
