"""The surgery catalog: every key of the seed catalog, and what implements it.

Each entry carries the seed facts (name, section(s), formula, description), its
status (``implemented`` or ``planned``), and for implemented entries the surgery class
and the test that proves its effect. Surgery modules register themselves with
:func:`register`; :func:`create` turns a spec into a validated surgery object.

>>> entry = get("double_q_learning")
>>> entry.status, entry.sections
('implemented', (21,))
>>> create("prioritized_replay:alpha=0.5").params.alpha
0.5
>>> import rlsurgery as rls
>>> len(rls.catalog(section=21))  # the module is callable: rls.catalog() lists the entries
7
"""

from __future__ import annotations

import csv
import difflib
import importlib
import inspect
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rlsurgery.core.errors import ParameterError, PlannedSurgeryError, UnknownSurgeryError
from rlsurgery.core.params import describe_params
from rlsurgery.core.spec import SurgerySpec, parse_spec
from rlsurgery.core.surgery import Surgery


def _surgery_modules() -> tuple[str, ...]:
    """Every module of the package that registers a surgery (a line starting with ``@register(``),
    in path order: found by reading the package's files, so that no list has to be kept and nothing
    else (studies, plots) is imported."""
    root = Path(__file__).resolve().parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "__init__.py" or "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        if "\n@register(" in text:
            found.append(".".join(("rlsurgery", *path.relative_to(root).with_suffix("").parts)))
    return tuple(found)


#: modules that register the built-in surgeries (imported on first catalog use)
BUILTIN_MODULES = _surgery_modules()


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog key."""

    key: str
    name: str
    sections: tuple[int, ...]
    section_titles: tuple[str, ...]
    translation: str
    description: str
    seed: bool = True
    """whether the key comes from the seed catalog (False: added by rlsurgery, e.g. n_step_returns)"""
    surgery: type[Surgery] | None = None
    proof: str | None = None
    """pytest node id of the test that shows the surgery's effect"""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``implemented`` or ``planned``."""
        return "implemented" if self.surgery is not None else "planned"

    @property
    def attaches_to(self) -> list[str]:
        """What the surgery modifies (empty while planned)."""
        return [a.value for a in self.surgery.attaches_to] if self.surgery else []

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form, as printed by ``rlsurgery catalog --json``."""
        return {
            "key": self.key,
            "name": self.name,
            "sections": list(self.sections),
            "section_titles": list(self.section_titles),
            "translation": self.translation,
            "description": self.description,
            "seed": self.seed,
            "status": self.status,
            "attaches_to": self.attaches_to,
            "families": list(self.surgery.families) if self.surgery else [],
            "family_notes": self.surgery.notes_by_family() if self.surgery else {},
            "stages": self.surgery.all_stages() if self.surgery else [],
            "class": f"{self.surgery.__module__}.{self.surgery.__qualname__}" if self.surgery else None,
            "proof": self.proof,
            "cost_note": self.surgery.cost_note if self.surgery else "",
            "params": describe_params(self.surgery.Params) if self.surgery else [],
        }


def _read_seed() -> dict[str, CatalogEntry]:
    text = resources.files("rlsurgery").joinpath("data/seed_catalog.tsv").read_text(encoding="utf-8")
    entries: dict[str, CatalogEntry] = {}
    for row in csv.DictReader(text.splitlines(), delimiter="\t"):
        key, section = row["key"], int(row["section"])
        if key in entries:  # a few keys appear in two sections
            old = entries[key]
            entries[key] = CatalogEntry(
                key,
                old.name,
                (*old.sections, section),
                (*old.section_titles, row["section_title"]),
                old.translation,
                old.description,
            )
        else:
            entries[key] = CatalogEntry(
                key,
                row["seed_name"],
                (section,),
                (row["section_title"],),
                row["translation"],
                row["description"],
            )
    return entries


_ENTRIES: dict[str, CatalogEntry] = _read_seed()
_LOADED = False


def register(
    proof: str,
    *,
    name: str | None = None,
    sections: tuple[int, ...] | None = None,
    description: str = "",
    translation: str = "",
) -> Callable[[type[Surgery]], type[Surgery]]:
    """Class decorator: register a surgery under its ``key``.

    :param proof: pytest node id of the test that shows the surgery's effect
    :param name: display name, for keys that are not in the seed catalog
    :param sections: seed section numbers, for keys that are not in the seed catalog
    :param description: one line, for keys that are not in the seed catalog
    :param translation: the formula, for keys that are not in the seed catalog
    """

    def decorate(cls: type[Surgery]) -> type[Surgery]:
        key = cls.key
        old = _ENTRIES.get(key)
        if old is not None:
            if old.surgery is not None and old.surgery is not cls:
                raise RuntimeError(f"catalog key {key!r} registered twice ({old.surgery} and {cls})")
            entry = CatalogEntry(
                key,
                old.name,
                old.sections,
                old.section_titles,
                old.translation,
                old.description,
                old.seed,
                cls,
                proof,
            )
        else:
            if name is None or sections is None:
                raise RuntimeError(f"{key!r} is not a seed key: register it with a name and sections")
            titles = tuple(_section_title(s) for s in sections)
            entry = CatalogEntry(key, name, sections, titles, translation, description, False, cls, proof)
        _ENTRIES[key] = entry
        _document_cost(cls)
        return cls

    return decorate


def _document_cost(cls: type[Surgery]) -> None:
    """Append the surgery's ``cost_note`` (its own or inherited) to its docstring, once."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    if cls.cost_note and "\nCost: " not in doc:
        cls.__doc__ = f"{doc}\n\nCost: {cls.cost_note}\n"


def _section_title(section: int) -> str:
    for entry in _ENTRIES.values():
        if section in entry.sections:
            return entry.section_titles[entry.sections.index(section)]
    return ""


def _ensure_loaded() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def entries(section: int | None = None, status: str | None = None) -> list[CatalogEntry]:
    """All catalog entries, in seed order (added keys last, in the order of :data:`BUILTIN_MODULES`,
    whichever module was imported first), optionally filtered."""
    _ensure_loaded()
    out = [e for e in _ENTRIES.values() if e.seed]
    out += sorted((e for e in _ENTRIES.values() if not e.seed), key=_module_rank)
    if section is not None:
        out = [e for e in out if section in e.sections]
    if status is not None:
        out = [e for e in out if e.status == status]
    return out


def _module_rank(entry: CatalogEntry) -> int:
    """Where the module of an added key's surgery comes in :data:`BUILTIN_MODULES` (others last)."""
    module = getattr(entry.surgery, "__module__", "")
    return BUILTIN_MODULES.index(module) if module in BUILTIN_MODULES else len(BUILTIN_MODULES)


def keys() -> list[str]:
    """Every catalog key."""
    return [e.key for e in entries()]


def get(key: str) -> CatalogEntry:
    """The entry for ``key``; an unknown key raises with the closest matches."""
    _ensure_loaded()
    try:
        return _ENTRIES[key]
    except KeyError:
        close = difflib.get_close_matches(key, list(_ENTRIES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownSurgeryError(
            f"unknown surgery {key!r}{hint} (see `rlsurgery catalog` for all keys)"
        ) from None


def create(spec: Any) -> Surgery:
    """Build a validated surgery object from a spec (see :mod:`rlsurgery.core.spec`)."""
    if isinstance(spec, Surgery):
        return spec
    parsed: SurgerySpec = parse_spec(spec)
    entry = get(parsed.key)
    if entry.surgery is None:
        raise PlannedSurgeryError(
            f"{parsed.key}: '{entry.name}' (section {', '.join(map(str, entry.sections))}) is in the catalog "
            "but planned, not implemented yet; `rlsurgery catalog --status implemented` lists "
            "what can be applied"
        )
    params = dict(parsed.params)
    at_step = params.pop("at_step", None)
    surgery = entry.surgery(**params)
    if at_step is not None:
        if isinstance(at_step, bool) or not isinstance(at_step, int) or at_step < 0:
            raise ParameterError(f"{parsed.key}: 'at_step' must be an env step >= 0 (got {at_step!r})")
        if not surgery.operates_in_place:
            in_place = [e.key for e in entries(status="implemented") if e.surgery.operates_in_place]
            raise ParameterError(
                f"{parsed.key}: cannot be applied at a step during training (at_step); "
                f"surgeries that can: {', '.join(in_place)}"
            )
        surgery.at_step = at_step
    return surgery


def catalog(section: int | None = None) -> list[CatalogEntry]:
    """The catalog as a list of entries (``rls.catalog()``)."""
    return entries(section=section)


class _CallableModule(types.ModuleType):
    """Lets ``rls.catalog(...)`` call :func:`catalog` while ``rls.catalog.get`` etc. stay module functions."""

    def __call__(self, section: int | None = None) -> list[CatalogEntry]:
        return catalog(section)


sys.modules[__name__].__class__ = _CallableModule
