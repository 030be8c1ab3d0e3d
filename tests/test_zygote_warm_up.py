"""The zygote's warm-up (cellbox/workers/zygote/warm_up.py) shares pandas' first-use memory
but changes nothing a context can see, and leaves the zygote safe to fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cellbox.runtimes.python import PYTHON
from tests.conftest import Client

# What pandas and pyarrow do with strings, printed as one JSON line.
_PANDAS_PROBE = """\
import json, pandas, pyarrow
frame = pandas.DataFrame({"key": ["a", "b", "a"], "value": [1.0, 2.0, 3.0]})
print(json.dumps([
    str(frame.key.dtype), getattr(frame.key.dtype, "storage", None),
    str(frame.columns.dtype), pandas.get_option("mode.string_storage"),
    frame.groupby("key").value.sum().to_dict(),
    pyarrow.Table.from_pandas(frame).to_pandas().equals(frame),
]))
"""


def test_pandas_in_a_context_behaves_as_in_a_fresh_interpreter(client: Client, ctx: str):
    first = client.run(_PANDAS_PROBE, context_id=ctx)
    assert first["error"] is None and first["execution_count"] == 1, first
    fresh = client.run(
        f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {_PANDAS_PROBE!r}])",
        context_id=ctx,
    )
    assert fresh["error"] is None, fresh
    in_context = json.loads(first["logs"]["stdout"][0])
    assert in_context == json.loads(fresh["logs"]["stdout"][0])
    assert in_context[-2:] == [{"a": 4.0, "b": 2.0}, True]


def test_a_first_cell_sees_nothing_of_the_warm_up(client: Client):
    body = client.run("print(sorted(n for n in dir() if not n.startswith('__')), len(In), repr(_))")
    assert body["execution_count"] == 1
    assert body["logs"]["stdout"] == [
        "['In', 'Out', '_', '_dh', '_i', '_i1', '_ih', '_ii', '_iii', '_oh', 'exit', "
        "'get_ipython', 'open', 'quit'] 2 ''"
    ]


def test_the_warmed_up_zygote_is_single_threaded_and_has_used_pandas():
    script = (
        "import sys\n"
        "from cellbox.procfs import thread_count\n"
        "from cellbox.runtimes.python import PRELOAD\n"
        "from cellbox.workers.python import worker\n"
        "from cellbox.workers.zygote.warm_up import warm_up\n"
        "worker.prepare()\n"
        "worker.preload(PRELOAD)\n"
        "before = set(sys.modules)\n"
        "warm_up()\n"
        "print(thread_count(), sorted(set(sys.modules) - before))\n"
    )
    env = {**os.environ, **PYTHON.zygote_env()}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "warming up" not in done.stderr
    threads, _, imported = done.stdout.strip().partition(" ")
    assert threads == "1"
    assert "pyarrow.pandas_compat" in imported
