"""matplotlib figures as display events: ``plt.show()`` and the end of a cell emit every
figure created or drawn on since it was last shown, as PNG (and SVG) bundles."""

from __future__ import annotations

import functools
import io
import itertools
import sys
import weakref
from typing import TYPE_CHECKING, Any

from cellbox.workers.python import plotly_display
from cellbox.workers.python.outbox import STDERR

if TYPE_CHECKING:
    from cellbox.workers.python.worker import Worker

_FIGURES: Figures | None = None  # of this process, for ``plt.show()``


class PyplotFinder:
    """Import hook: patches ``matplotlib.pyplot`` (and plotly's renderers) right after they
    are first imported.

    This keeps matplotlib out of startup while making ``plt.show()`` emit figures.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _AFTER_IMPORT:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PyplotLoader(spec.loader)
        return spec


class _PyplotLoader:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _AFTER_IMPORT[module.__name__](module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def patch_pyplot(pyplot: Any) -> None:
    if getattr(pyplot, "_cellbox_patched", False):
        return
    pyplot._cellbox_original_show = pyplot.show
    pyplot.show = _pyplot_show
    pyplot._cellbox_patched = True
    _patch_savefig()


_AFTER_IMPORT = {"matplotlib.pyplot": patch_pyplot, plotly_display.MODULE: plotly_display.register}


def _patch_savefig() -> None:
    """``Figure.savefig`` leaves a figure marked stale; undo that if it was clean before.

    Staleness is how the worker tells that a figure shown earlier was drawn on again.
    """
    figure_mod = sys.modules.get("matplotlib.figure")
    if figure_mod is None:
        return
    figure_cls = figure_mod.Figure
    if getattr(figure_cls.savefig, "_cellbox_wrapped", False):
        return
    original = figure_cls.savefig

    @functools.wraps(original)
    def savefig(self: Any, *args: Any, **kwargs: Any) -> Any:
        was_stale = self.stale
        try:
            return original(self, *args, **kwargs)
        finally:
            if not was_stale:
                self.stale = False

    savefig._cellbox_wrapped = True  # type: ignore[attr-defined]
    figure_cls.savefig = savefig


def _pyplot_show(*args: Any, **kwargs: Any) -> None:
    """``plt.show()``: emit every pending figure now, then close them."""
    if _FIGURES is not None:
        _FIGURES.flush()


class Figures:
    """Which figures were shown, and emitting the ones not shown since they changed."""

    def __init__(self, worker: Worker) -> None:
        global _FIGURES
        self._worker = worker
        self._shown: weakref.WeakSet[Any] = weakref.WeakSet()
        self._emitted: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._emit_seq = itertools.count()
        _FIGURES = self

    def install(self, display_formatter: Any) -> None:
        """Render figures through these formatters; patch pyplot when it is imported."""
        display_formatter.formatters["image/png"].for_type_by_name(
            "matplotlib.figure", "Figure", self._figure_png
        )
        display_formatter.formatters["image/svg+xml"].for_type_by_name(
            "matplotlib.figure", "Figure", self._figure_svg
        )
        if not any(isinstance(finder, PyplotFinder) for finder in sys.meta_path):
            sys.meta_path.insert(0, PyplotFinder())
        if "matplotlib.pyplot" in sys.modules:
            patch_pyplot(sys.modules["matplotlib.pyplot"])

    def new_cell(self) -> None:
        if self._shown:  # a new set only after a figure was shown (most cells show none)
            self._shown = weakref.WeakSet()

    def _figure_png(self, fig: Any) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        self._note_figure(fig)
        return buffer.getvalue()

    def _figure_svg(self, fig: Any) -> str:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight")
        self._note_figure(fig)
        return buffer.getvalue().decode("utf-8")

    def _note_figure(self, fig: Any) -> None:
        _patch_savefig()
        fig.stale = False
        self._shown.add(fig)
        if fig not in self._emitted:
            self._emitted[fig] = next(self._emit_seq)

    def flush(self) -> None:
        """Emit each figure created or drawn on since it was last shown, then close it."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None and not self._emitted:
            return
        try:
            managers: list[Any] = []
            if pyplot is not None:  # (which imported this module)
                managers = sys.modules["matplotlib._pylab_helpers"].Gcf.get_all_fig_managers()
            if not managers and not self._emitted:
                return  # no figure open and none shown before (most cells)
            managers.sort(key=lambda m: m.num)
            open_figs = [manager.canvas.figure for manager in managers]
            open_ids = {id(fig) for fig in open_figs}
            redrawn = sorted(
                (seq, fig)
                for fig, seq in list(self._emitted.items())
                if id(fig) not in open_ids and fig.stale
            )
            for fig in open_figs + [fig for _seq, fig in redrawn]:
                if fig in self._shown and not fig.stale:
                    continue  # already shown by this cell (as its result or display())
                data, _metadata = self._worker.shell.display_formatter.format(fig)
                if data:
                    self._worker.emit_bundle("display", data)
            if pyplot is not None:
                for fig in open_figs:
                    pyplot.close(fig)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self._worker.log.write(f"figure capture failed: {exc!r}")
            text = self._worker.tracebacks.format(type(exc), exc, exc.__traceback__)
            self._worker.outbox.put_text(STDERR, f"Could not capture matplotlib figures:\n{text}")
