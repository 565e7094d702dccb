"""Where protocol/ defends itself, found in its source, and a way to take one defence out.

``sites()`` reads every module of protocol/ and lists each place that builds a
``RemoteProtocolError`` (a check that cuts a peer off) or a refusal (a
``TransferFailed``, a ``DisperseReject`` or a ``_reject``), keyed by what it is and
the function it sits in -- ``premature-stored@Dispersal.on_stored`` -- so that a key
survives a function moving to another module.  A second site of the same key in one
function is ``...#2``.

``remove_check(monkeypatch, key)`` takes one ``if ...: raise RemoteProtocolError(...)``
out for the length of a test: it recompiles the function holding it with the ``if``'s
test made ``False`` and patches it in, so the protocol's code is never edited.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

_TREE = Path(__file__).resolve().parents[2]
# A mutation run (bench/mutation.py) runs this file from mutmut's copy of the tree, mutants/,
# whose protocol/ is rewritten into trampolines with every mutant beside the original: the
# checks are read from the real source, and no check can be taken out of a trampoline.
UNDER_MUTMUT = _TREE.name == "mutants"
PROTOCOL = (_TREE.parent if UNDER_MUTMUT else _TREE) / "protocol"
REFUSALS = ("TransferFailed", "DisperseReject", "_reject")


@dataclass(frozen=True)
class Site:
    key: str  # "<code>@<Class.function>" or "refuse:<callee>@<Class.function>", "#n" on repeats
    module: str  # e.g. "protocol.dispersal"
    qualname: str
    line: int
    guarded: bool  # the raise is the body of an ``if``: remove_check can take it out


def _callee(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _code(call: ast.Call) -> str:
    for keyword in call.keywords:
        if keyword.arg == "code":
            value = keyword.value
            return value.value if isinstance(value, ast.Constant) else "<passed-on>"
    return "protocol"


class _Finder(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.found: list[Site] = []
        self.counts: dict[str, int] = {}
        self.guarded_calls: set[int] = set()  # id() of calls raised as an if's whole body

    def _named(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _named

    def visit_If(self, node: ast.If) -> None:
        last = node.body[-1]
        if isinstance(last, ast.Raise) and isinstance(last.exc, ast.Call):
            self.guarded_calls.add(id(last.exc))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _callee(node)
        qualname = ".".join(self.scope) or "<module>"
        key = None
        if name == "RemoteProtocolError":
            key = f"{_code(node)}@{qualname}"
        elif name in REFUSALS:
            key = f"refuse:{name}@{qualname}"
        if key is not None:
            n = self.counts.get(key, 0) + 1
            self.counts[key] = n
            self.found.append(
                Site(
                    key if n == 1 else f"{key}#{n}",
                    self.module,
                    qualname,
                    node.lineno,
                    id(node) in self.guarded_calls,
                )
            )
        self.generic_visit(node)


def sites() -> dict[str, Site]:
    """Every check and refusal site in protocol/, by key."""
    out: dict[str, Site] = {}
    # Every module, in sub-packages too: a conversation split into a package of machines
    # (issue 15) must not take its checks out of the table unseen.
    for path in sorted(PROTOCOL.rglob("*.py")):
        dotted = ".".join(path.relative_to(PROTOCOL.parent).with_suffix("").parts)
        finder = _Finder(dotted.removesuffix(".__init__"))
        finder.visit(ast.parse(path.read_text(), str(path)))
        for site in finder.found:
            assert site.key not in out, f"{site.key} found twice ({out[site.key]}, {site})"
            out[site.key] = site
    return out


class _Unguard(ast.NodeTransformer):
    def __init__(self, line: int) -> None:
        self.line = line
        self.done = False

    def visit_If(self, node: ast.If) -> ast.AST:
        self.generic_visit(node)
        last = node.body[-1]
        if (
            isinstance(last, ast.Raise)
            and isinstance(last.exc, ast.Call)
            and last.exc.lineno == self.line
        ):
            node.test = ast.copy_location(ast.Constant(False), node.test)
            self.done = True
        return node


def remove_check(monkeypatch: pytest.MonkeyPatch, key: str) -> Site:
    """Take the ``if`` guarding check ``key`` out of its function for this test."""
    if UNDER_MUTMUT:
        pytest.skip("a mutation run: protocol/ is mutmut's trampolines, not the source")
    site = sites()[key]
    assert site.guarded, f"{key} is not an `if ...: raise` a test can take out"
    module = importlib.import_module(site.module)
    path = Path(module.__file__ or "")
    tree = ast.parse(path.read_text(), str(path))
    *outer, name = site.qualname.split(".")
    holder: ast.AST = tree
    for part in outer:
        holder = next(
            n for n in ast.iter_child_nodes(holder) if isinstance(n, ast.ClassDef) and n.name == part
        )
    func = next(
        n
        for n in ast.iter_child_nodes(holder)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
    )
    unguard = _Unguard(site.line)
    unguard.visit(func)
    assert unguard.done, f"no `if` guards {key} at line {site.line}"
    func.decorator_list = []
    code = compile(
        ast.fix_missing_locations(ast.Module(body=[func], type_ignores=[])),
        str(path),
        "exec",
        flags=__import__("__future__").annotations.compiler_flag,
        dont_inherit=True,
    )
    scope: dict[str, object] = {}
    exec(code, vars(module), scope)  # the module's own globals: it runs as it would
    target: object = module
    for part in outer:
        target = getattr(target, part)
    monkeypatch.setattr(target, name, scope[name])
    return site
