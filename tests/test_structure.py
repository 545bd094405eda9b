"""The shape of the code: no import cycle inside brittle/, errors in a leaf module, one definition
per function name, one padding rule, root scripts kept to script logic."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "brittle"
SCRIPT_CONVENTIONS = {"main", "build_parser", "body"}   # every root script has these


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _brittle_imports(path: Path) -> set[str]:
    """Every brittle module a file imports, at module level or inside a function."""
    found = set()
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("brittle")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brittle"):
            for alias in node.names:   # "from brittle import cli" names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def test_no_import_cycle_in_the_package():
    graph = {_module_name(p): _brittle_imports(p) for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph:
                continue
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, nxt])
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_errors_is_a_leaf_and_light():
    assert _brittle_imports(PACKAGE / "errors.py") == set()
    for light in ("cli", "steps", "presets", "runtime", "io", "unlearning/profiles", "unlearning/hparams"):
        tree = ast.parse((PACKAGE / f"{light}.py").read_text())
        top = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names}
        top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
        assert not top & {"torch", "transformers", "pandas", "numpy", "matplotlib", "sklearn", "scipy"}, light


def test_no_function_or_class_is_defined_twice():
    owners: dict[str, list[str]] = {}
    files = [*PACKAGE.rglob("*.py"), *ROOT.glob("*.py")]
    for path in files:
        is_script = path.parent == ROOT
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                if is_script and node.name in SCRIPT_CONVENTIONS:
                    continue
                owners.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    twice = {name: where for name, where in owners.items() if len(where) > 1}
    assert not twice, twice


def test_one_padding_rule():
    """Batches are padded by brittle.padding.right_pad only (no hand-written torch.full padding)."""
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *ROOT.glob("*.py")]:
        if path.name == "padding.py":
            continue
        text = path.read_text()
        if "padding=True" in text or ("torch.full(" in text and "pad" in text):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_root_scripts_hold_script_logic_only():
    long = {p.name: n for p in ROOT.glob("*.py") if (n := len(p.read_text().splitlines())) > 210}
    assert not long, f"move settings, summaries and rendering into brittle/: {long}"
