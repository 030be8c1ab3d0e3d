"""A second audit of the clients as a demanding user meets them: what an object shows when
printed, uploads past the server's limit, downloads into directories and unwritable files,
and what ``--help`` promises (real server, real processes)."""

from __future__ import annotations


def test_an_execution_with_a_figure_prints_short(sdk):
    code = (
        "import matplotlib.pyplot as plt\nfrom IPython.display import HTML, display\n"
        "display(HTML('<td>x</td>' * 2000))\nplt.plot(range(100))\n'done'"
    )
    run = sdk.execute(code)
    figure = next(item for item in run.results if item.png is not None)
    text = repr(run)
    # The figure's PNG and SVG and the long HTML are told by their size, not dumped whole.
    assert len(text) < 2000, text[:3000]
    assert f"png=<{len(figure.png)} bytes>" in text and f"<{len(figure.svg)} chars>" in text
    assert "Item(is_primary=True, text=\"'done'\")" in text
    sdk.contexts.delete(run.context_id)
