"""The README's configuration table and `cellbox serve --help` say what config.py does."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from cellbox import config

README = Path(__file__).resolve().parents[2] / "README.md"
HEADER = "| flag | variable | default | meaning |"


def table() -> list[list[str]]:
    lines = README.read_text().splitlines()
    start = lines.index(HEADER) + 2  # past the header and its |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_every_setting_has_one_row_with_its_flag_and_variable():
    rows = {row[1].strip("`"): row for row in table()}
    fields = {config.env_name(f.name): f for f in dataclasses.fields(config.Settings)}
    assert set(rows) == set(fields) | {"CELLBOX_API_KEY"}  # the token: a variable only
    assert rows["CELLBOX_API_KEY"][0] == "—"
    for variable, f in fields.items():
        assert rows[variable][0] == f"`--{f.name.replace('_', '-')}`"


def test_literal_defaults_in_the_table_are_the_real_ones():
    rows = {row[1].strip("`"): row for row in table()}
    checked = 0
    for f in dataclasses.fields(config.Settings):
        literal = re.fullmatch(r"`([^`]*)`", rows[config.env_name(f.name)][2])
        if literal is None:  # described in words (the host name, the system's resolver, …)
            continue
        checked += 1
        shown = config._shown(f.default)
        if isinstance(f.default, float):
            assert float(literal.group(1)) == f.default, f.name
        else:
            assert literal.group(1) == shown, f.name
    assert checked >= 20


def test_help_shows_defaults_as_they_are_given():
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "CELLBOX_SANDBOX, default on)" in text
    assert "CELLBOX_PEERS, default none)" in text
    assert "CELLBOX_PORT, default 8000)" in text
