"""The import map of src/peftbench (every import, module-level or inside a function): no circles, and no module
imports from a layer above its own (docs/architecture.md draws the same layers)."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "peftbench"

# lowest first; a module may import from its own layer or any below it
LAYERS = [
    ("base", ["peftbench", "peftbench.errors", "peftbench.options", "peftbench.registry", "peftbench.presets"]),
    ("config", ["peftbench.config", "peftbench.result"]),
    ("foundations", ["peftbench.families", "peftbench.measure", "peftbench.data"]),
    ("components", ["peftbench.models", "peftbench.heads", "peftbench.tiny", "peftbench.methods", "peftbench.tasks",
                    "peftbench.analysis", "peftbench.sweeps", "peftbench.search", "peftbench.trackers"]),
    ("run", ["peftbench.run"]),
    ("grid", ["peftbench.store", "peftbench.archive", "peftbench.executors", "peftbench.plan", "peftbench.footprint", "peftbench.preflight"]),
    ("orchestration", ["peftbench.runner", "peftbench.report"]),
    ("cli", ["peftbench.cli"]),
]


def modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = list(f.relative_to(SRC.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_map() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" for a in node.names]  # a submodule, else a name in ``base``
                targets = [t if t in mods else base for t in targets]
            else:
                continue
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != mod:
                    edges[mod].add(t)
    return edges


def layer(mod: str) -> int:
    best = max(((len(p), i) for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes
                if mod == p or mod.startswith(p + ".")), default=None)
    assert best is not None, f"{mod} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return best[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def test_the_import_map_has_no_circles():
    assert cycles(import_map()) == []


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{a} ({LAYERS[layer(a)][0]}) -> {b} ({LAYERS[layer(b)][0]})"
              for a, targets in import_map().items() for b in targets if layer(b) > layer(a)]
    assert upward == []


def test_the_checker_sees_circles_and_function_level_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    edges = import_map()
    assert "peftbench.run.distributed" in edges["peftbench.preflight"]  # imported inside a function
    assert "peftbench.tasks.base" in edges["peftbench.tasks.classification"]  # relative, from a sibling
