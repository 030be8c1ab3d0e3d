"""How a worker's exit status and its cgroup's OOM count become a death's cause."""

from __future__ import annotations

import signal

import pytest

from cellbox import deaths


@pytest.mark.parametrize(
    ("code", "offset"), [(-signal.SIGKILL, False), (128 + signal.SIGKILL, True), (None, False)]
)
def test_an_oom_kill_is_told_for_a_sigkill_or_an_unknown_status(code, offset) -> None:
    death = deaths.classify(code, oom=True, heap_oom=False, signal_offset=offset)
    assert death.cause == deaths.OOM
    assert "out of memory" in death.reason


@pytest.mark.parametrize(
    ("code", "offset", "cause", "reason"),
    [
        (3, False, deaths.EXIT, "exited with code 3"),
        (0, True, deaths.EXIT, "exited with code 0"),
        (-signal.SIGSEGV, False, deaths.SIGNAL, "killed by SIGSEGV"),
        (128 + signal.SIGTERM, True, deaths.SIGNAL, "killed by SIGTERM"),
    ],
)
def test_an_oom_kill_of_another_process_does_not_explain_other_ends(
    code, offset, cause, reason
) -> None:
    # the cgroup counted an OOM kill (a child of the worker's), but the worker itself ended
    # otherwise: the OOM killer only ever sends SIGKILL
    death = deaths.classify(code, oom=True, heap_oom=False, signal_offset=offset)
    assert death.cause == cause
    assert reason in death.reason and "out of memory" not in death.reason


def test_without_an_oom_kill_a_sigkill_names_both_possibilities() -> None:
    death = deaths.classify(-signal.SIGKILL, oom=False, heap_oom=False, signal_offset=False)
    assert death.cause == deaths.SIGNAL
    assert death.reason == "was killed by SIGKILL (from outside, or out of memory)"


def test_the_javascript_heap_limit_is_out_of_memory_whatever_the_status() -> None:
    death = deaths.classify(134, oom=False, heap_oom=True, signal_offset=True)
    assert death.cause == deaths.OOM
    assert "JavaScript heap" in death.reason


def test_an_abort_names_its_signal_and_what_sends_it() -> None:
    death = deaths.classify(-signal.SIGABRT, oom=False, heap_oom=False, signal_offset=False)
    assert death.cause == deaths.SIGNAL
    assert death.reason.startswith("was killed by SIGABRT (it aborted: process.abort()")


NODE_ABORT = """warning: disk almost full
----- Native stack trace -----

 1: 0x9b5050  [/usr/bin/node]
 2: 0x7f680ed8f08d

----- JavaScript stack trace -----

1: file:///srv/cellbox/workers/ts/timers.mjs:56:17
2: listOnTimeout (node:internal/timers:635:17)

"""


def test_last_words_leave_out_node_stack_dumps() -> None:
    assert deaths.last_words(NODE_ABORT) == "warning: disk almost full"
    assert deaths.last_words(NODE_ABORT.split("warning: disk almost full\n")[1]) == ""


def test_last_words_are_whole_lines_within_the_limit() -> None:
    text = "first line\n" + "x" * 30 + "\nsecond to last\nlast line\n"
    assert deaths.last_words(text, limit=30) == "second to last\nlast line"
    long = deaths.last_words("start\n" + "y" * 100 + "z", limit=30)
    assert long == "…" + "y" * 28 + "z" and len(long) == 30


def test_a_death_tells_its_last_output_after_what_it_means() -> None:
    quiet = deaths.Death(deaths.EXIT, "exited with code 1")
    assert quiet.told("the process exited: state lost") == "the process exited: state lost."
    assert quiet.with_output() == "exited with code 1"
    loud = deaths.Death(deaths.EXIT, "exited with code 1", "Error: boom")
    assert loud.told("state lost") == "state lost. Its last output:\nError: boom"
    assert loud.with_output() == "exited with code 1; last output:\nError: boom"
