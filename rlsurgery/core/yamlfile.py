"""YAML files the user edits (recipes, suites, studies): finding them, reading them, and
errors that name the file and line.

Bundled files live in top-level folders of the source tree (``agents/``, ``envs/``);
a wheel carries them as ``rlsurgery/_bundled/<folder>``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rlsurgery.core.errors import RecipeError


def bundled_dirs(folder: str) -> list[Path]:
    """Folders searched for bundled ``folder`` files: the wheel's copy, then the source tree."""
    here = Path(__file__).resolve().parent.parent
    return [p for p in (here / "_bundled" / folder, here.parent / folder) if p.is_dir()]


def bundled_names(folder: str) -> list[str]:
    """Names (file stems) of the bundled YAML files of ``folder``."""
    return sorted({p.stem for d in bundled_dirs(folder) for p in d.glob("*.yaml")})


def find_yaml(name: str | Path, folder: str, what: str, error: type[Exception] = RecipeError) -> Path:
    """Path of a bundled file given by name (``rainbow``) or of a user's file given by path.

    :param what: the kind of file, for messages ("recipe", "suite", ...)
    """
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise error(f"{what} file not found: {path}")
        return path
    for candidate_dir in bundled_dirs(folder):
        candidate = candidate_dir / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    names = bundled_names(folder)
    close = difflib.get_close_matches(str(name), names, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise error(f"unknown {what} {str(name)!r}{hint} (available: {', '.join(names)})")


class YamlLines:
    """Line numbers of the nodes of a YAML document, by key path."""

    def __init__(self, text: str) -> None:
        self.root = yaml.compose(text, Loader=yaml.SafeLoader)

    def duplicate_key(self) -> tuple[str, int, int] | None:
        """The first key given twice in one mapping: (key, its second line, its first line), or None.

        YAML keeps only the last value of a repeated key, silently; a file that says a setting
        twice is refused instead.
        """
        seen_nodes: set[int] = set()
        todo = [self.root]
        while todo:
            node = todo.pop()
            if node is None or id(node) in seen_nodes:
                continue
            seen_nodes.add(id(node))
            if isinstance(node, yaml.MappingNode):
                first: dict[Any, int] = {}
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                        if key.value in first:
                            return key.value, key.start_mark.line + 1, first[key.value]
                        first[key.value] = key.start_mark.line + 1
                    todo.append(value)
            elif isinstance(node, yaml.SequenceNode):
                todo.extend(node.value)
        return None

    def line(self, *path: Any) -> int | None:
        """1-based line of the node at ``path`` (or of its deepest existing ancestor)."""
        node = self.root
        for part in path:
            if isinstance(node, yaml.MappingNode):
                match = [v for k, v in node.value if k.value == part]
                if not match:
                    break
                node = match[0]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                break
        return None if node is None else node.start_mark.line + 1


def read_yaml(path: Path, error: type[Exception] = RecipeError) -> tuple[Any, Callable[..., Exception]]:
    """Parse ``path``; return the data and ``fail(message, *key_path)``, which builds an
    ``error`` whose message starts with ``file:line`` of the node at ``key_path``."""
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        lines = YamlLines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{where}: malformed YAML: {problem}") from None
    duplicate = lines.duplicate_key()
    if duplicate is not None:
        key, line, first = duplicate
        raise error(f"{path}:{line}: {key!r} is given twice in one mapping (first on line {first})")

    def fail(message: str, *key_path: Any) -> Exception:
        line = lines.line(*key_path)
        return error(f"{path}:{line}: {message}" if line else f"{path}: {message}")

    return data, fail


def check_keys(
    data: dict[str, Any], allowed: tuple[str, ...], fail: Callable[..., Exception], what: str, *key_path: Any
) -> None:
    """Reject keys of ``data`` outside ``allowed``, suggesting the closest one."""
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise fail(f"unknown {what} entry {key!r}{hint} (allowed: {', '.join(allowed)})", *key_path, key)
