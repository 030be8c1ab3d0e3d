"""The IPython shell of a worker: results, displays, errors and ``!cmd`` go to the worker."""

from __future__ import annotations

import ast
import builtins
import inspect
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from cellbox.workers.python import pip_lines
from cellbox.workers.python.plain_values import PlainValues

if TYPE_CHECKING:
    from cellbox.workers.python.worker import Worker

# What makes a cell more than plain Python to IPython's input transformers.
_IPYTHON_SYNTAX = re.compile(r"[%!?]|^[ \t]*(?:[,;/]|>>>|\.\.\.|In \[)", re.MULTILINE)
# The word IPython's prefilter looks up (its ``ifun``), when a line starts with one.
_FIRST_WORD = re.compile(r"[\w.*]+")
# The compile flag for top-level ``await`` (0 where Python has none).
_TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
_CO_COROUTINE = inspect.CO_COROUTINE
# Traits of the shell that the per-cell code reads from ``_trait_values`` (and those of its
# history and magics managers listed in create_shell), the dict behind
# every trait read, without the descriptor call (a trait read costs as much as twenty dict
# lookups). Exact: create_shell reads each once, and a trait read once keeps its value
# there; assignments (``%autocall``, ``%config``, ``%automagic``) land there too.
_TRAITS_READ_DIRECTLY = (
    "autocall",
    "automagic",
    "input_transformers_post",
    "ast_transformers",
    "autoawait",
)


def make_shell_class(worker: Worker) -> Any:
    """An InteractiveShell whose outputs, errors and shell escapes go to ``worker``."""
    import contextlib
    import subprocess

    from IPython.core.autocall import IPyAutocall
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.history import HistoryManager
    from IPython.core.interactiveshell import InteractiveShell, softspace
    from IPython.core.macro import Macro
    from traitlets import Type

    class ResultHook(DisplayHook):
        plain: PlainValues  # set by create_shell, once the formatters are configured
        exec_result = None  # a plain attribute (see Shell's)
        # Plain references set by ``attach``, read on every result (``shell`` and the
        # history manager's are traits: each read costs a lookup and a validation).
        owner: Any  # the shell
        inputs: list[str]  # ``In``
        output_hist: dict[Any, Any]  # ``Out``, ``_oh``
        output_reprs: dict[int, str]  # the text of each value still in Out, for ``%history -o``

        def attach(self, shell: Any) -> None:
            history = shell.history_manager
            self.owner = shell
            self.inputs = history.input_hist_parsed
            self.output_hist = history.output_hist
            self.output_reprs = history.output_hist_reprs

        def __call__(self, result: Any = None) -> None:
            """IPython's steps, in its order; those that are this class's own no-ops or
            flag settings (the prompt, start and finish) and IPython's ``fill_exec_result``
            done inline."""
            self.check_for_underscore()
            if result is None or self.quiet():
                return
            self._is_active = True
            format_dict, md_dict = self.compute_format_data(result)
            self.update_user_ns(result)
            if self.exec_result is not None:
                self.exec_result.result = result
            if format_dict:
                self.write_format_data(format_dict, md_dict)
                self.log_output(format_dict)
            self._is_active = False

        def compute_format_data(self, result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            text = self.plain.text(result)
            if text is not None:
                bundle = {"text/plain": text}
                if "\x1b" not in text:  # (a user's float format could have one)
                    self.plain_bundle = bundle
                return bundle, {}
            return super().compute_format_data(result)

        # The last bundle made of a plain value's text with no escape character: as the
        # protocol wants it already (one str key, its str value), nothing to clean.
        plain_bundle: dict[str, Any] | None = None

        def quiet(self) -> bool:
            # IPython tokenizes the whole cell to find a trailing ';': not without a ';'.
            history = self.inputs
            if history and ";" not in history[-1]:
                return False
            return super().quiet()

        def update_user_ns(self, result: Any) -> None:
            """``_``, ``__``, ``___``, and ``_N`` and ``Out[N]`` (``_oh``) for cell N, as
            IPython's: ``Out`` itself is not kept in ``Out``, and when ``cache_size``
            results are kept the oldest fifth goes first. In fewer steps than IPython's
            (no trait reads, no ``push``)."""
            out = self.output_hist
            if result is out:
                return
            if len(out) >= self.cache_size:
                self.cull_cache()
            shell = self.owner
            count = shell.execution_count - 1  # IPython's prompt_count: this cell's number
            out[count] = result
            names = shell._user_ns  # what the user_ns property answers, without the call
            # As IPython: ``_``, ``__`` and ``___`` stay the code's once it assigned one of
            # them, or while ``_`` is a builtin (gettext's).
            ours = (
                names.get("_", self._) is self._
                and names.get("__", self.__) is self.__
                and names.get("___", self.___) is self.___
                and "_" not in builtins.__dict__
            )
            self.___, self.__, self._ = self.__, self._, result
            if ours:
                names["___"], names["__"], names["_"] = self.___, self.__, result
            names[f"_{count}"] = result

        def cull_cache(self) -> None:
            """IPython's rule, without its warning on stderr: the oldest fifth (at least
            two) of ``Out`` and their ``_N`` go."""
            out = self.output_hist
            count = max(int(len(out) * self.cull_fraction), 2)
            names = self.owner.user_ns
            try:
                numbers = sorted(out)[:count]
            except TypeError:  # a key the code put there that is no number
                numbers = sorted(key for key in out if isinstance(key, int))[:count]
            reprs = self.output_reprs
            for number in numbers:
                names.pop(f"_{number}", None)
                del out[number]
                reprs.pop(number, None)

        def write_output_prompt(self) -> None:
            pass

        def write_format_data(self, format_dict: Any, md_dict: Any = None) -> None:
            worker.emit_bundle("result", format_dict, clean=format_dict is not self.plain_bundle)

        def log_output(self, format_dict: Any) -> None:
            # The text ``%history -o`` prints, kept as long as the cell's value is in Out
            # (IPython's keeps every bundle and text for the life of the context).
            count = self.owner.execution_count - 1
            text = format_dict.get("text/plain")
            if text is not None and count in self.output_hist:
                self.output_reprs[count] = text

        def flush(self) -> None:
            """``%reset -f``, ``%reset -f out``: IPython's, and the texts go too."""
            super().flush()
            self.output_reprs.clear()

        def finish_displayhook(self) -> None:
            self._is_active = False

    class InputHistory(HistoryManager):
        """``In``, ``_ih``, ``_i``, ``_ii``, ``_iii`` and ``_iN`` as in IPython, and nothing
        kept for a history database: this one is off, and IPython's cache for it would
        grow by one entry per cell for the life of the context."""

        def store_inputs(self, line_num: int, source: str, source_raw: str | None = None) -> None:
            raw = (source if source_raw is None else source_raw).rstrip("\n")
            if self._exit_re.match(raw.strip()):
                return
            values = self._trait_values  # see _TRAITS_READ_DIRECTLY
            values["input_hist_parsed"].append(source.rstrip("\n"))
            values["input_hist_raw"].append(raw)
            _, older, old, last = self._recent
            self._recent = (older, old, last, raw)
            names = {"_iii": older, "_ii": old, "_i": last, f"_i{line_num}": raw}
            shell = values["shell"]
            shell._user_ns.update(names)  # (the user_ns property's own attribute)
            shell.user_ns_hidden.update(names)

        def store_output(self, line_num: int) -> None:
            """Nothing: outputs go to the history database only, and this one is off (a
            trait read per cell spared)."""

        _recent = ("", "", "", "")  # _iii, _ii, _i and this cell's input, as IPython keeps them

        # ``%history -l``/``-g`` and ``%rerun`` read these; IPython's read the database.
        def get_tail(
            self,
            n: int | None = 10,
            raw: bool = True,
            output: bool = False,
            include_latest: bool = False,
        ) -> list[tuple[int, int, Any]]:
            """The session's last ``n`` inputs, before the running one unless
            ``include_latest``."""
            inputs = self.input_hist_raw if raw else self.input_hist_parsed
            stop = len(inputs) if include_latest else len(inputs) - 1
            start = max(1, stop - (10 if n is None else n))
            return [self._entry(inputs, line, output) for line in range(start, stop)]

        def search(
            self,
            pattern: str = "*",
            raw: bool = True,
            search_raw: bool = True,
            output: bool = False,
            n: int | None = None,
            unique: bool = False,
        ) -> list[tuple[int, int, Any]]:
            """The session's inputs that match the glob ``pattern``, oldest first."""
            import fnmatch

            searched = self.input_hist_raw if search_raw else self.input_hist_parsed
            lines = [
                line
                for line in range(1, len(searched))
                if fnmatch.fnmatchcase(searched[line], pattern)
            ]
            if unique:  # the latest of equal inputs
                latest = {searched[line]: line for line in lines}
                lines = sorted(latest.values())
            if n is not None:
                lines = lines[-n:] if n > 0 else []
            inputs = self.input_hist_raw if raw else self.input_hist_parsed
            return [self._entry(inputs, line, output) for line in lines]

        def _entry(self, inputs: list[str], line: int, output: bool) -> tuple[int, int, Any]:
            if output:
                return (0, line, (inputs[line], self.output_hist_reprs.get(line)))
            return (0, line, inputs[line])

    class Publisher(DisplayPublisher):
        def publish(
            self,
            data: Any,
            metadata: Any = None,
            source: Any = None,
            *,
            transient: Any = None,
            update: bool = False,
            **kwargs: Any,
        ) -> None:
            if not isinstance(data, dict):
                raise TypeError(f"data must be a dict, got: {data!r}")
            worker.emit_bundle("display", data)

        def clear_output(self, wait: bool = False) -> None:
            pass

    class Shell(InteractiveShell):
        displayhook_class = Type(ResultHook)
        display_pub_class = Type(Publisher)
        # Plain attributes instead of IPython's traits: run_cell sets each of them once or
        # twice per cell, and a trait's validation and change notification (which nothing
        # here observes) cost more than half of what running ``1+1`` costs.
        execution_count = 1
        last_execution_succeeded = True
        last_execution_result = None
        # Set once when the shell is made and read on every cell (six trait reads a cell).
        history_manager: Any = None
        builtin_trap: Any = None
        display_trap: Any = None
        magics_manager: Any = None

        def run_cell(
            self,
            raw_cell: str,
            store_history: bool = False,
            silent: bool = False,
            shell_futures: bool = True,
            cell_id: Any = None,
            cell_meta: Any = None,
        ) -> Any:
            """IPython's, without its output tees (``_tee`` keeps nothing here), and the
            ``post_execute`` and ``post_run_cell`` callbacks called only when there are
            some (the same calls, in the same order, when there are)."""
            result = None
            try:
                result = self._run_cell(
                    raw_cell, store_history, silent, shell_futures, cell_id, cell_meta
                )
            finally:
                events = self.events
                if events.callbacks["post_execute"]:
                    events.trigger("post_execute")
                if not silent and events.callbacks["post_run_cell"]:
                    events.trigger("post_run_cell", result)
            return result

        def number_next_cell(self, count: int) -> None:
            """The next cell is cell ``count`` (the server's ``execution_count``), for its
            ``_N``, ``Out[N]``, ``_iN`` and ``In[N]``, whatever came between: an empty cell
            or one interrupted before it started takes a number but stores nothing."""
            self.execution_count = count
            history = self.history_manager
            if len(history.input_hist_parsed) < count:
                missing = count - len(history.input_hist_parsed)
                history.input_hist_parsed.extend([""] * missing)
                history.input_hist_raw.extend([""] * missing)

        def transform_cell(self, raw_cell: str) -> str:
            # A cell with no IPython syntax at all (no magics, shell escapes, help, prompts,
            # autocall escapes, leading indentation) is plain Python: skip the static
            # transforms, which would return it unchanged.
            if raw_cell[:1].isspace() or _IPYTHON_SYNTAX.search(raw_cell):
                return super().transform_cell(raw_cell)
            cell = raw_cell if raw_cell.endswith("\n") else raw_cell + "\n"
            if cell.count("\n") == 1 and self._prefilter_may_change(cell):
                with self.builtin_trap:
                    cell = self.prefilter_manager.prefilter_lines(cell) + "\n"
            lines = cell.splitlines(keepends=True)
            for transform in self._trait_values["input_transformers_post"]:
                lines = transform(lines)
            return "".join(lines)

        def _prefilter_may_change(self, line: str) -> bool:
            """Whether IPython's prefilter could rewrite this plain one-line cell: only a
            first word that is a line magic (automagic, e.g. ``pip install x``), a macro or
            autocall object in the namespace, or autocall being on make it do anything."""
            values = self._trait_values  # see _TRAITS_READ_DIRECTLY
            if values["autocall"]:
                return True
            word = _FIRST_WORD.match(line)
            if word is None:
                return False
            name = word.group()
            if values["automagic"]:
                if name in self.magics_manager._trait_values["magics"]["line"]:
                    return True
            return isinstance(self._user_ns.get(name), (Macro, IPyAutocall))

        async def run_ast_nodes(
            self,
            nodelist: list[Any],
            cell_name: str,
            interactivity: str = "last_expr",
            compiler: Any = compile,
            result: Any = None,
        ) -> bool | None:
            """IPython's, in fewer steps for what every cell asks (``last_expr``, the
            shell's compiler): each top-level statement compiled and run in turn, the last
            one in ``single`` mode (its value shown) if it is an expression. The same
            compiler calls, with top-level ``await`` allowed as ``autoawait`` says (the
            flag on for each compile only, as IPython's ``extra_flags``), and the same
            answer: True if the code raised, after its traceback was shown."""
            if interactivity != "last_expr" or compiler is not self.compile or not nodelist:
                return await super().run_ast_nodes(
                    nodelist, cell_name, interactivity, compiler, result
                )
            values = self._trait_values  # see _TRAITS_READ_DIRECTLY
            last = len(nodelist) - 1
            shown = isinstance(nodelist[last], ast.Expr)
            try:
                for index, node in enumerate(nodelist):
                    if shown and index == last:
                        tree, mode = ast.Interactive([node]), "single"
                    else:
                        tree, mode = ast.Module([node], []), "exec"
                    # Read for each statement: the one before may have been ``%autoawait``.
                    extra = _TOP_LEVEL_AWAIT if values["autoawait"] else 0
                    turned_on = extra & ~compiler.flags
                    compiler.flags |= turned_on
                    try:
                        code = compiler(tree, cell_name, mode)
                    finally:
                        compiler.flags &= ~turned_on
                    coroutine = code.co_flags & _CO_COROUTINE == _CO_COROUTINE
                    if await self.run_code(code, result, async_=coroutine):
                        return True
                if softspace(sys.stdout, 0):
                    print()
            except BaseException:  # as IPython: anything (a compile error) ends the cell
                if result:
                    result.error_before_exec = sys.exc_info()[1]
                self.showtraceback()
                return True
            return False

        def transform_ast(self, node: Any) -> Any:
            # IPython's reads the trait twice, for a list that is mostly empty.
            if not self._trait_values["ast_transformers"]:
                return node
            return super().transform_ast(node)

        def should_run_async(
            self,
            raw_cell: str,
            *,
            transformed_cell: Any = None,
            preprocessing_exc_tuple: Any = None,
        ) -> bool:
            # Top-level await needs the word: most cells skip IPython's trial compile.
            cell = transformed_cell if isinstance(transformed_cell, str) else raw_cell
            if "await" not in cell and "async" not in cell:
                return False
            return super().should_run_async(
                raw_cell,
                transformed_cell=transformed_cell,
                preprocessing_exc_tuple=preprocessing_exc_tuple,
            )

        def showtraceback(
            self,
            exc_tuple: Any = None,
            filename: str | None = None,
            tb_offset: int | None = None,
            exception_only: bool = False,
            running_compiled_code: bool = False,
        ) -> None:
            try:
                etype, value, tb = self._get_exc_info(exc_tuple)
            except ValueError:
                return
            if filename and isinstance(value, SyntaxError):
                value.filename = filename
            worker.report_exception(etype, value, tb)

        def showsyntaxerror(
            self, filename: str | None = None, running_compiled_code: bool = False
        ) -> None:
            self.showtraceback(filename=filename)

        def showindentationerror(self) -> None:
            self.showtraceback()

        def _format_exception_for_storage(
            self, exception: Any, filename: Any = None, running_compiled_code: bool = False
        ) -> dict[str, Any]:
            # IPython 9 renders every failure again (slowly, with stack_data) for its
            # history; the worker keeps no such history.
            return {"ename": type(exception).__name__, "evalue": "", "traceback": []}

        def _tee(self, channel: str) -> Any:
            return contextlib.nullcontext()  # IPython 9 would keep all output in memory

        def system(self, cmd: str) -> None:
            """``!cmd``: run in a shell on fds 1/2; an interrupt stops it and propagates."""
            cmd = self.var_expand(cmd, depth=1)
            executable = os.environ.get("SHELL") or None
            code = subprocess.call(cmd, shell=True, executable=executable)
            if code > 128:
                code = -(code - 128)
            self.user_ns["_exit_code"] = code
            if self.system_raise_on_error and code != 0:
                raise subprocess.CalledProcessError(code, cmd)

        system_raw = system
        system_piped = system

        def init_history(self) -> None:
            self.history_manager = InputHistory(shell=self, parent=self)
            self.configurables.append(self.history_manager)

        def init_completer(self) -> None:
            pass  # tab completion is unused here; built on first access to ``Completer``

        @property
        def Completer(self) -> Any:  # IPython's attribute name
            completer = self.__dict__.get("_cellbox_completer")
            if completer is None:
                InteractiveShell.init_completer(self)
                completer = self.__dict__["_cellbox_completer"]
            return completer

        @Completer.setter
        def Completer(self, value: Any) -> None:
            self.__dict__["_cellbox_completer"] = value

        @property
        def db(self) -> Any:
            """``%store``, ``%bookmark``: the database IPython keeps in the profile
            directory, here in ``.ipython/profile_default/db`` of the context's $HOME, its
            own directory, so that it outlives a restart as Jupyter's outlives the kernel
            (IPYTHONDIR is in the context's private /tmp); made on first use."""
            if self._db is None:
                from IPython.external.pickleshare import PickleShareDB

                home = os.path.expanduser("~")
                self._db = PickleShareDB(os.path.join(home, ".ipython", "profile_default", "db"))
            return self._db

        @db.setter
        def db(self, value: Any) -> None:
            self._db = value

        def set_next_input(self, s: str, replace: bool = False) -> None:
            """``%load``, ``%recall``: Jupyter puts the text in the next cell for the user
            to run; here it is printed, for the client to send."""
            sys.stdout.write(s if s.endswith("\n") else s + "\n")

        def ask_exit(self) -> None:
            raise SystemExit()

        def enable_gui(self, gui: Any = None) -> None:
            pass

        def enable_matplotlib(self, gui: Any = None) -> tuple[Any, str]:
            import matplotlib.pyplot  # noqa: F401  (patched by the import hook)

            return gui, "agg"

    return Shell


def run_cell_path_once(shell: Any) -> None:
    """Take every cell's path once without a trace: a silent cell (no history, no ``_``, no
    output) and a value's text (the result hook's view of the formatters is made then)."""
    shell.run_cell("1", store_history=False, silent=True)
    shell.displayhook.compute_format_data(1)


def interruptible_system(command: str) -> int:
    """``os.system`` that an interrupt can stop (libc's ignores SIGINT while waiting)."""
    import subprocess

    with subprocess.Popen(command, shell=True) as process:
        try:
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
    return -code if code < 0 else code << 8


def create_shell(worker: Worker) -> Any:
    """The one shell of this process: no history database, no colours, every display
    format on, IPython's output cache (``Out``, ``_N``) of 1000 results."""
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    shell = make_shell_class(worker).instance(config=config)
    for owner, names in (
        (shell, _TRAITS_READ_DIRECTLY),
        (shell.magics_manager, ("magics",)),
        (shell.history_manager, ("shell", "input_hist_parsed", "input_hist_raw")),
    ):
        for name in names:
            getattr(owner, name)  # a trait's value is in _trait_values once read, for good
    shell.input_transformers_post.append(pip_lines.transform)
    shell.register_magic_function(pip_lines.pip_magic, "line", "pip")
    shell.extension_manager.load_extension("storemagic")  # ``%store``, loaded by ipykernel
    display = shell.display_formatter
    for formatter in display.formatters.values():
        formatter.enabled = True
    display.active_types = list(display.formatters)
    shell.displayhook.plain = PlainValues(display)
    shell.displayhook.attach(shell)
    # Entered once for good: the worker runs nothing but cells, and every run_cell would
    # otherwise add and remove ``get_ipython``/``exit``/``quit`` and swap sys.displayhook.
    shell.builtin_trap.__enter__()
    shell.display_trap.__enter__()
    return shell
