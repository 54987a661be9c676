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


# The run folder's names (rundir.py owns them): a string constant spelling one, outside rundir.py, is a second
# copy of the layout. Folder names count where they are joined onto a path (`x / "results"`, `Path("results")`);
# file names count wherever they stand alone as a string (not inside a message or a docstring).
RUN_FOLDERS = {"data", "checkpoints", "results", "fast", "submission", "hf", "finetune", "curves", "final", "last"}
RUN_FILES = {"config.yaml", "config_changes.jsonl", "metrics.jsonl", "stages.json", "trainer_state.json",
             "resume_state.pt", "hyperparameters.json", "learning_curves.md", "learning_curves.csv", "learning_curves",
             "best_checkpoint.json", "aoa.json", "aoa_surprisal.json", "report.md", "loss.png", "lr_schedule.png",
             "mixing.png", "mixing.md"}


def run_path_joins(path: Path, name: str) -> list[str]:
    """`name:line: 'run-folder name'` for every run-folder name the Python file `path` spells itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    in_messages = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    joined = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            joined |= {id(node.left), id(node.right)}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Path":
            joined |= {id(arg) for arg in node.args}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in docstrings | in_messages:
            continue
        if node.value in RUN_FILES or (node.value in RUN_FOLDERS and id(node) in joined):
            found.append((node.lineno, f"{name}:{node.lineno}: {node.value!r}"))
    return [hit for _, hit in sorted(found)]


def test_only_rundir_spells_the_run_folder():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.name != "rundir.py"
             for hit in run_path_joins(path, str(path.relative_to(PACKAGE.parent)))]
    assert not found, "run-folder names outside rundir.py (ask RunDir):\n" + "\n".join(found)


def test_the_check_finds_a_run_path_join(tmp_path):
    """The check itself: a join and a file name are found, a message and a docstring are not."""
    sample = tmp_path / "sample.py"
    sample.write_text('"""metrics.jsonl"""\nx = run / "results" / name\ny = "trainer_state.json"\n'
                      'z = f"no metrics.jsonl in {run}"\nw = {"results": 1}\n', encoding="utf-8")
    assert run_path_joins(sample, "sample.py") == ["sample.py:2: 'results'", "sample.py:3: 'trainer_state.json'"]
