"""Formula text -> an AST of named nodes.

``parse_r1c1(key)`` parses a canonical (R1C1) formula text, once per key (cached);
``parse(text, row, col)`` parses an A1 formula that sits at 0-based (row, col). Sheet names
in the nodes are unquoted; function names are upper-case without the ``_xlfn.``/``_xlws.``
prefix. Nodes are NamedTuples (as fast to read as tuples):

    Num(value) Str(value) Bool(value) Err(code) Missing()
    Ref(sheet, r0, r0_abs, c0, c0_abs, r1, r1_abs, c1, c1_abs)   a cell (both ends equal) or a range
    Name(sheet, name)   a defined name (sheet: 'Sheet1!name', None without one), resolved by ``names``
    Neg(x) Pct(x) Bin(op, a, b) Call(name, args)

A relative row or column is the offset from the formula's cell; an absolute one, the 0-based index.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from ..a1 import MAX_NESTING
from ..errors import WorkbookError
from .r1c1 import to_r1c1


class Num(NamedTuple):
    value: float


class Str(NamedTuple):
    value: str


class Bool(NamedTuple):
    value: bool


class Err(NamedTuple):
    code: str  # '#N/A'


class Missing(NamedTuple):
    """An argument left out: ``IF(A1,,2)``."""


class Ref(NamedTuple):
    """A cell or a range; a cell has both ends equal. sheet is None on the formula's own sheet."""

    sheet: str | None
    r0: int
    r0_abs: bool
    c0: int
    c0_abs: bool
    r1: int
    r1_abs: bool
    c1: int
    c1_abs: bool


class Name(NamedTuple):
    """A defined name, as written: ``embed.h`` (sheet None) or ``Embed!scale``."""

    sheet: str | None
    name: str


class Neg(NamedTuple):
    x: Node


class Pct(NamedTuple):
    x: Node


class Bin(NamedTuple):
    op: str
    a: Node
    b: Node


class Call(NamedTuple):
    name: str
    args: tuple[Node, ...]


Node = Num | Str | Bool | Err | Missing | Ref | Name | Neg | Pct | Bin | Call


def operands(node: Node) -> tuple[Node, ...]:
    """The nodes an operator or a call applies to, left to right; a leaf has none."""
    t = type(node)
    if t is Bin:
        return (node.a, node.b)
    if t is Call:
        return node.args
    if t is Neg or t is Pct:
        return (node.x,)
    return ()


def walk(node: Node):
    """The node and every node below it, parents first, left to right (without recursion: a
    formula of 8,192 characters can be a chain of 4,096 operators)."""
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(operands(node)))


def substitute(node: Node, leaf) -> Node:
    """The tree with each leaf replaced by ``leaf(node)`` (the same node where it returns it), without
    recursion; an unchanged subtree is the same object."""
    todo: list = [(node, False)]
    done: list = []
    while todo:
        n, ready = todo.pop()
        kids = operands(n)
        if not kids:
            done.append(leaf(n))
        elif not ready:
            todo.append((n, True))
            todo.extend((k, False) for k in reversed(kids))
        else:
            new = done[len(done) - len(kids) :]
            del done[len(done) - len(kids) :]
            if all(a is b for a, b in zip(new, kids)):
                done.append(n)
            elif type(n) is Bin:
                done.append(Bin(n.op, new[0], new[1]))
            elif type(n) is Call:
                done.append(Call(n.name, tuple(new)))
            else:
                done.append(type(n)(new[0]))
    return done[0]


_TOKEN_RE = re.compile(
    r"""\s*(?:
    (?P<str>"(?:[^"]|"")*")
  | (?P<ref>(?P<sheet>'(?:[^']|'')+'!|[A-Za-z_\\][\w.]*!)?
        R(?P<r0>\[-?\d+\]|\d+)C(?P<c0>\[-?\d+\]|\d+)
        (?::R(?P<r1>\[-?\d+\]|\d+)C(?P<c1>\[-?\d+\]|\d+))?)(?![\w(])
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<err>\#(?:NULL!|DIV/0!|VALUE!|REF!|NAME\?|NUM!|N/A))
  | (?P<func>[A-Za-z_][\w.]*)\s*\(
  | (?P<bool>TRUE|FALSE)(?![\w(.])
  | (?P<name>(?P<nsheet>'(?:[^']|'')+'!|[A-Za-z_\\][\w.]*!)?[A-Za-z_\\][\w.]*)
  | (?P<op><>|<=|>=|[-+*/^&=<>%(),{};:])
    )""",
    re.X | re.I,
)

_BIN = {
    "=": 1,
    "<>": 1,
    "<": 1,
    ">": 1,
    "<=": 1,
    ">=": 1,
    "&": 2,
    "+": 3,
    "-": 3,
    "*": 4,
    "/": 4,
    "^": 5,
}
_PCT_BP = 6
_UNARY_BP = 7


def _tokens(text: str) -> list[tuple[str, object]]:
    out = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise WorkbookError(f"cannot parse formula near {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("r0", "c0", "r1", "c1", "sheet"):
            kind = "ref"
        elif kind == "nsheet":
            kind = "name"
        if kind == "str":
            out.append(("str", m.group("str")[1:-1].replace('""', '"')))
        elif kind == "ref":
            out.append(("ref", m))
        elif kind == "num":
            out.append(("num", float(m.group("num"))))
        elif kind == "err":
            out.append(("err", m.group("err").upper()))
        elif kind == "func":
            name = m.group("func").upper()
            for pre in ("_XLFN.", "_XLWS."):
                if name.startswith(pre):
                    name = name[len(pre) :]
            out.append(("func", name))
        elif kind == "bool":
            out.append(("bool", m.group("bool").upper() == "TRUE"))
        elif kind == "name":
            out.append(("name", m.group("name")))
        else:
            out.append(("op", m.group("op")))
    return out


def _part(tok: str) -> tuple[int, bool]:
    if tok.startswith("["):
        return int(tok[1:-1]), False
    return int(tok) - 1, True


def _ref_node(m: re.Match) -> Ref:
    sheet = m.group("sheet")
    if sheet:
        sheet = sheet[:-1]
        if sheet.startswith("'"):
            sheet = sheet[1:-1].replace("''", "'")
    r0, r0a = _part(m.group("r0"))
    c0, c0a = _part(m.group("c0"))
    if m.group("r1") is None:
        return Ref(sheet, r0, r0a, c0, c0a, r0, r0a, c0, c0a)
    r1, r1a = _part(m.group("r1"))
    c1, c1a = _part(m.group("c1"))
    return Ref(sheet, r0, r0a, c0, c0a, r1, r1a, c1, c1a)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0  # parentheses, calls and signs open around the token being read

    def nest(self, step: int) -> None:
        self.depth += step
        if self.depth > MAX_NESTING:
            raise WorkbookError(
                f"formula {self.text[:60]!r}...: nested more than {MAX_NESTING} levels deep; refusing it"
            )

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", None)

    def next(self):
        t = self.peek()
        self.i += 1
        return t

    def expect(self, op: str):
        t = self.next()
        if t != ("op", op):
            raise WorkbookError(f"formula {self.text!r}: expected {op!r}")

    def parse(self):
        node = self.expr(0)
        if self.i != len(self.toks):
            raise WorkbookError(f"formula {self.text!r}: unexpected {self.peek()[1]!r}")
        return node

    def expr(self, min_bp: int):
        left = self.prefix()
        while True:
            kind, v = self.peek()
            if kind != "op":
                break
            if v == "%":
                if _PCT_BP < min_bp:
                    break
                self.i += 1
                left = Pct(left)
                continue
            bp = _BIN.get(v)
            if bp is None or bp < min_bp:
                break
            self.i += 1
            right = self.expr(bp + 1)  # all binary operators are left-associative
            left = Bin(v, left, right)
        return left

    def prefix(self):
        kind, v = self.next()
        if kind == "num":
            return Num(v)
        if kind == "str":
            return Str(v)
        if kind == "bool":
            return Bool(v)
        if kind == "err":
            return Err(v)
        if kind == "ref":
            return _ref_node(v)
        if kind == "name":
            sheet, _, name = v.rpartition("!")
            if sheet.startswith("'"):
                sheet = sheet[1:-1].replace("''", "'")
            return Name(sheet or None, name)
        if kind == "func":
            args = []
            if self.peek() == ("op", ")"):
                self.i += 1
                return Call(v, ())
            self.nest(1)
            while True:
                if self.peek() in (("op", ","), ("op", ")")):
                    args.append(Missing())
                else:
                    args.append(self.expr(0))
                t = self.next()
                if t == ("op", ")"):
                    break
                if t != ("op", ","):
                    raise WorkbookError(f"formula {self.text!r}: expected ',' or ')' in {v}()")
            self.nest(-1)
            return Call(v, tuple(args))
        if kind == "op":
            if v == "(":
                self.nest(1)
                e = self.expr(0)
                self.expect(")")
                self.nest(-1)
                return e
            if v in ("-", "+"):
                self.nest(1)
                x = self.expr(_UNARY_BP)
                self.nest(-1)
                return Neg(x) if v == "-" else x
            if v == "{":
                raise WorkbookError(f"formula {self.text!r}: array constants {{...}} are not supported")
        raise WorkbookError(f"formula {self.text!r}: unexpected {v!r}")


@lru_cache(maxsize=65536)
def parse_r1c1(key: str) -> Node:
    """AST of a canonical (R1C1) formula text."""
    return _Parser(key).parse()


def parse(text: str, row: int = 0, col: int = 0) -> Node:
    """AST of an A1 formula ``text`` (no leading '=') sitting at 0-based (row, col)."""
    return parse_r1c1(to_r1c1(text, row, col))
