"""Label selectors: Calico's conformance vectors, Kubernetes LabelSelectors, kubectl selector strings."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from acknet.model.selectors import (
    AllNode,
    AndNode,
    CalicoSelector,
    GlobalNode,
    HasNode,
    K8sRequirement,
    K8sSelector,
    K8sSelectorError,
    LabelContainsNode,
    LabelEndsWithNode,
    LabelEqNode,
    LabelInSetNode,
    LabelNeNode,
    LabelNotInSetNode,
    LabelStartsWithNode,
    NotNode,
    OrNode,
    SelectorError,
    SelectorNode,
    parse_calico_selector,
    parse_label_selector_string,
    tokenize_calico_selector,
    validate_k8s_selector,
    validate_label_key,
    validate_label_value,
)

# ---------------------------------------------------------------------------------------------------
# Calico conformance vectors (read from ../shared, never copied into the project)

_SHARED = Path(os.environ.get("ACKNET_SHARED", Path(__file__).resolve().parents[3].parent / "shared"))
_VECTORS_FILE = _SHARED / "conformance" / "calico-selectors.yaml"


def _load_vectors() -> dict[str, Any]:
    if not _VECTORS_FILE.is_file():
        return {}
    with _VECTORS_FILE.open(encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


_DATA = _load_vectors()
_MATCH = _DATA.get("vectors", [])
_BAD = _DATA.get("bad_selectors", [])
_CANON = _DATA.get("canonicalisation", [])
_PREFIX = _DATA.get("prefix_visitor", {"prefix": "", "cases": []})
_TOKENS = _DATA.get("tokenizer", [])


def _labels_id(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in labels.items()) + "}"


def test_conformance_vectors_are_all_there() -> None:
    assert _DATA, f"Calico selector vectors not found at {_VECTORS_FILE} (set ACKNET_SHARED)"
    count = _DATA["count"]
    assert len(_MATCH) == count["match_vectors"]
    assert len(_BAD) == count["bad_selectors"]
    assert len(_CANON) == count["canonicalisation"]
    assert len(_PREFIX["cases"]) == count["visitor_prefix"]
    assert len(_TOKENS) == count["tokenizer"]


@pytest.mark.parametrize(
    "vector",
    _MATCH,
    ids=[f"{v['selector']!r} {_labels_id(v['labels'])} -> {v['match']}" for v in _MATCH],
)
def test_calico_match_vector(vector: dict[str, Any]) -> None:
    sel = parse_calico_selector(vector["selector"])
    assert sel.matches(vector["labels"]) is vector["match"]
    canonical = parse_calico_selector(str(sel))
    assert canonical.matches(vector["labels"]) is vector["match"], str(sel)


@pytest.mark.parametrize("text", _BAD, ids=[repr(b) for b in _BAD])
def test_calico_bad_selector(text: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_calico_selector(text)
    err = info.value
    assert err.selector == text
    assert 0 <= err.position <= len(text)
    assert f"at position {err.position}" in str(err)
    assert str(err).startswith("expected ")


@pytest.mark.parametrize("case", _CANON, ids=[repr(c["input"]) for c in _CANON])
def test_calico_canonical_form(case: dict[str, str]) -> None:
    sel = parse_calico_selector(case["input"])
    assert str(sel) == case["canonical"]
    assert str(parse_calico_selector(str(sel))) == case["canonical"]
    if "uid" in case:
        assert sel.unique_id() == case["uid"]


@pytest.mark.parametrize("case", _PREFIX["cases"], ids=[repr(c["input"]) for c in _PREFIX["cases"]])
def test_calico_prefix_visitor(case: dict[str, str]) -> None:
    sel = parse_calico_selector(case["input"])
    assert str(sel.with_label_prefix(_PREFIX["prefix"])) == case["output"]


@pytest.mark.parametrize("case", _TOKENS, ids=[repr(c["input"]) for c in _TOKENS])
def test_calico_tokenizer(case: dict[str, Any]) -> None:
    if case["tokens"] is None:
        with pytest.raises(SelectorError):
            tokenize_calico_selector(case["input"])
    else:
        assert tokenize_calico_selector(case["input"]) == case["tokens"]


# ---------------------------------------------------------------------------------------------------
# Calico: beyond the vectors


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        pytest.param(
            "%", 0, "expected a label, '!', 'has(', 'all()', 'global()' or '(' at position 0: '%'", id="junk"
        ),
        pytest.param("a == %", 5, "expected a quoted string at position 5: '%'", id="no-literal"),
        pytest.param("a = 'b'", 2, "expected '==' at position 2: \"= 'b'\"", id="single-equals"),
        pytest.param("a == 'b' & c", 9, "expected '&&' at position 9: '& c'", id="single-ampersand"),
        pytest.param("a == 'b", 5, "expected a closing ' to end this string", id="unterminated"),
        pytest.param("a is 'b'", 2, "expected an operator after label 'a': '=='", id="unknown-operator"),
        pytest.param(
            "a starts 'b'", 9, "expected 'with' after 'starts' at position 9", id="starts-without-with"
        ),
        pytest.param("a in 'b'", 5, "expected '{' to open a set of quoted strings", id="set-without-brace"),
        pytest.param("a in {'b' 'c'}", 10, "expected ',' or '}' at position 10", id="set-without-comma"),
        pytest.param("a in {,}", 6, "expected a quoted string or '}' at position 6", id="set-leading-comma"),
        pytest.param("has(a", 5, "expected ')' to close 'has(' at position 5", id="has-unclosed"),
        pytest.param("has()", 4, "expected a label inside 'has('", id="has-empty"),
        pytest.param("all(x)", 4, "expected ')' to close 'all('", id="all-with-argument"),
        pytest.param(
            "(has(a)", 7, "expected '&&', '||' or ')' at position 7: end of selector", id="unclosed-paren"
        ),
        pytest.param(
            "has(a) has(b)", 7, "expected '&&', '||' or end of selector at position 7", id="missing-and"
        ),
        pytest.param("a == 'b'\n", 8, "at position 8: '\\n'", id="newline-is-not-blank"),
        pytest.param("a == 'b' && " + "x" * 40, 52, "position 52: end of selector", id="long-tail"),
    ],
)
def test_calico_error_says_what_was_expected_where(text: str, position: int, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_calico_selector(text)
    assert info.value.position == position
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_calico_error_snippet_is_shortened() -> None:
    with pytest.raises(SelectorError, match=r"at position 0: '%x{23}…'$"):
        parse_calico_selector("%" + "x" * 40)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        pytest.param(
            "(a == 'b' && c == 'd') && e == 'f'", '((a == "b" && c == "d") && e == "f")', id="no-flattening"
        ),
        pytest.param(
            "a == 'b' || c == 'd' && e == 'f'", '(a == "b" || (c == "d" && e == "f"))', id="and-binds-tighter"
        ),
        pytest.param("!!has(a)", "has(a)", id="double-negation-folds"),
        pytest.param("!(!has(a))", "!!has(a)", id="negated-paren-does-not-fold"),
        pytest.param("a notin {'x'}", 'a not in {"x"}', id="notin"),
        pytest.param("a not\tin {'x'}", 'a not in {"x"}', id="not-tab-in"),
        pytest.param("a in {}", "a in {}", id="empty-set"),
        pytest.param("a in {'x',}", 'a in {"x"}', id="trailing-comma"),
        pytest.param("a == 'say \"hi\"'", "a == 'say \"hi\"'", id="double-quote-inside"),
        pytest.param("a in {'\"', \"'\"}", "a in {'\"', \"'\"}", id="quotes-per-item"),
        pytest.param("a in {'é', 'z', 'B'}", 'a in {"B", "z", "é"}', id="code-point-order"),
        pytest.param("!global()", "!global()", id="not-global"),
        pytest.param("\t", "all()", id="tab-is-blank"),
    ],
)
def test_calico_canonical_form_more(text: str, canonical: str) -> None:
    assert str(parse_calico_selector(text)) == canonical


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        pytest.param("a in {}", {"a": ""}, False, id="empty-set-matches-nothing"),
        pytest.param("a not in {}", {}, True, id="empty-not-in-matches-all"),
        pytest.param("a == ''", {"a": ""}, True, id="empty-value"),
        pytest.param("a == ''", {}, False, id="empty-value-needs-label"),
        pytest.param("a contains ''", {"a": "x"}, True, id="contains-empty"),
        pytest.param("!a contains 'x'", {}, True, id="negated-contains-absent"),
        pytest.param("a starts with 'x' || b ends with 'y'", {"b": "xy"}, True, id="or-of-affixes"),
        pytest.param("!all()", {}, False, id="not-all"),
        pytest.param("global() && a == 'b'", {"a": "b"}, True, id="global-matches-like-all"),
        pytest.param("calico/k8s_NS-.1/role == 'x'", {"calico/k8s_NS-.1/role": "x"}, True, id="label-chars"),
    ],
)
def test_calico_matches_more(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_calico_selector(text).matches(labels) is expected


def test_calico_selector_is_frozen_and_compares_by_structure() -> None:
    a = parse_calico_selector("a == 'b' && c in {'y', 'x'}")
    b = parse_calico_selector('(a=="b"&&c in {"x","y","x"})')
    assert a == b
    assert hash(a) == hash(b)
    assert a.unique_id() == b.unique_id()
    assert repr(a) == """CalicoSelector('(a == "b" && c in {"x", "y"})')"""
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.root = AllNode()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.root.operands = ()  # type: ignore[attr-defined]


def test_calico_ast_shape() -> None:
    sel = parse_calico_selector("!a == 'b' && (has(c) || d not in {'x'}) || global()")
    assert sel.root == OrNode(
        (
            AndNode(
                (
                    NotNode(LabelEqNode("a", "b")),
                    OrNode((HasNode("c"), LabelNotInSetNode("d", ("x",)))),
                )
            ),
            GlobalNode(),
        )
    )


@pytest.mark.parametrize(
    ("text", "is_global", "keys"),
    [
        pytest.param("", False, set(), id="empty"),
        pytest.param("global()", True, set(), id="global"),
        pytest.param("a == 'b' && !global()", True, {"a"}, id="nested-global"),
        pytest.param(
            "a == 'b' && (has(c) || !d in {'x'}) && e contains 'f' && g != 'h' && i not in {} "
            "&& j starts with 'k' && l ends with 'm'",
            False,
            {"a", "c", "d", "e", "g", "i", "j", "l"},
            id="every-kind",
        ),
    ],
)
def test_calico_is_global_and_label_keys(text: str, is_global: bool, keys: set[str]) -> None:
    sel = parse_calico_selector(text)
    assert sel.is_global is is_global
    assert sel.label_keys() == keys


def test_calico_prefix_keeps_global_and_all() -> None:
    sel = parse_calico_selector("global() || all() || has(a)").with_label_prefix("pcns.")
    assert str(sel) == "(global() || all() || has(pcns.a))"
    assert sel.label_keys() == {"pcns.a"}


def test_calico_unique_id_is_sha224_of_canonical_form() -> None:
    # "s:" + unpadded base64url of sha224("s:" + String()), checked against a vector in the file too.
    assert parse_calico_selector("").unique_id() == "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"


def test_calico_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(SelectorError):
        parse_calico_selector("(" * 5000 + "all()" + ")" * 5000)


# Generated selectors: the AST -> canonical text -> AST round trip is the identity for every tree the
# parser can produce (no '!' directly on '!', no one-operand && or ||), and matching agrees.

_KEYS = st.one_of(
    st.sampled_from(["a", "b", "k8s-app", "calico/k8s_ns", "contains", "in", "has", "all"]),
    st.from_regex(r"[A-Za-z0-9_./-]{1,10}", fullmatch=True),
)
_VALUES = st.one_of(
    st.sampled_from(["", "x", "ab", "a b", "'", '"', "é"]),
    st.text(alphabet="ab _-'\"{}()&|!=é", max_size=6).filter(lambda v: not ("'" in v and '"' in v)),
)
_LEAVES: st.SearchStrategy[SelectorNode] = st.one_of(
    st.just(AllNode()),
    st.just(GlobalNode()),
    st.builds(HasNode, _KEYS),
    *(st.builds(cls, _KEYS, _VALUES) for cls in (LabelEqNode, LabelNeNode, LabelContainsNode)),
    *(st.builds(cls, _KEYS, _VALUES) for cls in (LabelStartsWithNode, LabelEndsWithNode)),
    *(
        st.builds(cls, _KEYS, st.lists(_VALUES, max_size=4).map(tuple))
        for cls in (LabelInSetNode, LabelNotInSetNode)
    ),
)


def _extend(children: st.SearchStrategy[SelectorNode]) -> st.SearchStrategy[SelectorNode]:
    operands = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(
        children.filter(lambda n: not isinstance(n, NotNode)).map(NotNode),
        operands.map(AndNode),
        operands.map(OrNode),
    )


_NODES = st.recursive(_LEAVES, _extend, max_leaves=12)
_LABEL_MAPS = st.dictionaries(st.sampled_from(["a", "b", "k8s-app", "in"]), _VALUES, max_size=4)


@settings(max_examples=300, deadline=None)
@given(node=_NODES, labels=_LABEL_MAPS)
def test_calico_canonical_form_round_trips(node: SelectorNode, labels: dict[str, str]) -> None:
    sel = parse_calico_selector(str(node))
    assert sel.root == node
    assert str(parse_calico_selector(str(sel))) == str(sel)
    assert sel.matches(labels) == node.matches(labels)


@settings(max_examples=200, deadline=None)
@given(node=_NODES)
def test_calico_tokenizer_accepts_every_canonical_form(node: SelectorNode) -> None:
    tokens = tokenize_calico_selector(str(node))
    assert tokens[-1] == "EOF"


# ---------------------------------------------------------------------------------------------------
# Kubernetes LabelSelector


def test_k8s_nil_selects_nothing_and_empty_selects_everything() -> None:
    nil = K8sSelector.from_dict(None)
    empty = K8sSelector.from_dict({})
    assert nil == K8sSelector.nothing()
    assert empty == K8sSelector.everything()
    assert nil != empty
    for labels in ({}, {"app": "web"}):
        assert not nil.matches(labels)
        assert empty.matches(labels)
    assert empty.is_empty
    assert not nil.is_empty
    assert nil.is_nothing
    assert nil.to_dict() is None
    assert empty.to_dict() == {}
    assert K8sSelector.from_dict({"matchLabels": None, "matchExpressions": []}).is_empty


_WEB = {"app": "web", "tier": "front"}
_DB = {"app": "db"}
_BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("selector", "matching"),
    [
        pytest.param({"matchLabels": {"app": "web"}}, [_WEB], id="matchLabels"),
        pytest.param({"matchLabels": {"app": "web", "tier": "front"}}, [_WEB], id="matchLabels-two"),
        pytest.param({"matchLabels": {"app": "web", "tier": "back"}}, [], id="matchLabels-AND"),
        pytest.param(
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]},
            [_WEB, _DB],
            id="In",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
            [_DB, _BARE],
            id="NotIn-matches-absent",
        ),
        pytest.param({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, [_WEB], id="Exists"),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist", "values": []}]},
            [_DB, _BARE],
            id="DoesNotExist",
        ),
        pytest.param(
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["back"]}],
            },
            [_WEB],
            id="labels-AND-expressions",
        ),
    ],
)
def test_k8s_selector_matches(selector: dict[str, Any], matching: list[dict[str, str]]) -> None:
    sel = K8sSelector.from_dict(selector)
    calico = parse_calico_selector(sel.to_calico())
    for labels in (_WEB, _DB, _BARE):
        expected = labels in matching
        assert sel.matches(labels) is expected, labels
        assert calico.matches(labels) is expected, (sel.to_calico(), labels)
        assert sel.to_calico_selector().matches(labels) is expected
    assert K8sSelector.from_dict(sel.to_dict()) == sel


def test_k8s_to_calico_text_follows_conversion_go() -> None:
    sel = K8sSelector.from_dict(
        {
            "matchLabels": {"tier": "front", "app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zone", "operator": "NotIn", "values": ["h"]},
                {"key": "team", "operator": "Exists"},
                {"key": "debug", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel.to_calico() == (
        "app == 'web' && tier == 'front' && env in { 'prod', 'dev' } && zone not in { 'h' } "
        "&& has(team) && ! has(debug)"
    )
    assert sel.label_keys() == {"app", "tier", "env", "zone", "team", "debug"}
    assert str(sel) == "app=web,tier=front,env in (prod,dev),zone!=h,team,!debug"
    assert K8sSelector.everything().to_calico() == "all()"
    assert not parse_calico_selector(K8sSelector.nothing().to_calico()).matches({})


def test_k8s_equality_requirements() -> None:
    sel = K8sSelector.from_dict(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front"]},
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zone", "operator": "NotIn", "values": ["h"]},
                {"key": "team", "operator": "Exists"},
            ],
        }
    )
    assert sel.equality_requirements() == {"app": "web", "tier": "front"}
    assert K8sSelector.everything().equality_requirements() == {}


@pytest.mark.parametrize(
    ("selector", "problems"),
    [
        pytest.param(None, [], id="nil-is-valid"),
        pytest.param({}, [], id="empty-is-valid"),
        pytest.param(
            {"matchLabels": {"example.com/app": "web", "v": ""}}, [], id="prefixed-key-and-empty-value"
        ),
        pytest.param(["app"], [("", "must be a mapping")], id="not-a-mapping"),
        pytest.param({"matchLabel": {"a": "b"}}, [("matchLabel", "unknown field")], id="unknown-field"),
        pytest.param({"matchLabels": ["a"]}, [("matchLabels", "must be a mapping")], id="labels-not-mapping"),
        pytest.param({"matchLabels": {"v": 1}}, [("matchLabels[v]", "must be a string")], id="int-value"),
        pytest.param(
            {"matchLabels": {"-a": "b"}}, [("matchLabels[-a]", "invalid label key '-a'")], id="bad-key"
        ),
        pytest.param(
            {"matchLabels": {"a": "b c"}}, [("matchLabels[a]", "invalid label value 'b c'")], id="bad-value"
        ),
        pytest.param(
            {"matchExpressions": {"key": "a"}}, [("matchExpressions", "must be a list")], id="exprs-mapping"
        ),
        pytest.param(
            {
                "matchExpressions": [
                    {"key": "a", "operator": "Exists"},
                    {"key": "a", "operator": "in", "values": ["b"]},
                ]
            },
            [("matchExpressions[1].operator", "must be one of In, NotIn, Exists, DoesNotExist")],
            id="unknown-operator",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            [("matchExpressions[0].values", "must be non-empty when operator is In")],
            id="In-without-values",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "NotIn"}]},
            [("matchExpressions[0].values", "must be non-empty when operator is NotIn")],
            id="NotIn-without-values",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]},
            [("matchExpressions[0].values", "must be empty when operator is Exists")],
            id="Exists-with-values",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["b"]}]},
            [("matchExpressions[0].values", "must be empty when operator is DoesNotExist")],
            id="DoesNotExist-with-values",
        ),
        pytest.param(
            {"matchExpressions": [{"operator": "In", "values": ["b", 2, "-"]}]},
            [
                ("matchExpressions[0].key", "required"),
                ("matchExpressions[0].values[1]", "must be a string"),
                ("matchExpressions[0].values[2]", "invalid label value '-'"),
            ],
            id="every-problem-reported",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": "b"}]},
            [("matchExpressions[0].values", "must be a list of strings")],
            id="values-not-list",
        ),
        pytest.param(
            {"matchExpressions": ["a=b", {"key": "a", "op": "In"}]},
            [
                ("matchExpressions[0]", "must be a mapping"),
                ("matchExpressions[1].op", "unknown field"),
                ("matchExpressions[1].operator", "required"),
            ],
            id="item-shapes",
        ),
    ],
)
def test_validate_k8s_selector(selector: object, problems: list[tuple[str, str]]) -> None:
    found = validate_k8s_selector(selector)
    assert [path for path, _ in found] == [path for path, _ in problems], found
    for (_, message), (_, fragment) in zip(found, problems, strict=True):
        assert fragment in message


def test_k8s_from_dict_raises_with_every_problem() -> None:
    with pytest.raises(K8sSelectorError) as info:
        K8sSelector.from_dict({"matchLabels": {"a": 1}, "matchExpressions": [{"key": "b", "operator": "Is"}]})
    assert [path for path, _ in info.value.problems] == ["matchLabels[a]", "matchExpressions[0].operator"]
    assert "matchExpressions[0].operator: unsupported operator 'Is'" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        pytest.param("app", None, id="plain"),
        pytest.param("app.kubernetes.io/name", None, id="prefixed"),
        pytest.param("kubernetes.io/metadata.name", None, id="metadata-name"),
        pytest.param("A_b.c-9", None, id="mixed-chars"),
        pytest.param("x" * 63, None, id="63-chars"),
        pytest.param("x" * 64, "name part must be no more than 63 characters", id="64-chars"),
        pytest.param("", "name part must be non-empty", id="empty"),
        pytest.param("-a", "must start and end with an alphanumeric", id="leading-dash"),
        pytest.param("a_", "must start and end with an alphanumeric", id="trailing-underscore"),
        pytest.param("a b", "name part must consist of alphanumeric", id="space"),
        pytest.param("/a", "prefix part must be non-empty", id="empty-prefix"),
        pytest.param("a/", "name part must be non-empty", id="empty-name"),
        pytest.param(
            "Example.com/a", "prefix part must be a lowercase RFC 1123 subdomain", id="uppercase-prefix"
        ),
        pytest.param("a/b/c", "not 2 '/'", id="two-slashes"),
        pytest.param("a" * 254 + "/b", "prefix part must be no more than 253 characters", id="long-prefix"),
        pytest.param("é", "name part must consist of alphanumeric", id="non-ascii"),
    ],
)
def test_validate_label_key(key: str, fragment: str | None) -> None:
    message = validate_label_key(key)
    if fragment is None:
        assert message is None
    else:
        assert message is not None
        assert fragment in message


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("", None, id="empty"),
        pytest.param("web", None, id="plain"),
        pytest.param("v1.2_3-x", None, id="mixed-chars"),
        pytest.param("x" * 63, None, id="63-chars"),
        pytest.param("x" * 64, "must be no more than 63 characters", id="64-chars"),
        pytest.param("a/b", "must be empty or consist of alphanumeric", id="slash"),
        pytest.param("-a", "must start and end with an alphanumeric", id="leading-dash"),
        pytest.param("a\n", "must be empty or consist", id="trailing-newline"),
    ],
)
def test_validate_label_value(value: str, fragment: str | None) -> None:
    message = validate_label_value(value)
    if fragment is None:
        assert message is None
    else:
        assert message is not None
        assert fragment in message


# ---------------------------------------------------------------------------------------------------
# kubectl selector strings (--from app=web,tier!=db)


def _req(key: str, operator: Any, *values: str) -> K8sRequirement:
    return K8sRequirement(key, operator, values)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", K8sSelector.everything(), id="empty"),
        pytest.param("  ", K8sSelector.everything(), id="blank"),
        pytest.param("app=web", K8sSelector((("app", "web"),)), id="equals"),
        pytest.param("app==web", K8sSelector((("app", "web"),)), id="double-equals"),
        pytest.param("app=", K8sSelector((("app", ""),)), id="empty-value"),
        pytest.param("tier!=db", K8sSelector((), (_req("tier", "NotIn", "db"),)), id="not-equals"),
        pytest.param(
            "app=web,tier!=db",
            K8sSelector((("app", "web"),), (_req("tier", "NotIn", "db"),)),
            id="comma-is-and",
        ),
        pytest.param("env in (prod, dev)", K8sSelector((), (_req("env", "In", "prod", "dev"),)), id="in"),
        pytest.param("env notin (prod)", K8sSelector((), (_req("env", "NotIn", "prod"),)), id="notin"),
        pytest.param("env in ()", K8sSelector((), (_req("env", "In", ""),)), id="empty-set-is-empty-value"),
        pytest.param("env in (a,)", K8sSelector((), (_req("env", "In", "a", ""),)), id="trailing-comma"),
        pytest.param(
            "x in (in,notin)", K8sSelector((), (_req("x", "In", "in", "notin"),)), id="keywords-as-values"
        ),
        pytest.param("debug", K8sSelector((), (_req("debug", "Exists"),)), id="exists"),
        pytest.param("!debug", K8sSelector((), (_req("debug", "DoesNotExist"),)), id="does-not-exist"),
        pytest.param(
            " app = web ,\tapp.kubernetes.io/name=x ",
            K8sSelector((("app", "web"), ("app.kubernetes.io/name", "x"))),
            id="blanks-and-prefixed-key",
        ),
        pytest.param("a=1,a=2", K8sSelector((("a", "1"),), (_req("a", "In", "2"),)), id="repeated-key"),
    ],
)
def test_parse_label_selector_string(text: str, expected: K8sSelector) -> None:
    assert parse_label_selector_string(text) == expected


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        pytest.param("app=web,tier!=db", {"app": "web"}, True, id="not-equals-matches-absent"),
        pytest.param("app=web,tier!=db", {"app": "web", "tier": "db"}, False, id="not-equals"),
        pytest.param("app in (web,db),!debug", {"app": "db"}, True, id="in-and-not-exists"),
        pytest.param(
            "app in (web,db),!debug", {"app": "db", "debug": ""}, False, id="exists-with-empty-value"
        ),
        pytest.param("a=1,a=2", {"a": "1"}, False, id="contradiction"),
    ],
)
def test_label_selector_string_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector_string(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        pytest.param(
            "app=web,", 8, "expected a label key at position 8: end of selector", id="trailing-comma"
        ),
        pytest.param(",", 0, "expected a label key", id="lone-comma"),
        pytest.param(
            "a b", 2, "expected '=', '==', '!=', 'in', 'notin', ',' or end of selector", id="two-words"
        ),
        pytest.param("a in b", 5, "expected '(' to open a list of values", id="in-without-parens"),
        pytest.param(
            "a in (b", 7, "expected a value, ',' or ')' at position 7: end of selector", id="unclosed"
        ),
        pytest.param("a in (b c)", 8, "expected ',' or ')'", id="values-without-comma"),
        pytest.param("a>1", 1, "'<' and '>' have no LabelSelector equivalent", id="greater-than"),
        pytest.param("!", 1, "expected a label key", id="lone-bang"),
        pytest.param("!a=b", 2, "expected ',' or end of selector", id="bang-with-value"),
        pytest.param("a=b=c", 3, "expected ',' or end of selector", id="two-equals"),
        pytest.param("in=x", 0, "expected a label key", id="keyword-as-key"),
        pytest.param("a/b/c=1", 0, "expected a valid label key at position 0", id="bad-key"),
        pytest.param("app=-x", 4, "expected a valid label value at position 4: '-x'", id="bad-value"),
        pytest.param("a in (x,-y)", 8, "expected a valid label value", id="bad-set-value"),
    ],
)
def test_label_selector_string_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector_string(text)
    assert info.value.position == position
    assert info.value.selector == text
    assert fragment in str(info.value)


# Generated Kubernetes selectors: kubectl text and Calico text both mean the same selection.

_K8S_KEYS = st.sampled_from(["app", "tier", "app.kubernetes.io/name", "k8s-app", "a.b_c"])
_K8S_VALUES = st.from_regex(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,4})?[A-Za-z0-9])?", fullmatch=True)
_K8S_REQS = st.one_of(
    st.builds(
        K8sRequirement,
        _K8S_KEYS,
        st.sampled_from(["In", "NotIn"]),
        st.lists(_K8S_VALUES, min_size=1, max_size=3, unique=True).map(tuple),
    ),
    st.builds(K8sRequirement, _K8S_KEYS, st.sampled_from(["Exists", "DoesNotExist"])),
)
_K8S_SELECTORS = st.builds(
    K8sSelector,
    st.dictionaries(_K8S_KEYS, _K8S_VALUES, max_size=2).map(lambda d: tuple(d.items())),
    st.lists(_K8S_REQS, max_size=3).map(tuple),
)
_K8S_LABELS = st.dictionaries(
    _K8S_KEYS, st.one_of(st.sampled_from(["", "a", "web"]), _K8S_VALUES), max_size=4
)


@settings(max_examples=300, deadline=None)
@given(sel=_K8S_SELECTORS, labels=_K8S_LABELS)
def test_k8s_selector_text_forms_agree(sel: K8sSelector, labels: dict[str, str]) -> None:
    expected = sel.matches(labels)
    assert parse_calico_selector(sel.to_calico()).matches(labels) is expected
    assert parse_label_selector_string(str(sel)) == sel
    assert K8sSelector.from_dict(sel.to_dict()) == sel
    assert validate_k8s_selector(sel.to_dict()) == []


def test_k8s_selector_repr() -> None:
    assert repr(parse_label_selector_string("app=web,!debug")) == "K8sSelector('app=web,!debug')"
    assert repr(K8sSelector.nothing()) == "K8sSelector.nothing()"
    assert isinstance(K8sSelector.everything().to_calico_selector(), CalicoSelector)
