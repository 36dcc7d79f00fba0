"""A reader for the subset of the Logstash config language our pipeline uses.

Sections (input/filter/output) hold plugins and conditionals; a plugin holds
`key => value` settings; values are strings, numbers, barewords, arrays and hashes.
A condition is kept as its tokens joined by spaces (`[event][id]` -> "[ event ] [ id ]"),
enough to tell which branch is which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<arrow>=>)
  | (?P<operator>==|!=|=~|!~|<=|>=|<|>)
  | (?P<punct>[{}\[\],])
  | (?P<word>[^\s{}\[\],"'#=]+)
    """,
    re.VERBOSE,
)


@dataclass
class Plugin:
    """One plugin block, e.g. tcp { port => 5000 }."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Conditional:
    """if / else if / else: (condition, plugins) per branch; the else branch's condition is None."""

    branches: list[tuple[str | None, list[Plugin | Conditional]]]


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


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"unexpected character at offset {position}: {text[position:position + 20]!r}")
        position = match.end()
        if match.lastgroup != "space":
            tokens.append(match.group())
    return tokens


class _Reader:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"expected {expected!r}, found {token!r}")
        self.i += 1
        return token

    def value(self) -> Any:
        token = self.take()
        if token == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.take(",")
            self.take("]")
            return items
        if token == "{":
            mapping = {}
            while self.peek() != "}":
                key = self.value()
                self.take("=>")
                mapping[key] = self.value()
            self.take("}")
            return mapping
        if token[0] in "\"'":
            return token[1:-1]
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        return token

    def block(self) -> list[Plugin | Conditional]:
        """Plugins and conditionals between braces."""
        self.take("{")
        items: list[Plugin | Conditional] = []
        while self.peek() != "}":
            items.append(self.conditional() if self.peek() == "if" else self.plugin())
        self.take("}")
        return items

    def condition(self) -> str:
        tokens = []
        while self.peek() != "{":
            tokens.append(self.take())
        return " ".join(tokens)

    def conditional(self) -> Conditional:
        self.take("if")
        branches: list[tuple[str | None, list[Plugin | Conditional]]] = [(self.condition(), self.block())]
        while self.peek() == "else":
            self.take("else")
            if self.peek() == "if":
                self.take("if")
                branches.append((self.condition(), self.block()))
            else:
                branches.append((None, self.block()))
                break
        return Conditional(branches)

    def plugin(self) -> Plugin:
        name = self.take()
        self.take("{")
        plugin = Plugin(name)
        while self.peek() != "}":
            key = self.value()
            self.take("=>")
            plugin.settings[key] = self.value()
        self.take("}")
        return plugin


def parse(text: str) -> dict[str, list[Plugin | Conditional]]:
    """Section name -> its plugins and conditionals in order, for a pipeline config text."""
    reader = _Reader(_tokens(text))
    sections: dict[str, list[Plugin | Conditional]] = {}
    while reader.peek() is not None:
        section = reader.take()
        if section not in ("input", "filter", "output"):
            raise ValueError(f"unknown section {section!r}")
        sections.setdefault(section, []).extend(reader.block())
    return sections
