"""Pure server parts: output line splitting and its cap, events, and settings parsing."""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import pytest

from cellbox import config
from cellbox.ansi import strip_ansi
from cellbox.events import Fold, OutputLines, bundle_to_item, error_event


def data(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["type"], e["data"]) for e in events]


def test_lines_are_split_per_stream_across_chunks():
    lines = OutputLines(1 << 20)
    assert data(lines.feed("stdout", "a\nb")) == [("stdout", "a")]
    assert data(lines.feed("stderr", "e1\r\ne")) == [("stderr", "e1")]
    assert data(lines.feed("stdout", "c\n\n")) == [("stdout", "bc"), ("stdout", "")]
    assert data(lines.finish()) == [("stderr", "e")]
    assert lines.finish() == []


def test_the_cap_counts_utf8_bytes_and_says_what_was_dropped():
    lines = OutputLines(10)
    assert data(lines.feed("stdout", "ééé\n")) == [("stdout", "ééé")]  # 7 bytes
    assert data(lines.feed("stdout", "abcdef\n")) == []  # 3 bytes of room: "abc" kept
    assert lines.feed("stdout", "more\n") == []
    assert lines.kept == 10 and lines.dropped == 4 + 5
    events = data(lines.finish())
    assert events[0] == ("stdout", "abc")
    assert events[1][0] == "stderr" and "9 more bytes" in events[1][1]


def test_a_multibyte_character_is_never_cut_in_half():
    lines = OutputLines(4)
    lines.feed("stdout", "aé€")  # 1 + 2 + 3 bytes: only "aé" fits
    assert data(lines.finish())[0] == ("stdout", "aé")


def test_ansi_is_stripped_from_lines_items_and_errors():
    colored = "\x1b[31mred\x1b[0m \x1b]0;title\x07x"
    assert strip_ansi(colored) == "red x"
    assert data(OutputLines(100).feed("stdout", colored + "\n")) == [("stdout", "red x")]
    item = bundle_to_item({"text/plain": colored, "image/png": "AAAA", "x/y": 1}, True)
    assert item == {"is_primary": True, "text": "red x", "png": "AAAA", "extra": {"x/y": 1}}
    assert error_event("\x1b[1mE\x1b[0m", "v")["data"] == "E: v"


def test_fold_builds_the_execute_response():
    fold = Fold()
    fold.add([{"type": "stdout", "data": "hi"}, error_event("ValueError", "bad", "tb")])
    fold.add([{"type": "exit", "code": 1, "context_id": "ctx_1", "execution_count": 3}])
    assert fold.response() == {
        "context_id": "ctx_1",
        "items": [],
        "logs": {"stdout": ["hi"], "stderr": []},
        "error": {"name": "ValueError", "value": "bad", "traceback": "tb"},
        "execution_count": 3,
    }


def parse(*argv: str, **environ: str) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(list(argv)), environ)


def test_flags_win_over_variables_which_win_over_defaults():
    settings = parse("--port", "9001", CELLBOX_PORT="9002", CELLBOX_POOL_PYTHON="5")
    assert settings.port == 9001 and settings.pool_python == 5
    assert settings.pool_size("python") == 5 and settings.pool_size("cobol") == 0
    assert parse().max_contexts == config.Settings().max_contexts


def test_idle_connections_outlive_the_clients_pools():
    # a client lets an idle connection go before the server closes it, so it never sends a
    # request on a connection that is being closed (httpx keeps one 5 s, aiohttp 15 s)
    assert config.Settings().keep_alive_s > max(httpx.Limits().keepalive_expiry or 0, 15)


def test_settings_parse_their_types():
    settings = parse(
        "--network", "off", "--state-dir", "/x", CELLBOX_SANDBOX="yes", CELLBOX_IDLE_TIMEOUT_S="2.5"
    )
    assert settings.network == "off" and settings.sandbox is True
    assert parse().network == "public" and parse("--network", "HOST").network == "host"
    assert settings.state_dir == Path("/x") and settings.token_file == Path("/x/api-token")
    assert settings.idle_timeout_s == 2.5


@pytest.mark.parametrize(
    "name, value", [("PORT", "eighty"), ("NETWORK", "maybe"), ("NETWORK", "on")]
)
def test_a_bad_variable_is_a_clear_error(name: str, value: str):
    with pytest.raises(SystemExit, match=f"CELLBOX_{name}"):
        parse(**{f"CELLBOX_{name}": value})
