"""README.md: its compose snippets are valid Compose, its commands are real CLI commands."""

from __future__ import annotations

import re
import shlex
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.deployfiles import ROOT, deploy_environment, interpolate, map_strings
from tests.deploy.test_entry_points import parse_modelkiln

GUIDE = ROOT / "README.md"


class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: ``!override`` and ``!reset`` are merge directives."""


for tag in ("!override", "!reset"):
    ComposeLoader.add_constructor(
        tag,
        lambda loader, node: (
            loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node)
            if isinstance(node, yaml.MappingNode)
            else loader.construct_scalar(node)
        ),
    )


def fenced_blocks(language: str) -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, flags=re.M | re.S)


def modelkiln_commands() -> list[str]:
    """Every ``modelkiln <command> ...`` the guide shows, in code blocks or inline code."""
    text = GUIDE.read_text(encoding="utf-8")
    code = re.findall(r"^ *```\w*\n(.*?)^ *```", text, flags=re.M | re.S)
    code += re.findall(r"`([^`\n]+)`", re.sub(r"^ *```\w*\n.*?^ *```", "", text, flags=re.M | re.S))
    found = []
    for snippet in code:
        for line in snippet.replace("\\\n", " ").splitlines():
            found += re.findall(r"(?<![\w:/.-])(modelkiln [a-z][^#]*)", line)
    return [c.strip() for c in found]


COMPOSE_SNIPPETS = fenced_blocks("yaml")
COMMANDS = sorted(set(modelkiln_commands()))


def test_the_guide_has_snippets_to_check() -> None:
    assert len(COMPOSE_SNIPPETS) >= 3
    assert any(c.startswith("modelkiln worker") for c in COMMANDS)


@pytest.mark.parametrize("snippet", COMPOSE_SNIPPETS, ids=lambda s: s.splitlines()[0][:50])
def test_compose_snippet_is_valid_compose(
    snippet: str, schema_validator: jsonschema.protocols.Validator
) -> None:
    doc: Any = yaml.load(snippet, Loader=ComposeLoader)  # noqa: S506 — a SafeLoader subclass
    doc = map_strings(doc, lambda s: interpolate(s, deploy_environment()))
    errors = [e.message for e in schema_validator.iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize("command", COMMANDS)
def test_command_in_the_guide_parses(command: str) -> None:
    parse_modelkiln(shlex.split(command))
