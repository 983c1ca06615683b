"""`gpt-cockpit --help` and each command's: every option explained, examples that parse as typed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cockpit.__main__ import _COMMANDS, EXAMPLES, MAIN_EXAMPLES, build_parser


def commands() -> dict:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return {"": parser, **sub.choices}


@pytest.mark.parametrize("name", ["", *_COMMANDS])
def test_every_option_has_help_and_the_examples_parse(name):
    parser = commands()[name]
    for action in parser._actions:
        if action.dest != "command":
            assert action.help, f"gpt-cockpit {name} {action.option_strings or action.dest}"
    text = parser.format_help()
    lines = MAIN_EXAMPLES if not name else "\n".join(EXAMPLES[name])
    examples = re.findall(r"^\s*(gpt-cockpit\b[^\n]*?)(?:\s{2,}\S.*)?$", lines, re.M)
    assert examples and all(example in text for example in examples)
    if name:
        assert parser.description and parser.description.endswith(".")
    for example in examples:
        args = build_parser().parse_args(shlex.split(example)[1:])  # argparse exits if not
        assert args.command == (name or args.command)


def test_readme_lists_every_command():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `gpt-cockpit (\w+)", readme, re.M))
    assert listed == set(_COMMANDS)
