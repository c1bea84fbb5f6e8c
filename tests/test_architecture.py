"""The package's layering, read from its own imports: no cycles, no layer importing a higher one, and the
command line's help without torch. docs/ARCHITECTURE.md states the layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sparta"

LAYERS = [  # lowest first; a module may import its own layer and those below
    ("foundation", ["sparta", "sparta.errors", "sparta.grids", "sparta.domain", "sparta.config", "sparta.families",
                    "sparta.sources", "sparta.tasks",
                    "sparta.variants", "sparta.seeding", "sparta.dist", "sparta.outputs", "sparta.locks",
                    "sparta.checkpoint", "sparta.runs"]),
    ("data", ["sparta.data", "sparta.climatology"]),
    ("models", ["sparta.models", "sparta.downstream", "sparta.metrics", "sparta.losses", "sparta.augment",
                "sparta.sampling", "sparta.plots"]),
    ("training", ["sparta.training"]),
    ("inference", ["sparta.inference", "sparta.embed"]),
    ("evaluation", ["sparta.predictions", "sparta.scores", "sparta.evaluation", "sparta.tables"]),
    ("report", ["sparta.report", "sparta.reproduce"]),
    ("cli", ["sparta.cli", "sparta.__main__"]),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The sparta modules ``path`` imports at any depth (inside functions too), outside ``if TYPE_CHECKING``;
    importing ``sparta.a.b`` runs ``sparta.a``'s ``__init__`` first, so it counts as importing ``sparta.a`` too."""
    tree = ast.parse(path.read_text())
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
    named = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sparta"):
            named |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
        elif isinstance(node, ast.Import):
            named |= {a.name for a in node.names if a.name.startswith("sparta")}
    found = set()
    for name in named:
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}  # the module and its packages
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    for name in graph:
        graph[name].discard(name)
        if name.count(".") > 1:  # a submodule cannot import its own package's __init__ in a cycle-free way
            graph[name].discard(name.rsplit(".", 1)[0])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def _layer(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "sparta") or module == "sparta":
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py (and docs/ARCHITECTURE.md)")


def test_no_import_cycles():
    assert _cycle(_graph()) is None, f"import cycle: {' -> '.join(_cycle(_graph()))}"


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) is not None
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_layer_imports_a_higher_one():
    upward = [f"{src} ({LAYERS[_layer(src)][0]}) imports {dst} ({LAYERS[_layer(dst)][0]})"
              for src, targets in _graph().items() for dst in targets if _layer(dst) > _layer(src)]
    assert upward == []


def test_help_never_imports_torch_and_inference_stays_light():
    """Every command's --help reads registries only (no torch: under a second); the Python API does not pull in
    the GNN and t-SNE libraries."""
    script = """
import sys
from typer.testing import CliRunner
from sparta.cli import app
commands = [[], ["train"], ["evaluate"], ["reproduce"], ["report"], ["embed"], ["decode"], ["data", "prepare"],
            ["config", "show"], ["config", "validate"]]
for command in commands:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, (command, result.output)
assert "torch" not in sys.modules, "--help imported torch"
import sparta.inference
assert "torch_geometric" not in sys.modules and "sklearn" not in sys.modules, "sparta.inference is heavy"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


MAX_LINES = 130  # "~120": the largest units are Evaluation (125 lines) and training.Step (122)


def test_no_function_or_class_is_longer_than_max_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE.parent))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_LINES:
                    long.append(f"{where}:{node.lineno} {node.name} ({size} lines)")
    assert long == []
