"""The package layout's rule of direction: the core imports no domain, estimators import no domain, and no
domain imports another (lazy imports inside functions included)."""

import ast
from pathlib import Path

import popstore

ROOT = Path(popstore.__file__).parent
DOMAINS = ("pulsars", "galaxy", "kilonova", "camels")


def layer(module: str) -> str:
    """'core', 'estimators' or a domain name, for a dotted popstore module name."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in DOMAINS + ("estimators",):
        return parts[1]
    return "core"


def popstore_imports(path: Path) -> set[str]:
    """Every popstore module that ``path`` imports, at any depth of the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "popstore"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "popstore":
            out.add(node.module)
            if node.module == "popstore":  # from popstore import pulsars
                out |= {f"popstore.{a.name}" for a in node.names}
    return out


def violations() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(("popstore", *path.relative_to(ROOT).with_suffix("").parts))
        src = layer(module)
        for target in popstore_imports(path):
            dst = layer(target)
            if dst in DOMAINS and dst != src:
                bad.append(f"{module} ({src}) imports {target} ({dst})")
    return bad


def test_no_import_points_into_another_domain():
    assert violations() == []


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    """The rule above can fail: a core module that imports a domain is reported."""
    fake = tmp_path / "popstore"
    (fake / "pulsars").mkdir(parents=True)
    (fake / "store.py").write_text("def f():\n    from popstore.pulsars.dm import DMGrid\n")
    (fake / "pulsars" / "cli.py").write_text("from popstore import kilonova\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    assert violations() == ["popstore.pulsars.cli (pulsars) imports popstore.kilonova (kilonova)",
                            "popstore.store (core) imports popstore.pulsars.dm (pulsars)"]


def test_every_domain_is_a_package_with_its_own_commands():
    for d in DOMAINS:
        assert (ROOT / d / "__init__.py").exists() and (ROOT / d / "cli.py").exists(), d
