"""PlainValues gives IPython's own text for plain values, and steps aside when it might not."""

from __future__ import annotations

import pytest
from IPython.core.formatters import DisplayFormatter, HTMLFormatter

from cellbox.workers.python.plain_values import PlainValues

VALUES = [0, -7, 2**70, 1.5, 0.1 + 0.2, float("nan"), "a'b\"c\n", "", None, True, False, 3 + 4j]


@pytest.fixture
def display() -> DisplayFormatter:
    display = DisplayFormatter()
    for formatter in display.formatters.values():
        formatter.enabled = True
    return display


def ipython_text(display: DisplayFormatter, value: object) -> str:
    return display.format(value)[0]["text/plain"]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_same_text_as_ipython(display: DisplayFormatter, value: object) -> None:
    assert PlainValues(display).text(value) == ipython_text(display, value)


def test_float_precision_is_followed(display: DisplayFormatter) -> None:
    plain = PlainValues(display)
    display.formatters["text/plain"].float_precision = "3"
    assert plain.text(3.14159) == ipython_text(display, 3.14159) == "3.142"
    display.formatters["text/plain"].pprint = False
    assert plain.text(3.14159) == ipython_text(display, 3.14159) == "3.14159"


def test_steps_aside_for_a_registered_printer(display: DisplayFormatter) -> None:
    plain = PlainValues(display)
    assert plain.text(5) == "5"
    display.formatters["text/html"].for_type(int, lambda value: f"<b>{value}</b>")
    assert plain.text(5) is None
    assert plain.text("x") == "'x'"
    display.formatters["text/plain"].for_type(str, lambda value, p, cycle: p.text("S"))
    assert plain.text("x") is None


def test_steps_aside_for_a_deferred_or_replaced_registry(display: DisplayFormatter) -> None:
    plain = PlainValues(display)
    display.formatters["text/markdown"].for_type_by_name("builtins", "float", str)
    assert plain.text(1.0) is None
    display.formatters["text/latex"].type_printers = {complex: str}
    assert plain.text(1j) is None
    assert plain.text(1) == "1"


def test_sees_a_registry_emptied_and_refilled_in_place(display: DisplayFormatter) -> None:
    plain = PlainValues(display)
    html = display.formatters["text/html"]
    html.for_type(float, str)
    html.for_type_by_name("builtins", "complex", str)
    assert plain.text(1.0) is None and plain.text(1j) is None and plain.text(1) == "1"
    # As many entries as before, other types: no count could tell.
    del html.type_printers[float]
    html.type_printers[int] = str
    del html.deferred_printers[("builtins", "complex")]
    html.deferred_printers[("builtins", "str")] = str
    assert plain.text(1) is None and plain.text("s") is None
    assert plain.text(1.0) == "1.0" and plain.text(1j) == "1j"
    markdown = display.formatters["text/markdown"]  # empty until now
    markdown.deferred_printers[("builtins", "bool")] = str
    assert plain.text(True) is None


def test_sees_a_formatter_added_in_place(display: DisplayFormatter) -> None:
    plain = PlainValues(display)
    assert plain.text(1) == "1"
    extra = HTMLFormatter()
    extra.for_type(int, str)
    display.formatters["text/x-extra"] = extra
    assert plain.text(1) is None


def test_leaves_other_types_and_failing_reprs_to_ipython(display: DisplayFormatter) -> None:
    plain = PlainValues(display)
    assert plain.text([1, 2]) is None
    assert plain.text(MyInt(3)) is None  # a subclass may have its own reprs
    assert plain.text(10**5000) is None  # repr refuses (int max str digits)


class MyInt(int):
    def _repr_html_(self) -> str:
        return "<i>3</i>"
