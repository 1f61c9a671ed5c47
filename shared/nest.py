"""Nests: trees of maps (string keys) and lists whose leaves are arrays or scalars.

A nest is flattened into ``(path, leaf)`` pairs in a canonical order (map keys sorted, list
elements in order); ``unflatten`` rebuilds the same structure from a nest used as its template.
Paths are tuples of map keys (str) and list indices (int).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Path = tuple[str | int, ...]


def is_spec(node: Any) -> bool:
    """A signature leaf: ``{"dtype": "<f4", "shape": [4]}``."""
    return isinstance(node, dict) and set(node) == {"dtype", "shape"}


def flatten(nest: Any, *, is_leaf: Callable[[Any], bool] | None = None) -> list[tuple[Path, Any]]:
    """``(path, leaf)`` pairs of ``nest`` in canonical order."""
    return list(_walk(nest, (), is_leaf))


def _walk(
    node: Any, path: Path, is_leaf: Callable[[Any], bool] | None
) -> Iterator[tuple[Path, Any]]:
    if is_leaf is not None and is_leaf(node):
        yield path, node
    elif isinstance(node, dict):
        for key in sorted(node):
            yield from _walk(node[key], (*path, key), is_leaf)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i), is_leaf)
    else:
        yield path, node


def unflatten(
    template: Any, leaves: list[Any], *, is_leaf: Callable[[Any], bool] | None = None
) -> Any:
    """Rebuilds ``template``'s structure with ``leaves`` (in ``flatten`` order)."""
    it = iter(leaves)
    result = _rebuild(template, it, is_leaf)
    if next(it, None) is not None:
        raise ValueError("more leaves than the template has")
    return result


def _rebuild(node: Any, it: Iterator[Any], is_leaf: Callable[[Any], bool] | None) -> Any:
    if is_leaf is not None and is_leaf(node):
        return next(it)
    if isinstance(node, dict):
        return {key: _rebuild(node[key], it, is_leaf) for key in sorted(node)}
    if isinstance(node, list | tuple):
        return [_rebuild(value, it, is_leaf) for value in node]
    return next(it)


def path_str(path: Path) -> str:
    """A readable name for a path, for error messages: ``obs/0/x``."""
    return "/".join(str(p) for p in path) or "<root>"
