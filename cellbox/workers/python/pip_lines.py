"""``pip install x`` as a line of a longer cell: run as ``%pip install x``.

IPython turns a bare ``pip install x`` into the ``%pip`` magic only when it is the whole
cell (automagic). Such a line is never valid Python, so this input transformer rewrites it
wherever it stands at the start of a line, unless the cell compiles as it is (the line is
inside a string, say).
"""

from __future__ import annotations

import re
import shlex
import sys

_PIP_LINE = re.compile(r"^(pip3?|uv pip) +(\S.*)$", re.MULTILINE)


def transform(lines: list[str]) -> list[str]:
    """An IPython ``input_transformers_post`` entry."""
    cell = "".join(lines)
    if not _PIP_LINE.search(cell):
        return lines
    try:
        compile(cell, "<cell>", "exec")
        return lines
    except SyntaxError:
        pass
    out = []
    for line in lines:
        match = _PIP_LINE.match(line.rstrip("\n"))
        if match is None:
            out.append(line)
        elif match.group(1) == "uv pip":
            out.append(f"get_ipython().system({('uv pip ' + match.group(2))!r})\n")
        else:
            out.append(f"get_ipython().run_line_magic('pip', {match.group(2)!r})\n")
    return out


def pip_magic(line: str) -> None:
    """``%pip``: IPython's, without its advice to restart (an install is importable at once;
    the installer itself says when a module already imported keeps its old version)."""
    from IPython import get_ipython

    get_ipython().system(f"{shlex.quote(sys.executable)} -m pip {line}")
