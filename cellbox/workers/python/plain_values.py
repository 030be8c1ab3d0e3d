"""The text of a plain builtin value (a number, a string, None) without IPython's formatters.

A cell's value is most often such a value, whose only form is its ``repr``. IPython finds
that out by asking every formatter of the display formatter and pretty-printing the value,
which is a third of a warm ``1+1``. This gives the same text from the formatters'
registrations directly, and answers None (use IPython's way) whenever anything registered
for the value's type, or any setting of the text formatter, could make the answer differ.
"""

from __future__ import annotations

from typing import Any

PLAIN_TYPES = (int, float, bool, str, type(None), complex)

# What makes the cached view of the formatters stale (the registries themselves are kept by
# reference: ``for_type`` changes them in place).
_WATCHED = ["type_printers", "deferred_printers", "singleton_printers", "pprint", "float_format"]


class PlainValues:
    """Knows when a plain value's text is its ``repr``; watches the formatters' settings."""

    def __init__(self, display_formatter: Any) -> None:
        self._display = display_formatter
        text = display_formatter.formatters["text/plain"]
        self._default_printers = {kind: text.type_printers.get(kind) for kind in PLAIN_TYPES}
        self._default_singletons = {
            key: text.singleton_printers.get(key) for key in map(id, (None, True, False))
        }
        # The key of each type in the registries by name (``for_type_by_name``).
        self._names = {kind: ("builtins", kind.__name__) for kind in PLAIN_TYPES}
        self._view: tuple[Any, ...] | None = None
        display_formatter.observe(self._forget, names=["formatters"])

    def text(self, value: Any) -> str | None:
        """``value``'s ``text/plain`` as IPython would give it, or None: ask IPython."""
        kind = type(value)
        if kind not in self._default_printers:
            return None
        view = self._view
        # Stale if a formatter was added in place, or a registry of the other formatters that
        # was empty is not any more (``for_type`` fills them in place).
        if view is None or len(view[0]) != view[1] or any(view[2]):
            view = self._look()
        _, _, _, by_type, by_name, printers, deferred, singletons, pprint, float_format = view
        key = self._names[kind]
        for registered in by_type:  # the other formatters' registries that have entries
            if kind in registered:
                return None
        for registered in by_name:
            if key in registered:
                return None
        if printers.get(kind) is not self._default_printers[kind] or key in deferred:
            return None
        if value is None or kind is bool:
            if singletons.get(id(value)) is not self._default_singletons[id(value)]:
                return None
        try:
            if kind is float and pprint:
                return float_format % value
            return repr(value)
        except Exception:  # e.g. an int too long for repr: IPython reports it its way
            return None

    def _formatters(self) -> list[Any]:
        display = self._display
        return [
            *display.formatters.values(),
            display.ipython_display_formatter,
            display.mimebundle_formatter,
        ]

    def _look(self) -> tuple[Any, ...]:
        formatters = self._display.formatters
        text = formatters["text/plain"]
        for formatter in self._formatters():
            formatter.observe(self._forget, names=_WATCHED)  # once per formatter and name
        others = [formatter for formatter in self._formatters() if formatter is not text]
        by_type = [formatter.type_printers for formatter in others]
        by_name = [formatter.deferred_printers for formatter in others]
        self._view = (
            formatters,
            len(formatters),
            # Most registries are empty: one any() over them replaces a lookup in each.
            tuple(registry for registry in by_type + by_name if not registry),
            tuple(registry for registry in by_type if registry),
            tuple(registry for registry in by_name if registry),
            text.type_printers,
            text.deferred_printers,
            text.singleton_printers,
            text.pprint,
            text.float_format,
        )
        return self._view

    def _forget(self, change: Any = None) -> None:
        self._view = None
