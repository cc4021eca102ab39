"""The dependency rule (GUIDE.md): `federation/` is a pure protocol library.

It may import the standard library (minus anything that does I/O) and the crypto/JSON
libraries named in the brief; never aiohttp, asyncpg or `homeserver`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FEDERATION = ROOT / "federation"

# PyNaCl (libsodium) is signedjson's own ed25519 library; federation/signing.py signs and
# verifies with it (faster than cryptography, releases the GIL, one library loaded at run time).
ALLOWED_THIRD_PARTY = {"canonicaljson", "signedjson", "cryptography", "nacl", "federation"}
# Standard-library modules that would let the pure core touch the network, disk or clock
# of the event loop.
FORBIDDEN_STDLIB = {
    "asyncio",
    "socket",
    "ssl",
    "subprocess",
    "http",
    "urllib",
    "sqlite3",
    "threading",
    "multiprocessing",
    "shutil",
    "tempfile",
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


FEDERATION_MODULES = sorted(FEDERATION.rglob("*.py"))


def test_federation_package_has_modules() -> None:
    assert len(FEDERATION_MODULES) > 10


@pytest.mark.parametrize("path", FEDERATION_MODULES, ids=lambda p: p.name)
def test_federation_module_imports_only_pure_dependencies(path: Path) -> None:
    roots = _imported_roots(path) - {"__future__"}
    stdlib = {root for root in roots if root in sys.stdlib_module_names}
    third_party = roots - stdlib
    assert not (stdlib & FORBIDDEN_STDLIB), f"{path.name} imports I/O modules"
    assert third_party <= ALLOWED_THIRD_PARTY, f"{path.name} imports {third_party}"


def test_the_rule_detects_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom aiohttp import web\nfrom homeserver.app import x\n")
    assert _imported_roots(bad) == {"os", "aiohttp", "homeserver"}
