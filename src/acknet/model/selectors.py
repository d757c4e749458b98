"""Label selectors: Calico's selector language, Kubernetes LabelSelectors and kubectl's selector strings.

Three ways to pick workloads by their labels meet in acknet, and all compile to one small, frozen
tree of ``SelectorNode``s whose ``matches(labels)`` is what analysis calls millions of times:

- Calico selectors (``projectcalico.org/v3`` policies): ``parse_calico_selector`` follows
  projectcalico/calico ``libcalico-go/lib/selector`` (tokenizer/tokenizer.go, parser/parser.go,
  parser/ast.go) token for token, including its canonical ``String()`` form and ``UniqueID()``.
- Kubernetes ``metav1.LabelSelector`` (NetworkPolicy pod and namespace selectors, Deployment
  selectors): ``K8sSelector.from_dict`` validates and compiles; ``None`` selects nothing,
  ``{}`` selects everything, as ``metav1.LabelSelectorAsSelector`` does.
- kubectl's selector strings (``app=web,tier!=db``) for the command line:
  ``parse_label_selector_string``, after k8s.io/apimachinery ``pkg/labels/selector.go``.

Pure: no I/O and nothing outside the standard library.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import ClassVar, Final, Literal, NamedTuple, cast

__all__ = [
    "AllNode",
    "AndNode",
    "CalicoSelector",
    "GlobalNode",
    "HasNode",
    "K8sOperator",
    "K8sRequirement",
    "K8sSelector",
    "K8sSelectorError",
    "LabelContainsNode",
    "LabelEndsWithNode",
    "LabelEqNode",
    "LabelInSetNode",
    "LabelNeNode",
    "LabelNotInSetNode",
    "LabelStartsWithNode",
    "NotNode",
    "OrNode",
    "SelectorError",
    "SelectorNode",
    "parse_calico_selector",
    "parse_label_selector_string",
    "tokenize_calico_selector",
    "validate_k8s_selector",
    "validate_label_key",
    "validate_label_value",
]


# ---------------------------------------------------------------------------------------------------
# Errors


class SelectorError(ValueError):
    """A selector string that does not parse.

    ``position`` is the 0-based character offset where parsing failed; the message says what was
    expected there and shows the text found, e.g. ``expected '==' at position 1: '=b'``.
    """

    def __init__(self, selector: str, position: int, expected: str, detail: str = "") -> None:
        self.selector = selector
        self.position = position
        rest = selector[position:]
        found = repr(rest if len(rest) <= 24 else rest[:24] + "…") if rest else "end of selector"
        message = f"{expected} at position {position}: {found}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class K8sSelectorError(ValueError):
    """A Kubernetes LabelSelector object that is not valid; ``problems`` lists (field path, message)."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        text = "; ".join(f"{path}: {msg}" if path else msg for path, msg in self.problems)
        super().__init__(f"invalid label selector: {text}")


# ---------------------------------------------------------------------------------------------------
# Selector trees (shared by all three syntaxes)


def _quote(value: str) -> str:
    # Calico's String() quotes with " unless the value holds a ", then with ' (literals have no escapes).
    quote = "'" if '"' in value else '"'
    return quote + value + quote


@dataclass(frozen=True, slots=True)
class SelectorNode:
    """A node of a compiled selector. Subclasses are immutable, hashable and compare by structure."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def render(self, out: list[str]) -> None:
        """Append this node's fragments of Calico's canonical String() form to ``out``."""
        raise NotImplementedError

    def children(self) -> tuple[SelectorNode, ...]:
        return ()

    def with_label_prefix(self, prefix: str) -> SelectorNode:
        return self

    def __str__(self) -> str:
        out: list[str] = []
        self.render(out)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class AllNode(SelectorNode):
    """``all()`` (and the empty selector): matches everything."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def render(self, out: list[str]) -> None:
        out.append("all()")


@dataclass(frozen=True, slots=True)
class GlobalNode(SelectorNode):
    """``global()``: matches everything here; in a namespaceSelector it means "non-namespaced
    resources only" (GlobalNetworkSets, HostEndpoints), which the policy layer decides."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def render(self, out: list[str]) -> None:
        out.append("global()")


@dataclass(frozen=True, slots=True)
class HasNode(SelectorNode):
    """``has(key)``."""

    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def render(self, out: list[str]) -> None:
        out.extend(("has(", self.key, ")"))

    def with_label_prefix(self, prefix: str) -> SelectorNode:
        return HasNode(prefix + self.key)


@dataclass(frozen=True, slots=True)
class _LabelValueNode(SelectorNode):
    key: str
    value: str
    op: ClassVar[str] = ""

    def render(self, out: list[str]) -> None:
        out.extend((self.key, self.op, _quote(self.value)))

    def with_label_prefix(self, prefix: str) -> SelectorNode:
        return type(self)(prefix + self.key, self.value)


@dataclass(frozen=True, slots=True)
class LabelEqNode(_LabelValueNode):
    """``key == "value"``: the label must be present."""

    op: ClassVar[str] = " == "

    def matches(self, labels: Mapping[str, str]) -> bool:
        # An absent label gives None, which never equals a str.
        return labels.get(self.key) == self.value


@dataclass(frozen=True, slots=True)
class LabelNeNode(_LabelValueNode):
    """``key != "value"``: also true when the label is absent (Calico and Kubernetes agree)."""

    op: ClassVar[str] = " != "

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) != self.value


@dataclass(frozen=True, slots=True)
class LabelContainsNode(_LabelValueNode):
    """``key contains "sub"``: the label must be present."""

    op: ClassVar[str] = " contains "

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        return actual is not None and self.value in actual


@dataclass(frozen=True, slots=True)
class LabelStartsWithNode(_LabelValueNode):
    """``key starts with "prefix"``: the label must be present."""

    op: ClassVar[str] = " starts with "

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        return actual is not None and actual.startswith(self.value)


@dataclass(frozen=True, slots=True)
class LabelEndsWithNode(_LabelValueNode):
    """``key ends with "suffix"``: the label must be present."""

    op: ClassVar[str] = " ends with "

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        return actual is not None and actual.endswith(self.value)


@dataclass(frozen=True, slots=True)
class _LabelSetNode(SelectorNode):
    key: str
    values: tuple[str, ...]
    _set: frozenset[str] = field(init=False, repr=False, compare=False)
    op: ClassVar[str] = ""

    def __post_init__(self) -> None:
        # Calico keeps set literals sorted and de-duplicated (parser/stringset.go); Go sorts strings
        # by bytes, which for UTF-8 is Python's code-point order.
        values = tuple(sorted(set(self.values)))
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "_set", frozenset(values))

    def render(self, out: list[str]) -> None:
        out.extend((self.key, self.op, "{", ", ".join(_quote(v) for v in self.values), "}"))

    def with_label_prefix(self, prefix: str) -> SelectorNode:
        return type(self)(prefix + self.key, self.values)


@dataclass(frozen=True, slots=True)
class LabelInSetNode(_LabelSetNode):
    """``key in {"a", "b"}``: the label must be present."""

    op: ClassVar[str] = " in "

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) in self._set


@dataclass(frozen=True, slots=True)
class LabelNotInSetNode(_LabelSetNode):
    """``key not in {"a", "b"}``: also true when the label is absent."""

    op: ClassVar[str] = " not in "

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) not in self._set


@dataclass(frozen=True, slots=True)
class NotNode(SelectorNode):
    """``!operand``."""

    operand: SelectorNode

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def render(self, out: list[str]) -> None:
        # Calico writes no parentheses of its own here: "!a == "b"" means !(a == "b"), and an
        # And/Or operand brings its own.
        out.append("!")
        self.operand.render(out)

    def children(self) -> tuple[SelectorNode, ...]:
        return (self.operand,)

    def with_label_prefix(self, prefix: str) -> SelectorNode:
        return NotNode(self.operand.with_label_prefix(prefix))


@dataclass(frozen=True, slots=True)
class AndNode(SelectorNode):
    """``a && b && ...``; rendered in parentheses, never flattened (both as Calico does)."""

    operands: tuple[SelectorNode, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        for operand in self.operands:  # noqa: SIM110 -- a plain loop is faster than all(<generator>)
            if not operand.matches(labels):
                return False
        return True

    def render(self, out: list[str]) -> None:
        out.append("(")
        for i, operand in enumerate(self.operands):
            if i:
                out.append(" && ")
            operand.render(out)
        out.append(")")

    def children(self) -> tuple[SelectorNode, ...]:
        return self.operands

    def with_label_prefix(self, prefix: str) -> SelectorNode:
        return AndNode(tuple(op.with_label_prefix(prefix) for op in self.operands))


@dataclass(frozen=True, slots=True)
class OrNode(SelectorNode):
    """``a || b || ...``; rendered in parentheses."""

    operands: tuple[SelectorNode, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        for operand in self.operands:  # noqa: SIM110 -- a plain loop is faster than any(<generator>)
            if operand.matches(labels):
                return True
        return False

    def render(self, out: list[str]) -> None:
        out.append("(")
        for i, operand in enumerate(self.operands):
            if i:
                out.append(" || ")
            operand.render(out)
        out.append(")")

    def children(self) -> tuple[SelectorNode, ...]:
        return self.operands

    def with_label_prefix(self, prefix: str) -> SelectorNode:
        return OrNode(tuple(op.with_label_prefix(prefix) for op in self.operands))


def _walk(node: SelectorNode) -> Iterator[SelectorNode]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children())


def _node_label_keys(node: SelectorNode) -> frozenset[str]:
    return frozenset(n.key for n in _walk(node) if isinstance(n, HasNode | _LabelValueNode | _LabelSetNode))


@dataclass(frozen=True)
class CalicoSelector:
    """A parsed Calico selector. Compares by structure; ``str()`` is Calico's canonical form."""

    root: SelectorNode

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.root.matches(labels)

    @cached_property
    def _canonical(self) -> str:
        return str(self.root)

    def __str__(self) -> str:
        return self._canonical

    def __repr__(self) -> str:
        return f"CalicoSelector({self._canonical!r})"

    def unique_id(self) -> str:
        """Calico's ``UniqueID()``: ``hash.MakeUniqueID("s", String())`` = "s:" + base64url(sha224)."""
        digest = hashlib.sha224(("s:" + self._canonical).encode()).digest()
        return "s:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def with_label_prefix(self, prefix: str) -> CalicoSelector:
        """Every label key prefixed, as Calico's ``PrefixVisitor`` does (e.g. ``pcns.`` for namespaces)."""
        return CalicoSelector(self.root.with_label_prefix(prefix))

    @cached_property
    def is_global(self) -> bool:
        """True when the selector contains ``global()``."""
        return any(isinstance(n, GlobalNode) for n in _walk(self.root))

    def label_keys(self) -> frozenset[str]:
        """Every label key the selector mentions."""
        return _node_label_keys(self.root)


# ---------------------------------------------------------------------------------------------------
# Calico tokenizer (libcalico-go/lib/selector/tokenizer/tokenizer.go)


class _Tok(NamedTuple):
    kind: str
    value: str
    pos: int


_LABEL: Final = "Label"
_STRING: Final = "StringLiteral"
_EQ: Final = "Eq"
_NE: Final = "Ne"
_IN: Final = "In"
_NOT: Final = "Not"
_NOTIN: Final = "NotIn"
_CONTAINS: Final = "Contains"
_STARTSWITH: Final = "StartsWith"
_ENDSWITH: Final = "EndsWith"
_ALL: Final = "All"
_HAS: Final = "Has"
_LPAREN: Final = "LParen"
_RPAREN: Final = "RParen"
_LBRACE: Final = "LBrace"
_RBRACE: Final = "RBrace"
_COMMA: Final = "Comma"
_AND: Final = "And"
_OR: Final = "Or"
_GLOBAL: Final = "Global"
_EOF: Final = "EOF"
_ERROR: Final = "Error"  # ours: the tokenizer stopped here; value says what it expected, or ""

_PUNCTUATION: Final = {"(": _LPAREN, ")": _RPAREN, "{": _LBRACE, "}": _RBRACE, ",": _COMMA}
_DOUBLED: Final = {"&": _AND, "|": _OR}
_LABEL_RE: Final = re.compile(r"[A-Za-z0-9_./-]+")
# Operators the tokenizer looks for right after a label, in Calico's order: (word, second word, kind).
# "starts with", "ends with" and "not in" allow any blanks, including none, between the words.
_WORD_OPERATORS: Final = (
    ("contains", "", _CONTAINS),
    ("starts", "with", _STARTSWITH),
    ("ends", "with", _ENDSWITH),
    ("not", "in", _NOTIN),
    ("in", "", _IN),
)
_OPERATORS_TEXT: Final = "'==', '!=', 'in', 'not in', 'contains', 'starts with' or 'ends with'"
_CALICO_BLANKS: Final = " \t"  # Calico trims only spaces and tabs; a newline is an error


def _lex_calico(text: str) -> list[_Tok]:
    """Tokens of ``text``, ending with an EOF token, or with an Error token where tokenizing failed."""
    toks: list[_Tok] = []
    n = len(text)

    def skip_blanks(j: int) -> int:
        while j < n and text[j] in _CALICO_BLANKS:
            j += 1
        return j

    def fail(pos: int, expected: str) -> list[_Tok]:
        toks.append(_Tok(_ERROR, expected, pos))
        return toks

    i = 0
    while True:
        i = skip_blanks(i)
        if i == n:
            toks.append(_Tok(_EOF, "", i))
            return toks
        start = i
        c = text[i]
        if c in _PUNCTUATION:
            toks.append(_Tok(_PUNCTUATION[c], "", start))
            i += 1
        elif c in "\"'":
            end = text.find(c, i + 1)
            if end < 0:
                return fail(start, f"expected a closing {c} to end this string (selectors have no escapes)")
            toks.append(_Tok(_STRING, text[i + 1 : end], start))
            i = end + 1
        elif c == "=":
            if not text.startswith("==", i):
                return fail(start, "expected '=='")
            toks.append(_Tok(_EQ, "", start))
            i += 2
        elif c == "!":
            if text.startswith("!=", i):
                toks.append(_Tok(_NE, "", start))
                i += 2
            else:
                toks.append(_Tok(_NOT, "", start))
                i += 1
        elif c in _DOUBLED:
            if not text.startswith(c + c, i):
                return fail(start, f"expected '{c}{c}'")
            toks.append(_Tok(_DOUBLED[c], "", start))
            i += 2
        elif toks and toks[-1].kind == _LABEL:
            # Right after a label only a word operator may follow, so "contains contains 'x'" works.
            for word, second, kind in _WORD_OPERATORS:
                if text.startswith(word, i):
                    i += len(word)
                    if second:
                        i = skip_blanks(i)
                        if not text.startswith(second, i):
                            return fail(i, f"expected '{second}' after '{word}'")
                        i += len(second)
                    toks.append(_Tok(kind, "", start))
                    break
            else:
                return fail(start, f"expected an operator after label '{toks[-1].value}': {_OPERATORS_TEXT}")
        elif text.startswith("has(", i):
            i = skip_blanks(i + 4)
            match = _LABEL_RE.match(text, i)
            if match is None:
                return fail(i, "expected a label inside 'has('")
            i = skip_blanks(match.end())
            if not text.startswith(")", i):
                return fail(i, "expected ')' to close 'has('")
            toks.append(_Tok(_HAS, match.group(), start))
            i += 1
        elif text.startswith("all(", i) or text.startswith("global(", i):
            word = "all" if c == "a" else "global"
            i = skip_blanks(i + len(word) + 1)
            if not text.startswith(")", i):
                return fail(i, f"expected ')' to close '{word}('")
            toks.append(_Tok(_ALL if word == "all" else _GLOBAL, "", start))
            i += 1
        elif match := _LABEL_RE.match(text, i):
            # The vectors' tokenizer (a regexp) also reads a label that runs to the end of the input,
            # which newer Calico's findIdentifier refuses; either way such a selector cannot parse.
            toks.append(_Tok(_LABEL, match.group(), start))
            i = match.end()
        else:
            return fail(start, "")


def tokenize_calico_selector(text: str) -> list[str]:
    """Calico's tokens for ``text`` in the test-vectors' notation.

    E.g. ``['Label:a', 'Eq', 'StringLiteral:b', 'EOF']``. Raises ``SelectorError`` where tokenizing fails.
    """
    toks = _lex_calico(text)
    last = toks[-1]
    if last.kind == _ERROR:
        raise SelectorError(
            text, last.pos, last.value or "expected a label, a quoted string, an operator or a bracket"
        )
    return [f"{t.kind}:{t.value}" if t.kind in (_LABEL, _STRING, _HAS) else t.kind for t in toks]


# ---------------------------------------------------------------------------------------------------
# Calico parser (libcalico-go/lib/selector/parser/parser.go)

_START_OF_OPERATION: Final = "expected a label, '!', 'has(', 'all()', 'global()' or '('"


class _CalicoParser:
    """Recursive descent over the token list: or := and ('||' and)*; and := op ('&&' op)*;
    op := '!'* (has | all | global | label comparison | '(' or-expression ')')."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _lex_calico(text)
        self.i = 0

    def error(self, tok: _Tok, expected: str) -> SelectorError:
        if tok.kind == _ERROR and tok.value:
            expected = tok.value  # the tokenizer knows better what was wrong at this spot
        return SelectorError(self.text, tok.pos, expected)

    def parse(self) -> SelectorNode:
        if self.toks[0].kind == _EOF:
            return AllNode()  # empty or blank selector
        node = self.parse_or()
        tok = self.toks[self.i]
        if tok.kind != _EOF:
            raise self.error(tok, "expected '&&', '||' or end of selector")
        return node

    def parse_or(self) -> SelectorNode:
        nodes = [self.parse_and()]
        while self.toks[self.i].kind == _OR:
            self.i += 1
            nodes.append(self.parse_and())
        return nodes[0] if len(nodes) == 1 else OrNode(tuple(nodes))

    def parse_and(self) -> SelectorNode:
        nodes = [self.parse_operation()]
        while self.toks[self.i].kind == _AND:
            self.i += 1
            nodes.append(self.parse_operation())
        return nodes[0] if len(nodes) == 1 else AndNode(tuple(nodes))

    def parse_operation(self) -> SelectorNode:
        toks = self.toks
        # Calico folds a run of leading '!' into one boolean: "!!has(a)" is has(a),
        # and '!' applies to the comparison: "!a == 'b'" is !(a == 'b').
        negated = False
        while toks[self.i].kind == _NOT:
            negated = not negated
            self.i += 1
        tok = toks[self.i]
        node: SelectorNode
        if tok.kind == _HAS:
            node = HasNode(tok.value)
            self.i += 1
        elif tok.kind == _ALL:
            node = AllNode()
            self.i += 1
        elif tok.kind == _GLOBAL:
            node = GlobalNode()
            self.i += 1
        elif tok.kind == _LABEL:
            node = self.parse_comparison(tok.value)
        elif tok.kind == _LPAREN:
            self.i += 1
            node = self.parse_or()
            if toks[self.i].kind != _RPAREN:
                raise self.error(toks[self.i], "expected '&&', '||' or ')'")
            self.i += 1
        else:
            raise self.error(tok, _START_OF_OPERATION)
        return NotNode(node) if negated else node

    def parse_comparison(self, key: str) -> SelectorNode:
        toks = self.toks
        op = toks[self.i + 1]  # a label is never the last token: EOF or Error follows at worst
        self.i += 2
        if op.kind in (_EQ, _NE, _CONTAINS, _STARTSWITH, _ENDSWITH):
            literal = toks[self.i]
            if literal.kind != _STRING:
                raise self.error(literal, "expected a quoted string")
            self.i += 1
            return _VALUE_NODES[op.kind](key, literal.value)
        if op.kind in (_IN, _NOTIN):
            if toks[self.i].kind != _LBRACE:
                raise self.error(toks[self.i], "expected '{' to open a set of quoted strings")
            self.i += 1
            values: list[str] = []
            # Calico accepts {} and a trailing comma: {"a",}.
            while toks[self.i].kind == _STRING:
                values.append(toks[self.i].value)
                self.i += 1
                if toks[self.i].kind != _COMMA:
                    break
                self.i += 1
            if toks[self.i].kind != _RBRACE:
                expected = "expected ',' or '}'" if values else "expected a quoted string or '}'"
                raise self.error(toks[self.i], expected)
            self.i += 1
            set_node = LabelInSetNode if op.kind == _IN else LabelNotInSetNode
            return set_node(key, tuple(values))
        raise self.error(op, f"expected an operator after label '{key}': {_OPERATORS_TEXT}")


_VALUE_NODES: Final[dict[str, type[_LabelValueNode]]] = {
    _EQ: LabelEqNode,
    _NE: LabelNeNode,
    _CONTAINS: LabelContainsNode,
    _STARTSWITH: LabelStartsWithNode,
    _ENDSWITH: LabelEndsWithNode,
}


@lru_cache(maxsize=4096)
def parse_calico_selector(text: str) -> CalicoSelector:
    """Parse a Calico selector; the empty or blank selector is ``all()``. Raises ``SelectorError``.

    Results are cached: policies repeat the same few selectors, and a CalicoSelector is immutable.
    """
    try:
        return CalicoSelector(_CalicoParser(text).parse())
    except RecursionError as exc:
        raise SelectorError(text, 0, "expected fewer nested parentheses") from exc


# ---------------------------------------------------------------------------------------------------
# Kubernetes label keys and values
# (k8s.io/apimachinery/pkg/util/validation: IsQualifiedName, IsValidLabelValue)

_NAME_RE: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_RULE: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)


def validate_label_key(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes label key (a qualified name), or None when it is."""
    problems: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        return (
            "must be a name with an optional DNS subdomain prefix and '/' "
            f"(e.g. 'example.com/MyName'), not {len(parts) - 1} '/'"
        )
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                problems.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
                problems.append(
                    "prefix part must be a lowercase RFC 1123 subdomain: lowercase alphanumeric "
                    "characters, '-' or '.', starting and ending with an alphanumeric (e.g. 'example.com')"
                )
    if not name:
        problems.append("name part must be non-empty")
    else:
        if len(name) > 63:
            problems.append("name part must be no more than 63 characters")
        if not _NAME_RE.fullmatch(name):
            problems.append(f"name part {_NAME_RULE} (e.g. 'MyName', 'my.name', '123-abc')")
    return "; ".join(problems) or None


def validate_label_value(value: str) -> str | None:
    """Why ``value`` is not a valid Kubernetes label value, or None when it is (empty is valid)."""
    problems: list[str] = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if value and not _NAME_RE.fullmatch(value):
        rule = _NAME_RULE.removeprefix("must ")
        problems.append(f"must be empty or {rule} (e.g. 'MyValue', 'my_value', '12345')")
    return "; ".join(problems) or None


# ---------------------------------------------------------------------------------------------------
# Kubernetes LabelSelector (metav1.LabelSelector)

K8sOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
_K8S_OPERATORS: Final[tuple[K8sOperator, ...]] = ("In", "NotIn", "Exists", "DoesNotExist")


def _k8s_quote(value: str) -> str:
    # conversion.go writes '...'; switch quotes only for a value that holds a ' (never valid in k8s).
    quote = '"' if "'" in value else "'"
    return quote + value + quote


@dataclass(frozen=True, slots=True)
class K8sRequirement:
    """One ``matchExpressions`` item. ``values`` keep their given order (it shows in ``to_calico``)."""

    key: str
    operator: K8sOperator
    values: tuple[str, ...] = ()

    def to_node(self) -> SelectorNode:
        if self.operator == "In":
            return LabelInSetNode(self.key, self.values)
        if self.operator == "NotIn":
            return LabelNotInSetNode(self.key, self.values)  # true when the label is absent
        if self.operator == "Exists":
            return HasNode(self.key)
        return NotNode(HasNode(self.key))

    def to_calico(self) -> str:
        if self.operator in ("In", "NotIn"):
            word = "in" if self.operator == "In" else "not in"
            return f"{self.key} {word} {{ {', '.join(_k8s_quote(v) for v in self.values)} }}"
        if self.operator == "Exists":
            return f"has({self.key})"
        return f"! has({self.key})"

    def __str__(self) -> str:
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return "!" + self.key
        if self.operator == "NotIn" and len(self.values) == 1:
            return f"{self.key}!={self.values[0]}"
        word = "in" if self.operator == "In" else "notin"
        return f"{self.key} {word} ({','.join(self.values)})"


@dataclass(frozen=True)
class K8sSelector:
    """A compiled ``metav1.LabelSelector``: the AND of ``match_labels`` (sorted (key, value) pairs)
    and ``match_expressions``. ``is_nothing`` marks the nil selector, which selects nothing."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[K8sRequirement, ...] = ()
    is_nothing: bool = False
    _node: SelectorNode = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "match_labels", tuple(sorted(dict(self.match_labels).items())))
        node: SelectorNode
        terms: list[SelectorNode] = [LabelEqNode(k, v) for k, v in self.match_labels]
        terms.extend(req.to_node() for req in self.match_expressions)
        if self.is_nothing:
            node = NotNode(AllNode())
        elif not terms:
            node = AllNode()
        elif len(terms) == 1:
            node = terms[0]
        else:
            node = AndNode(tuple(terms))
        object.__setattr__(self, "_node", node)

    @classmethod
    def nothing(cls) -> K8sSelector:
        """The nil selector (``podSelector`` absent where nil matters): selects nothing."""
        return cls(is_nothing=True)

    @classmethod
    def everything(cls) -> K8sSelector:
        """The empty selector ``{}``: selects everything."""
        return cls()

    @classmethod
    def from_dict(cls, d: Mapping[str, object] | None) -> K8sSelector:
        """Compile a LabelSelector as found in YAML; ``None`` selects nothing, ``{}`` everything.

        Raises ``K8sSelectorError`` listing every problem ``validate_k8s_selector`` finds.
        """
        problems = validate_k8s_selector(d)
        if problems:
            raise K8sSelectorError(problems)
        if d is None:
            return cls.nothing()
        labels = d.get("matchLabels") or {}
        expressions = d.get("matchExpressions") or []
        assert isinstance(labels, Mapping) and isinstance(expressions, Sequence)  # validated above
        reqs: list[K8sRequirement] = []
        for expr in expressions:
            assert isinstance(expr, Mapping)
            values = expr.get("values") or ()
            assert isinstance(values, Sequence)
            operator = cast(K8sOperator, expr["operator"])
            reqs.append(K8sRequirement(str(expr["key"]), operator, tuple(str(v) for v in values)))
        return cls(tuple((str(k), str(v)) for k, v in labels.items()), tuple(reqs))

    def to_dict(self) -> dict[str, object] | None:
        """The LabelSelector in Kubernetes shape (``None`` for the nil selector)."""
        if self.is_nothing:
            return None
        out: dict[str, object] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [
                {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
                for r in self.match_expressions
            ]
        return out

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self._node.matches(labels)

    @property
    def is_empty(self) -> bool:
        """True when the selector has no terms and so selects everything."""
        return not (self.is_nothing or self.match_labels or self.match_expressions)

    def equality_requirements(self) -> dict[str, str]:
        """key -> value pairs every match must have: ``matchLabels`` plus single-value ``In`` expressions.

        For indexing. If two of them disagree on a key, nothing matches and either value is kept.
        """
        out = dict(self.match_labels)
        for req in self.match_expressions:
            if req.operator == "In" and len(set(req.values)) == 1:
                out.setdefault(req.key, req.values[0])
        return out

    def label_keys(self) -> frozenset[str]:
        return _node_label_keys(self._node)

    def to_calico(self) -> str:
        """The Calico selector text, joined as conversion.go's ``k8sSelectorToCalico`` does:
        ``k == 'v' && k in { 'a', 'b' } && k not in { 'c' } && has(k) && ! has(k)``.

        The empty selector gives ``all()`` and the nil one ``!all()`` (matches nothing). Calico's own
        converter gives "" for a nil namespaceSelector, meaning "the policy's namespace": that is the
        policy converter's business, not the selector's.
        """
        if self.is_nothing:
            return "!all()"
        terms = [f"{k} == {_k8s_quote(v)}" for k, v in self.match_labels]
        terms.extend(req.to_calico() for req in self.match_expressions)
        return " && ".join(terms) or "all()"

    def to_calico_selector(self) -> CalicoSelector:
        """The same selection as a CalicoSelector (without re-parsing)."""
        return CalicoSelector(self._node)

    def __repr__(self) -> str:
        return "K8sSelector.nothing()" if self.is_nothing else f"K8sSelector({str(self)!r})"

    def __str__(self) -> str:
        """kubectl syntax (``app=web,tier in (a,b),!debug``); ``<nothing>`` for the nil selector."""
        if self.is_nothing:
            return "<nothing>"
        parts = [f"{k}={v}" for k, v in self.match_labels]
        parts.extend(str(req) for req in self.match_expressions)
        return ",".join(parts)


def _is_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def validate_k8s_selector(d: object) -> list[tuple[str, str]]:
    """Every problem of a LabelSelector as (field path relative to the selector, message).

    Paths look like ``matchLabels[app]``, ``matchExpressions[1].values[0]``; "" is the selector itself.
    Checks what the API server checks (metav1validation.ValidateLabelSelector), plus types and
    unknown fields, which the API server's strict decoding rejects.
    """
    if d is None:
        return []
    if not isinstance(d, Mapping):
        return [("", f"must be a mapping with matchLabels and/or matchExpressions, not {_type_name(d)}")]
    problems: list[tuple[str, str]] = []
    for name in d:
        if name not in ("matchLabels", "matchExpressions"):
            problems.append((str(name), "unknown field; a selector has matchLabels and matchExpressions"))

    labels = d.get("matchLabels")
    if labels is not None:
        if not isinstance(labels, Mapping):
            problems.append(("matchLabels", f"must be a mapping of keys to values, not {_type_name(labels)}"))
        else:
            for key, value in labels.items():
                path = f"matchLabels[{key}]"
                if not isinstance(key, str):
                    problems.append((path, f"label key must be a string, not {_type_name(key)}"))
                elif msg := validate_label_key(key):
                    problems.append((path, f"invalid label key {key!r}: {msg}"))
                if not isinstance(value, str):
                    problems.append(
                        (path, f"value must be a string (quote it in YAML), not {_type_name(value)}")
                    )
                elif msg := validate_label_value(value):
                    problems.append((path, f"invalid label value {value!r}: {msg}"))

    expressions = d.get("matchExpressions")
    if expressions is not None:
        if not _is_sequence(expressions):
            problems.append(("matchExpressions", f"must be a list, not {_type_name(expressions)}"))
        else:
            assert isinstance(expressions, Sequence)
            for i, expr in enumerate(expressions):
                problems.extend(_validate_requirement(expr, f"matchExpressions[{i}]"))
    return problems


def _validate_requirement(expr: object, path: str) -> list[tuple[str, str]]:
    if not isinstance(expr, Mapping):
        return [(path, f"must be a mapping with key, operator and values, not {_type_name(expr)}")]
    problems: list[tuple[str, str]] = []
    for name in expr:
        if name not in ("key", "operator", "values"):
            problems.append((f"{path}.{name}", "unknown field; a requirement has key, operator and values"))

    key = expr.get("key")
    if key is None:
        problems.append((f"{path}.key", "required"))
    elif not isinstance(key, str):
        problems.append((f"{path}.key", f"must be a string, not {_type_name(key)}"))
    elif msg := validate_label_key(key):
        problems.append((f"{path}.key", f"invalid label key {key!r}: {msg}"))

    values = expr.get("values")
    value_list: Sequence[object] = ()
    values_ok = True
    if values is not None:
        if not _is_sequence(values):
            problems.append((f"{path}.values", f"must be a list of strings, not {_type_name(values)}"))
            values_ok = False
        else:
            assert isinstance(values, Sequence)
            value_list = values
            for j, value in enumerate(value_list):
                if not isinstance(value, str):
                    problems.append(
                        (
                            f"{path}.values[{j}]",
                            f"must be a string (quote it in YAML), not {_type_name(value)}",
                        )
                    )
                elif msg := validate_label_value(value):
                    problems.append((f"{path}.values[{j}]", f"invalid label value {value!r}: {msg}"))

    operator = expr.get("operator")
    allowed = ", ".join(_K8S_OPERATORS)
    if operator is None:
        problems.append((f"{path}.operator", f"required; one of {allowed}"))
    elif operator not in _K8S_OPERATORS:
        problems.append((f"{path}.operator", f"unsupported operator {operator!r}; must be one of {allowed}"))
    elif values_ok and operator in ("In", "NotIn") and not value_list:
        problems.append((f"{path}.values", f"must be non-empty when operator is {operator}"))
    elif values_ok and operator in ("Exists", "DoesNotExist") and value_list:
        problems.append((f"{path}.values", f"must be empty when operator is {operator}"))
    return problems


# ---------------------------------------------------------------------------------------------------
# kubectl selector strings (k8s.io/apimachinery/pkg/labels/selector.go: Parse)

_K8S_BLANKS: Final = " \t\r\n"
_K8S_SYMBOLS: Final = "=!(),<>"


def _lex_label_selector(text: str) -> list[_Tok]:
    """Tokens: 'ident' (value = text), 'end', or the symbol itself as kind ('=', '==', '!=', '!', ...)."""
    toks: list[_Tok] = []
    n = len(text)
    i = 0
    while True:
        while i < n and text[i] in _K8S_BLANKS:
            i += 1
        if i == n:
            toks.append(_Tok("end", "", i))
            return toks
        c = text[i]
        if c in _K8S_SYMBOLS:
            pair = text[i : i + 2]
            sym = pair if pair in ("==", "!=") else c
            toks.append(_Tok(sym, sym, i))
            i += len(sym)
        else:
            start = i
            while i < n and text[i] not in _K8S_SYMBOLS and text[i] not in _K8S_BLANKS:
                i += 1
            # "in" and "notin" are operators after a key and plain values inside (...): the parser decides.
            toks.append(_Tok("ident", text[start:i], start))


class _LabelSelectorParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _lex_label_selector(text)
        self.i = 0
        self.labels: dict[str, str] = {}
        self.reqs: list[K8sRequirement] = []

    def error(self, tok: _Tok, expected: str, detail: str = "") -> SelectorError:
        return SelectorError(self.text, tok.pos, expected, detail)

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> K8sSelector:
        if self.toks[0].kind == "end":
            return K8sSelector.everything()
        while True:
            self.parse_requirement()
            tok = self.take()
            if tok.kind == "end":
                return K8sSelector(tuple(self.labels.items()), tuple(self.reqs))
            if tok.kind != ",":
                raise self.error(tok, "expected ',' or end of selector")

    def key(self) -> str:
        tok = self.take()
        if tok.kind != "ident" or tok.value in ("in", "notin"):
            raise self.error(tok, "expected a label key")
        if msg := validate_label_key(tok.value):
            raise self.error(tok, "expected a valid label key", msg)
        return tok.value

    def value(self) -> str:
        tok = self.toks[self.i]
        if tok.kind in (",", "end", ")"):
            return ""  # "k=" means the empty value, as in Kubernetes
        self.i += 1
        if tok.kind != "ident":
            raise self.error(tok, "expected a label value")
        if msg := validate_label_value(tok.value):
            raise self.error(tok, "expected a valid label value", msg)
        return tok.value

    def parse_requirement(self) -> None:
        if self.toks[self.i].kind == "!":
            self.i += 1
            self.reqs.append(K8sRequirement(self.key(), "DoesNotExist"))
            return
        key = self.key()
        op = self.toks[self.i]
        if op.kind in (",", "end"):
            self.reqs.append(K8sRequirement(key, "Exists"))
            return
        self.i += 1
        if op.kind in ("=", "=="):
            value = self.value()
            if key in self.labels:
                self.reqs.append(K8sRequirement(key, "In", (value,)))
            else:
                self.labels[key] = value
        elif op.kind == "!=":
            self.reqs.append(K8sRequirement(key, "NotIn", (self.value(),)))
        elif op.kind == "ident" and op.value in ("in", "notin"):
            self.reqs.append(K8sRequirement(key, "In" if op.value == "in" else "NotIn", self.value_set()))
        else:
            detail = "'<' and '>' have no LabelSelector equivalent" if op.kind in ("<", ">") else ""
            raise self.error(op, "expected '=', '==', '!=', 'in', 'notin', ',' or end of selector", detail)

    def value_set(self) -> tuple[str, ...]:
        if self.take().kind != "(":
            raise self.error(self.toks[self.i - 1], "expected '(' to open a list of values")
        # Kubernetes reads empty items as "": "()" is {""}, "(a,)" is {a, ""}.
        values: list[str] = []
        current: str | None = None
        while True:
            tok = self.toks[self.i]
            if tok.kind == "ident":
                if current is not None:
                    raise self.error(tok, "expected ',' or ')'")
                current = self.value()
            elif tok.kind in (",", ")"):
                self.i += 1
                values.append("" if current is None else current)
                current = None
                if tok.kind == ")":
                    return tuple(dict.fromkeys(values))
            else:
                raise self.error(tok, "expected a value, ',' or ')'")


def parse_label_selector_string(text: str) -> K8sSelector:
    """Parse kubectl's selector syntax: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``,
    ``k``, ``!k``, joined by ``,`` (AND). The empty string selects everything. Raises ``SelectorError``.
    """
    return _LabelSelectorParser(text).parse()
