"""The package's shape: every module imports on its own, and no two modules import each other, even through
imports hidden inside functions (a cycle there is a concept living in the wrong module)."""

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import difflab

PACKAGE = Path(difflab.__file__).parent
MODULES = sorted(".".join(("difflab", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
                 for p in PACKAGE.rglob("*.py"))


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    name = ".".join(("difflab", *parts))
    return name.removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """module -> the difflab modules it imports anywhere in its file (top level or inside a function)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_of(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("difflab")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.startswith("difflab"):
                    target = node.module
                else:
                    continue
                for alias in node.names:  # `from . import runs` imports the module difflab.runs
                    edges.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
        graph[name] = {e for e in edges if e in MODULES and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_import_graph_sees_function_local_imports():
    graph = import_graph()
    assert "difflab.runs" in graph["difflab.sweep"]
    assert "difflab.ddpm.generation" in graph["difflab.cli"]      # imported inside cmd_sample
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_ddpm_imports_nothing_of_stable_diffusion():
    graph = import_graph()
    allowed = {"difflab.errors", "difflab.runs", "difflab.config", "difflab.grids", "difflab.tracking",
               "difflab.threads", "difflab.checkpoints", "difflab.training"}
    for name, edges in graph.items():
        if name.startswith("difflab.ddpm"):
            outside = {e for e in edges if not e.startswith("difflab.ddpm")} - allowed
            assert not outside, f"{name} imports {outside}"


def _import_alone(module: str) -> tuple[str, int, str]:
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    return module, proc.returncode, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    skip = {"difflab.app"}  # needs the optional gradio extra: imported alone by test_app where gradio is present
    try:
        import gradio  # noqa: F401
        skip = set()
    except ImportError:
        pass
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_import_alone, [m for m in MODULES if m not in skip]))
    failed = [f"{m}: {err}" for m, rc, err in results if rc]
    assert not failed, "\n".join(failed)
    assert len(results) >= 30
