"""Python contexts behave as ipykernel does where a user coming from Jupyter relies on it."""

from __future__ import annotations

from tests.conftest import Client


def test_forked_children_print_into_the_cell(client: Client):
    # A child made by os.fork() or multiprocessing (fork start method) prints with print()
    # as it does under Jupyter; a last line without newline survives os._exit too.
    code = (
        "import os, multiprocessing as mp, logging\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print('child line'); print('child tail', end=''); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print()\n"
        "p = mp.get_context('fork').Process(target=print, args=('from a process',))\n"
        "p.start(); p.join()\n"
        "def warn(): logging.getLogger('kid').warning('child log')\n"
        "p = mp.get_context('fork').Process(target=warn); p.start(); p.join()\n"
        "with mp.get_context('fork').Pool(1) as pool: pool.map(print, ['from a pool'])\n"
        "print('parent done')"
    )
    body = client.run(code)
    assert body["error"] is None, body["error"]
    assert body["logs"]["stdout"] == [
        "child line",
        "child tail",
        "from a process",
        "from a pool",
        "parent done",
    ]
    assert body["logs"]["stderr"] == ["child log"]
