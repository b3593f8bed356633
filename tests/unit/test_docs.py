"""The documentation site stays true to the code (docs/about.md, "How the pages stay true").

* Every ``docs/….md`` reference in the code, the tests, the examples, the benchmarks and the README names a
  page that exists, and a heading (or an explicit ``{ #id }``) of that page when it gives an anchor.
* Nothing cites the reference documents the project started from, which are not in the repository.
* Every ``troth serve`` option has help text and an environment variable and is in the README's option
  table; every client command option has help text; every environment variable the package reads is on
  the configuration page. (The pages themselves render these tables from the code at build time.)

``make docs`` (a prerequisite of ``make test``) builds the site with warnings as errors, which checks the
links between pages; this test checks the references from outside the site, which MkDocs cannot see.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from functools import cache
from pathlib import Path
from types import ModuleType

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCANNED = ("src", "tests", "examples", "benchmarks", "docs")
SCANNED_FILES = ("README.md", "Makefile", "mkdocs.yml", "pyproject.toml")
SKIPPED = {"__pycache__", "node_modules", ".hypothesis", "build", "dist"}
SUFFIXES = {".py", ".md", ".yml", ".yaml", ".toml", ".txt", ".js", ".mjs", ".json", ".ini", ".cfg", ""}

REFERENCE = re.compile(r"docs/[A-Za-z0-9_./-]+?\.md(?:#[A-Za-z0-9_-]+)?")
# The documents the project started from live outside the repository; nothing may cite them. The names are
# assembled here so that this file does not match its own pattern.
_GONE = ("PROTOCOL", "SDK", "EXAMPLES", "DESIGN", "CLIENTS", "TRAFFIC")
OUTSIDE = re.compile(r"\b(?:" + "|".join(_GONE) + r")\.md\b")

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.MULTILINE)
EXPLICIT_ID = re.compile(r"\{\s*[^}]*?#([A-Za-z0-9_-]+)[^}]*\}")
HTML_ID = re.compile(r"""\bid=["']([A-Za-z0-9_-]+)["']""")
INCLUDE = re.compile(r"""include-markdown\s+"([^"]+)\"""")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def _files() -> list[Path]:
    found = [ROOT / name for name in SCANNED_FILES if (ROOT / name).exists()]
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            generated = any(part in SKIPPED or part.endswith(".egg-info") for part in path.parts)
            if path.is_file() and path.suffix in SUFFIXES and not generated:
                found.append(path)
    return found


def _slug(text: str) -> str:
    """Python-Markdown's default ``toc`` slug of a heading's text (markup removed first)."""
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


@cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors MkDocs gives a page: heading slugs (deduplicated as ``toc`` does) and explicit ids."""
    text = page.read_text(encoding="utf-8")
    for include in INCLUDE.findall(text):
        text += "\n" + (page.parent / include).resolve().read_text(encoding="utf-8")
    text = FENCE.sub("", text)
    found: set[str] = set(HTML_ID.findall(text))
    for _, title in HEADING.findall(text):
        explicit = EXPLICIT_ID.search(title)
        if explicit:
            found.add(explicit.group(1))
            continue
        slug = base = _slug(title)
        n = 0
        while slug in found:
            n += 1
            slug = f"{base}_{n}"
        found.add(slug)
    found.update(EXPLICIT_ID.findall(text))
    return frozenset(found)


def test_anchor_rules_match_mkdocs() -> None:
    page = DOCS / "protocol" / "requests.md"
    assert "promise-create" in anchors(page)  # explicit { #id }
    assert _slug("`task.create` on an existing promise") == "taskcreate-on-an-existing-promise"
    assert _slug("The no-rerun check") == "the-no-rerun-check"


def test_every_docs_reference_resolves() -> None:
    broken: list[str] = []
    count = 0
    for path in _files():
        if path.is_relative_to(DOCS):
            continue  # links between pages are checked by the strict MkDocs build
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in REFERENCE.finditer(text):
            count += 1
            ref = match.group(0)
            target, _, anchor = ref.partition("#")
            page = ROOT / target
            where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            if not page.is_file():
                broken.append(f"{where}: {ref} (no such page)")
            elif anchor and anchor not in anchors(page):
                broken.append(f"{where}: {ref} (no heading with that anchor)")
    assert count > 0
    assert not broken, "references to docs pages that do not exist:\n" + "\n".join(broken)


def test_nothing_cites_documents_outside_the_repository() -> None:
    cited = []
    for path in _files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in OUTSIDE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            cited.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)}")
    assert not cited, "cite a docs/ page instead of:\n" + "\n".join(cited)


# ----------------------------------------------------------------------------------- generated references


@cache
def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("troth_docs_hook", DOCS / "_hooks" / "generated.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _serve() -> click.Command:
    from troth.cli import cli

    return cli.commands["serve"]


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]


def test_every_serve_option_is_documented() -> None:
    table = hook().render("serve-options")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for option in _options(_serve()):
        flag = max(option.opts, key=len)
        assert option.help, f"troth serve {flag} has no help text"
        assert option.envvar, f"troth serve {flag} has no environment variable"
        assert f"`{flag}`" in table and f"`{option.envvar}`" in table
        assert f"`{flag}`" in readme, f"the README's option table lacks troth serve {flag}"
    assert "<!-- troth-cli: serve-options -->" in (DOCS / "operations" / "configuration.md").read_text()


def test_every_client_option_has_help() -> None:
    missing = [
        f"troth {' '.join(path)} {max(option.opts, key=len)}"
        for path, command in hook().client_commands()
        for option in _options(command)
        if not option.help
    ]
    assert not missing, "options without help text: " + ", ".join(missing)
    rendered = hook().render("commands")
    for path, _ in hook().client_commands():
        assert f"`troth {' '.join(path)}`" in rendered


def test_every_command_has_an_example() -> None:
    from troth.cli import cli

    commands = [*hook().client_commands(), (["serve"], cli.commands["serve"]), (["dev"], cli.commands["dev"])]
    missing = [" ".join(path) for path, command in commands if not hook().example(command)]
    assert not missing, "commands without an example in their help: " + ", ".join(missing)
    for path, command in commands:
        assert hook().example(command).startswith(f"troth {' '.join(path)}"), path


@pytest.mark.parametrize("marker", ["serve-options", "global-options", "commands", "metrics"])
def test_every_marker_renders(marker: str) -> None:
    out = hook().render(marker)
    assert out.startswith(("| ", "### ")), out[:80]
    assert "Sentinel" not in out


def _read_env_vars() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src" / "troth").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names.update(f"TROTH_{n}" for n in re.findall(r"""\b_env\(\s*["']([A-Z0-9_]+)["']""", text))
        names.update(re.findall(r"""["'](TROTH_[A-Z0-9_]+)["']""", text))
    return names


def test_every_environment_variable_is_documented() -> None:
    page = (DOCS / "operations" / "configuration.md").read_text(encoding="utf-8")
    page += hook().render("serve-options") + hook().render("global-options")
    names = _read_env_vars()
    assert {"TROTH_URL", "TROTH_TOKEN", "TROTH_PORT"} <= names
    missing = sorted(n for n in names if n not in page)
    assert not missing, "environment variables not on docs/operations/configuration.md: " + ", ".join(missing)
