"""The SDK's layers import one way (docs/design/architecture.md#data-flow): client → runtime (the worker)
→ replay → context, each through a small interface, never back; ``protocol`` imports nothing else of troth;
the test kit (``troth.testing``) uses only the public surface of the modules it drives (their documented
hooks: ``Troth.worker``, ``Troth.kill``, ``Worker.observer``, ``Harness.new_worker(transport=…)``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "troth"


def private_names(path: Path) -> set[str]:
    """The underscore names ``path`` defines: module-level names, and the attributes and methods of its
    classes (``self._x = …``, ``def _x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant))
    return {n for n in names if isinstance(n, str) and n.startswith("_") and not n.startswith("__")}


def reached_into(path: Path, module: Path) -> list[str]:
    """``x._name`` in ``path`` (``x`` not ``self``/``cls``) where ``_name`` is a private name of a module of
    troth other than ``module`` (the one ``path`` is) and not one of ``path``'s own."""
    own = private_names(path)
    others: set[str] = set()
    for other in SRC.rglob("*.py"):
        if other != module:
            others |= private_names(other)
    return [
        f"{path.name}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr in others - own
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]


def imported(path: Path) -> set[str]:
    """Every ``troth.…`` module ``path`` imports, at any level (``TYPE_CHECKING`` blocks included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("troth"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("troth"))
    return names


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        (
            "sdk/context.py",
            ("troth.sdk.runtime", "troth.sdk.replay", "troth.sdk.client", "troth.sdk.transport"),
        ),
        ("sdk/replay.py", ("troth.sdk.runtime", "troth.sdk.client", "troth.sdk.transport")),
        ("sdk/runtime.py", ("troth.sdk.client",)),
    ],
)
def test_sdk_layers_import_one_way(module: str, forbidden: tuple[str, ...]) -> None:
    bad = sorted(name for name in imported(SRC / module) if name.startswith(forbidden))
    assert bad == [], f"{module} imports {bad}"


def test_no_private_names_cross_sdk_modules() -> None:
    """A module of the SDK imports no underscore name from another (``_Blocked`` once crossed)."""
    for path in sorted((SRC / "sdk").glob("*.py")):
        private = sorted(
            name
            for name in imported(path)
            if name.rsplit(".", 1)[-1].startswith("_") and not name.rsplit(".", 1)[-1].startswith("__")
        )
        assert private == [], f"{path.name} imports {private}"


def test_protocol_imports_nothing_else_of_troth() -> None:
    for path in sorted((SRC / "protocol").glob("*.py")):
        outside = sorted(n for n in imported(path) if not n.startswith("troth.protocol"))
        assert outside == [], f"protocol/{path.name} imports {outside}"


def test_the_test_kit_uses_public_hooks_only() -> None:
    """``troth.testing`` counts bodies, wraps transports and kills workers through public hooks, never
    through another module's private fields (it once reached into ``troth._worker._held`` and friends)."""
    path = SRC / "testing.py"
    private = sorted(name for name in imported(path) if name.rsplit(".", 1)[-1].startswith("_"))
    assert private == [], f"testing.py imports {private}"
    assert reached_into(path, path) == []


def test_the_private_field_check_sees_a_reach_in(tmp_path: Path) -> None:
    """The check above is not vacuous: code like the test kit's old ``_kill`` is caught."""
    sample = SRC / "testing.py"
    bad = tmp_path / "testing.py"
    bad.write_text(sample.read_text() + "\n\ndef _kill(troth):\n    troth._worker._held.clear()\n")
    found = reached_into(bad, sample)
    assert [line.split(": ", 1)[1] for line in found] == ["troth._worker._held", "troth._worker"], found
