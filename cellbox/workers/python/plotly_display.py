"""plotly figures in a Python context: the plotly JSON (in ``extra``) plus a standalone HTML.

Registered as plotly's default renderer right after ``plotly.io._renderers`` is first
imported (plotly stays out of worker start-up), so ``fig.show()``, ``display(fig)`` and a
figure as the cell's value all give one item with ``application/vnd.plotly.v1+json`` and
``text/html`` (a ``<div>`` that loads plotly.js from its CDN when a browser shows it).
"""

from __future__ import annotations

from typing import Any

RENDERER = "cellbox"
MODULE = "plotly.io._renderers"  # where plotly's renderer registry is created


def register(renderers_module: Any) -> None:
    """Add the cellbox renderer to plotly's registry and make it the default."""
    from plotly.io import to_html
    from plotly.io._base_renderers import PlotlyRenderer

    class CellboxRenderer(PlotlyRenderer):
        def to_mimebundle(self, fig_dict: Any) -> dict[str, Any]:
            bundle = super().to_mimebundle(fig_dict)
            figure = bundle["application/vnd.plotly.v1+json"]
            bundle["text/html"] = to_html(
                figure, include_plotlyjs="cdn", full_html=False, validate=False
            )
            return bundle

    renderers = renderers_module.renderers
    renderers[RENDERER] = CellboxRenderer()
    renderers.default = RENDERER
