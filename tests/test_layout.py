"""The package's structure: no import cycle among its modules (lazy imports inside functions
included), and the layers point one way (docs: README "Layout")."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "babblelm"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """{module: babblelm modules it imports, anywhere in its code}."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            found |= {c for c in candidates if c in modules and c != name}
        graph[name] = found
    return graph


def test_no_import_cycles():
    graph, state, cycles = imports(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_lower_layers_never_import_upper_ones():
    graph = imports()
    upper = {"babblelm.cli", "babblelm.run", "babblelm.demo", "babblelm.export", "babblelm.card", "babblelm.hubrepo"}
    for layer in ("babblelm.models", "babblelm.data", "babblelm.eval", "babblelm.train", "babblelm.rundir"):
        for module, targets in graph.items():
            if module == layer or module.startswith(layer + "."):
                assert not targets & upper, f"{module} imports {targets & upper}"
    for module, targets in graph.items():
        if module.startswith("babblelm.models."):
            assert all(t.startswith("babblelm.models") or t == "babblelm.configbase" for t in targets), (module, targets)
