"""`thriftgate <command> --help` shows each command's docstring; Typer's rich help keeps the
line breaks of every paragraph after the first, so a paragraph wrapped in the source came out
cut in mid-sentence ("... alerts of periods ended" / "before last month, ...")."""

from __future__ import annotations

import inspect
from typing import Any

import typer
from typer.core import TyperGroup

from gateway import cli


def commands(group: TyperGroup, path: str = "thriftgate") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            out += commands(command, f"{path} {name}")
        else:
            out.append((f"{path} {name}", command))
    return out


def test_no_help_paragraph_is_cut_by_a_source_line_break() -> None:
    group = typer.main.get_command(cli.app)
    assert isinstance(group, TyperGroup)
    found = commands(group)
    assert any(name == "thriftgate db prune" for name, _ in found)
    cut = []
    for name, command in found:
        doc = inspect.getdoc(command.callback) or ""
        cut += [name for paragraph in doc.split("\n\n")[1:] if "\n" in paragraph.strip()]
    assert cut == []
