"""The SDK's layers import one way (docs/design/architecture.md#data-flow): client → runtime (the worker)
→ replay → context, each through a small interface, never back; ``protocol`` imports nothing else of troth.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "troth"


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
