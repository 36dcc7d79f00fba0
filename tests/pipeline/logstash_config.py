"""Logstash pipelines read by a real implementation of Logstash's config grammar.

``logstash-pipeline-parser`` (PyPI) implements the grammar of Logstash's own treetop
parser (sections, plugins, conditionals, arrays, hashes, comments) and rejects what
Logstash would reject. This module turns its tree into plugins and conditionals the tests
can ask, and checks every plugin and option name against the options the plugins document
(``data/logstash-plugin-options.json``), so a misspelt option fails a test as it would fail
Logstash at start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logstash_pipeline_parser import Pipeline

OPTIONS = json.loads((Path(__file__).parent / "data" / "logstash-plugin-options.json").read_text(encoding="utf-8"))
SECTIONS = {"input": "input", "filter": "filter", "output": "output"}


@dataclass
class Plugin:
    """One plugin block, e.g. http { port => 5000 }."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Conditional:
    """if / else if / else: (condition, plugins) per branch; the else branch's condition is None.
    A condition is the parser's list of operands and operators, e.g. ``["[event][id]"]``."""

    branches: list[tuple[list[Any] | None, list[Plugin | Conditional]]]


def walk(items: list[Plugin | Conditional]) -> list[Plugin]:
    """Every plugin, including those inside conditionals, in order."""
    plugins: list[Plugin] = []
    for item in items:
        if isinstance(item, Conditional):
            for _, branch in item.branches:
                plugins += walk(branch)
        else:
            plugins.append(item)
    return plugins


def parse(text: str) -> dict[str, list[Plugin | Conditional]]:
    """Section name -> its plugins and conditionals in order; the parser's ParseError on a syntax error."""
    sections: dict[str, list[Plugin | Conditional]] = {}
    for section, items in Pipeline(text).parse():
        sections.setdefault(section, []).extend(_items(items))
    return sections


def unknown_options(sections: dict[str, list[Plugin | Conditional]]) -> list[str]:
    """Every plugin this project has no documented options for, and every option its plugin does not document."""
    problems = []
    for section, items in sections.items():
        known = OPTIONS[section]
        for plugin in walk(items):
            if plugin.name not in known:
                problems.append(f"{section} plugin {plugin.name!r}: not in data/logstash-plugin-options.json")
                continue
            allowed = set(known[plugin.name]) | set(OPTIONS["common"][section])
            problems += [f"{section} {plugin.name}: unknown option {name!r}" for name in plugin.settings
                         if name not in allowed]
    return problems


def _items(items: list[Any]) -> list[Plugin | Conditional]:
    parsed: list[Plugin | Conditional] = []
    for name, body in items:
        if name == "if":
            condition, (branch,) = body
            parsed.append(Conditional([(condition, _items(branch))]))
        elif name == "else if":
            condition, (branch,) = body
            parsed[-1].branches.append((condition, _items(branch)))
        elif name == "else":
            parsed[-1].branches.append((None, _items(body)))
        else:
            parsed.append(Plugin(name, {key: _value(value) for key, (value,) in body}))
    return parsed


def _value(value: Any) -> Any:
    """A hash is a list of [key, [value]] pairs in the parser's tree; arrays and scalars stay as they are."""
    if isinstance(value, list) and value and all(
            isinstance(item, list) and len(item) == 2 and isinstance(item[1], list) and len(item[1]) == 1
            for item in value):
        return {key: _value(inner) for key, (inner,) in value}
    return value
