"""The house rules ruff and import-linter cannot check, read from the source of ``swarm_tui`` (CONTRIBUTING.md,
"Limits the tests enforce"). Each test lists every finding as ``file:line: what`` so a failure says where to look.

The checks read the files (grimp reads them too); only the check of library privates through ``self`` imports the
modules that subclass something, to ask the class's MRO whose a name is. Nothing is written to the checkout.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import re
import tokenize
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import grimp

from tests.support.env import ROOT

PACKAGE = ROOT / "swarm_tui"
MAX_LINES = 450
MAX_LOOSE_ENGINE_MODULES = 10
# The one adapter module per library that may touch its private names (each library is pinned and covered by a
# test that fails when the library moves).
PRIVATE_ADAPTERS = {
    "swarm_tui/tui/driver.py",  # Textual
    "swarm_tui/engine/bus/nats_compat.py",  # nats-py
    "swarm_tui/engine/logs.py",  # the standard library's RotatingFileHandler._open (the log file made 0600)
}
BROAD = {"Exception", "BaseException"}


@dataclass
class Source:
    path: Path
    text: str
    tree: ast.Module
    comments: dict[int, str] = field(default_factory=dict)

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    def at(self, line: int) -> str:
        return f"{self.rel}:{line}"


@cache
def sources() -> tuple[Source, ...]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        comments = {
            tok.start[0]: tok.string
            for tok in tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type == tokenize.COMMENT
        }
        out.append(Source(path, text, ast.parse(text, filename=str(path)), comments))
    return tuple(out)


def report(what: str, findings: list[str]) -> str:
    return f"{len(findings)} {what}:\n  " + "\n  ".join(findings)


# -- (a) broad catches carry their why ------------------------------------------------------------------------------

NOQA = re.compile(r"noqa(?::\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?", re.IGNORECASE)
PRAGMAS = re.compile(r"type:\s*ignore(?:\[[^\]]*\])?|pragma:\s*no\s*cover", re.IGNORECASE)


def says_why(comment: str) -> bool:
    """A comment with words of its own: ``# noqa: BLE001 - the loop lives on`` or ``# the file may be gone``;
    a bare ``# noqa: BLE001`` is not a why."""
    rest = PRAGMAS.sub("", NOQA.sub("", comment.lstrip("#")))
    return re.search(r"[A-Za-z]{3,}", rest) is not None


def type_names(node: ast.expr | None) -> set[str]:
    if isinstance(node, ast.Tuple):
        return set().union(*(type_names(e) for e in node.elts))
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    return set()


def call_name(node: ast.Call) -> str:
    fn = node.func
    if isinstance(fn, ast.Attribute):
        return fn.attr
    if isinstance(fn, ast.Name):
        return fn.id
    return ""


def broad_catches(src: Source) -> Iterator[tuple[int, int, str]]:
    """(first line, last line, what) of every handler or suppress() that catches Exception or BaseException."""
    for node in ast.walk(src.tree):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            broad = type_names(node.type) & BROAD
            if broad:
                yield node.lineno, node.type.end_lineno or node.lineno, f"except {ast.unparse(node.type)}"
        elif isinstance(node, ast.Call) and call_name(node) == "suppress":
            if set().union(*(type_names(a) for a in node.args)) & BROAD:
                yield node.lineno, node.end_lineno or node.lineno, ast.unparse(node)


def test_every_broad_catch_says_why_on_its_line() -> None:
    """``except Exception``/``BaseException`` (alone or in a tuple) and ``suppress(Exception|BaseException)``
    carry a one-line why: ``# noqa: BLE001 - <why>`` on an except line, ``# <why>`` on a suppress."""
    findings = []
    for src in sources():
        for first, last, what in broad_catches(src):
            said = [src.comments[n] for n in range(first, last + 1) if n in src.comments]
            if not any(says_why(c) for c in said):
                findings.append((src.rel, first, f"{src.at(first)}: {what}  {' '.join(said) or '(no comment)'}"))
    assert not findings, report("broad catches without a why on their line", [f for _, _, f in sorted(findings)])


# -- (b) no private reaches -----------------------------------------------------------------------------------------


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_private_names(tree: ast.Module) -> set[str]:
    """The ``_names`` this module defines: its functions, classes, class attributes, methods and the attributes
    its methods set on ``self``/``cls``. ``other._x`` with such a name is the module's own object (``other`` of
    the same class, an instance made here), not a reach into someone else's."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {n for n in names if private(n)}


def private_reaches(src: Source) -> Iterator[tuple[int, str]]:
    own = own_private_names(src.tree)
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if node.attr in own:
                continue
            yield node.lineno, ast.unparse(node)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and private(node.args[1].value)
        ):
            yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if any(private(p) for p in parts) or any(private(a.name) for a in node.names):
                yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.Import):
            if any(private(p) for a in node.names for p in a.name.split(".")):
                yield node.lineno, ast.unparse(node)


def test_no_private_reach_outside_the_adapters() -> None:
    """No ``x._name`` on another object, no ``getattr(x, "_name")``, no import of a private module or name:
    a library's privates are touched only in its adapter (``tui/driver.py``, ``bus/nats_compat.py``), and our
    own modules offer what another module needs under a public name."""
    findings = sorted(
        {
            (src.rel, line, f"{src.at(line)}: {what}")
            for src in sources()
            if src.rel not in PRIVATE_ADAPTERS
            for line, what in private_reaches(src)
        }
    )
    assert not findings, report("private reaches outside the adapter modules", [f for _, _, f in findings])


def module_name(src: Source) -> str:
    return ".".join(src.path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def library_bases(cls: type) -> list[type]:
    return [
        k
        for k in cls.__mro__[1:]
        if not k.__module__.startswith("swarm_tui") and k.__module__ not in ("builtins", "typing", "abc")
    ]


def library_uses(libs: list[type], name: str) -> bool:
    """The library's classes define ``name`` or set it on their instances (``self.<name>`` in their source)."""
    for k in libs:
        if name in vars(k):
            return True
        try:
            if f"self.{name}" in inspect.getsource(k):
                return True
        except (OSError, TypeError):  # a class without Python source (a builtin, a C extension)
            continue
    return False


def library_privates_through_self(src: Source) -> Iterator[tuple[int, str]]:
    """In a class of ours that subclasses a library class: a method that overrides the library's private one,
    and ``self._name`` where ``_name`` is the library's and not ours (checked against the class's MRO, so a
    private attribute of our own is never reported)."""
    if src.path.name == "__main__.py" or not any(isinstance(n, ast.ClassDef) and n.bases for n in ast.walk(src.tree)):
        return  # running __main__ would start the CLI; a module without a subclass has nothing to check
    module = importlib.import_module(module_name(src))
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(module, node.name, None)
        if not inspect.isclass(cls) or not (libs := library_bases(cls)):
            continue
        own = {n for k in cls.__mro__ if k.__module__.startswith("swarm_tui") for n in vars(k)}
        own -= {n for k in libs for n in vars(k)}
        assigned = {
            n.attr
            for n in ast.walk(node)
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name)
        }
        lib = f"{libs[0].__module__}.{libs[0].__name__}"
        for n in ast.walk(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and private(n.name):
                if any(n.name in vars(k) for k in libs):
                    yield n.lineno, f"{node.name}.{n.name}() overrides {lib}'s private {n.name}()"
            elif (
                isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id == "self"
                and private(n.attr)
                and n.attr not in own
                and library_uses(libs, n.attr)
                and (n.attr not in assigned or any(n.attr in vars(k) for k in libs) or isinstance(n.ctx, ast.Store))
            ):
                yield n.lineno, f"{node.name}: self.{n.attr} is {lib}'s private"


def test_no_library_private_through_self() -> None:
    """Subclassing a library class is public use; overriding or touching its private names is a reach, allowed
    only in the adapter modules. Imports the modules (the MRO says whose a name is)."""
    findings = sorted(
        {
            (src.rel, line, f"{src.at(line)}: {what}")
            for src in sources()
            if src.rel not in PRIVATE_ADAPTERS
            for line, what in library_privates_through_self(src)
        }
    )
    assert not findings, report("library privates reached through self", [f for _, _, f in findings])


# -- (c), (d), (f) sizes and packages -------------------------------------------------------------------------------


def test_no_module_over_the_limit() -> None:
    findings = [f"{src.at(1)}: {n} lines" for src in sources() if (n := len(src.text.splitlines())) > MAX_LINES]
    assert not findings, report(f"modules over {MAX_LINES} lines (split by what the parts do)", findings)


def test_few_loose_modules_at_the_engines_top() -> None:
    loose = sorted(p.name for p in (PACKAGE / "engine").glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_LOOSE_ENGINE_MODULES, (
        f"{len(loose)} modules directly in swarm_tui/engine/ (at most {MAX_LOOSE_ENGINE_MODULES}; "
        f"group them in a package): {', '.join(loose)}"
    )


def is_version_constant(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Assign)
        and [ast.unparse(t) for t in stmt.targets] == ["__version__"]
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def test_every_engine_part_is_in_the_layers() -> None:
    """A module or package directly in ``engine/`` that the ``engine-layers`` contract does not name is held by no
    layer rule at all (import-linter says nothing about it). ``logs`` stays outside: every layer may log."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "engine-layers")
    named = {part.strip() for layer in contract["layers"] for part in re.split(r"[|:]", layer)}
    parts = {p.stem for p in (PACKAGE / "engine").glob("*.py") if p.name != "__init__.py"}
    parts |= {p.parent.name for p in (PACKAGE / "engine").glob("*/__init__.py")}
    missing = sorted(parts - named - {"logs"})
    assert not missing, f"engine parts in no layer of engine-layers (pyproject.toml): {', '.join(missing)}"


def test_every_init_is_empty() -> None:
    """A package's ``__init__.py`` holds at most a docstring: no re-exports (they would load a heavy module with
    a light one, e.g. nats with ``bus.ids``), no code run on import. The one exception is the package's own
    ``__version__ = "<literal>"`` in ``swarm_tui/__init__.py``: a constant, the conventional place for it, read by
    ``--version``, ``status`` and the User-Agent; it imports nothing."""
    findings = []
    for src in sources():
        if src.path.name != "__init__.py":
            continue
        body = src.tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        if src.rel == "swarm_tui/__init__.py":
            body = [stmt for stmt in body if not is_version_constant(stmt)]
        findings += [f"{src.at(stmt.lineno)}: {ast.unparse(stmt).splitlines()[0]}" for stmt in body]
    assert not findings, report("statements in __init__.py files", findings)


# -- (e) no import circles ------------------------------------------------------------------------------------------


def strongly_connected(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module, iterative (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(nodes):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def module_file(module: str) -> str:
    path = ROOT.joinpath(*module.split("."))
    return (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(ROOT).as_posix()


def test_no_import_circles() -> None:
    """Every import counts: top-level, under ``if TYPE_CHECKING:`` and inside functions (a circle through a
    type-only import is still two modules that cannot be read apart; use a small Protocol in the lower one)."""
    graph = grimp.build_graph("swarm_tui", include_external_packages=False, cache_dir=None)
    nodes = set(graph.modules)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in nodes}
    findings = []
    for circle in strongly_connected(nodes, edges):
        inside = set(circle)
        lines = [
            f"{module_file(m)}:{d['line_number']} -> {t}"
            for m in circle
            for t in sorted(edges[m] & inside)
            for d in graph.get_import_details(importer=m, imported=t)
        ]
        findings.append(f"circle of {len(circle)}: {', '.join(circle)}\n    " + "\n    ".join(lines))
    assert not findings, report("import circles among swarm_tui modules", findings)


# -- (g) named tasks ------------------------------------------------------------------------------------------------


def test_every_task_has_a_name() -> None:
    """A task's name is what a debugger, ``asyncio.all_tasks()`` and a test see (``events-flow-control``);
    ``ensure_future`` takes no name, so it becomes ``create_task(..., name=...)``."""
    findings = [
        f"{src.at(node.lineno)}: {ast.unparse(node)[:100]}"
        for src in sources()
        for node in ast.walk(src.tree)
        if isinstance(node, ast.Call)
        and call_name(node) in ("create_task", "ensure_future")
        and not any(k.arg == "name" for k in node.keywords)
    ]
    assert not findings, report("tasks started without name=", findings)


# -- (h) no wait_for ------------------------------------------------------------------------------------------------


def test_no_wait_for() -> None:
    """On Python 3.11 ``asyncio.wait_for`` drops a cancel that lands as the awaited thing completes (gh-86296): a
    cancelled worker read its whole stream on. ``lifecycle.within`` is the bounded await that keeps the cancel."""
    findings = [
        f"{src.at(node.lineno)}: {ast.unparse(node)[:100]}"
        for src in sources()
        for node in ast.walk(src.tree)
        if isinstance(node, ast.Call) and call_name(node) == "wait_for"
    ]
    assert not findings, report("asyncio.wait_for (use lifecycle.within)", findings)
