"""The layers of ``deepfer`` as docs/development.md draws them: the stages and the pipeline never load the web
stack, the client never loads the server's dependencies, and no module imports one above it (so there is no
import circle).

Each check runs in a fresh interpreter, so what another test imported cannot hide a stray import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import REPO

PACKAGE = REPO / "service" / "deepfer"  # the import package `deepfer`

#: Bottom to top, as docs/development.md draws them; a module may import its own layer's modules and
#: any below, never above. The engine's floors are listed one by one, so a stage cannot reach for the pipeline.
ENGINE = "deepfer.engine."
LAYERS: list[set[str]] = [
    {"deepfer.contract", "deepfer.settings", "deepfer.errors"},
    {"deepfer.wire", "deepfer.logs", "deepfer.metrics"},
    {
        ENGINE + name
        for name in ("onnx_sessions", "pixels", "decode", "detect", "align", "classifier", "batching", "capacity")
    }
    | {ENGINE + "workers"},
    {ENGINE + "models"},
    {ENGINE + "pipeline"},
    {ENGINE + "answers"},
    {"deepfer.tracking.assignment", "deepfer.tracking.tracker"},
    {
        f"deepfer.server.{name}"
        for name in ("errors", "state", "dependencies", "upload", "middleware", "admission", "demo", "docs")
    },
    {f"deepfer.server.routes.{name}" for name in ("predict", "model", "health")} | {"deepfer.server.stream"},
    {"deepfer.server.routes", "deepfer.server.app", "deepfer.server.connections"},
    {"deepfer.client.core"},
    {"deepfer.client.stream"},
    {"deepfer.client.rest"},
    {"deepfer.client"},
    {f"deepfer.video.{name}" for name in ("drawing", "frames", "annotated", "writers", "plot", "cuts", "outputs")},
    {"deepfer.video.analysers", "deepfer.video"},
    {"deepfer.cli.common"},
    {"deepfer.cli.serve", "deepfer.cli.predict", "deepfer.cli.video"},
    {"deepfer.cli"},
    {"deepfer.cli.__main__"},
]
STAGES_AND_PIPELINE = sorted(LAYERS[2] | LAYERS[3] | LAYERS[4] | LAYERS[5])
WEB = ("fastapi", "starlette", "uvicorn", "python_multipart", "deepfer.server")


def loaded_after(imports: list[str]) -> set[str]:
    """The top-level and deepfer module names loaded by a fresh interpreter after importing ``imports``."""
    code = (
        "import json, sys\n"
        + "".join(f"import {name}\n" for name in imports)
        + "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return set(json.loads(done.stdout))


def test_no_stage_and_not_the_pipeline_loads_the_web_stack() -> None:
    modules = loaded_after(STAGES_AND_PIPELINE)
    web = sorted(name for name in modules if name.split(".")[0] in WEB or name.startswith("deepfer.server"))
    assert not web, f"importing the stages and the pipeline loaded {web}"
    assert "onnxruntime" in modules and "cv2" in modules  # the imports really ran


def test_the_client_loads_no_server_dependency() -> None:
    modules = loaded_after(["deepfer"]) | loaded_after(["deepfer.client"])
    server = sorted(
        name for name in modules if name.split(".")[0] in {"onnxruntime", "cv2", "fastapi", "starlette", "uvicorn"}
    )
    assert not server, f"the client loaded {server}"


def _module_name(path: Path) -> str:
    parts = ["deepfer", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _deepfer_imports(path: Path) -> set[str]:
    """Every ``deepfer.*`` module a file imports, at the top or inside a function (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deepfer"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found |= {name for name in names if _layer_of(name) is not None} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("deepfer")}
    return found


def _layer_of(module: str) -> int | None:
    return next((index for index, layer in enumerate(LAYERS) if module in layer), None)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=_module_name)
def test_each_module_imports_only_its_layer_or_below(path: Path) -> None:
    module = _module_name(path)
    if module in {"deepfer", "deepfer.server", "deepfer.engine", "deepfer.tracking"}:
        return  # the package files: a lazy re-export of the client, and docstrings
    own = _layer_of(module)
    assert own is not None, f"{module} is in no layer of this test (and of docs/development.md): place it"
    for imported in sorted(_deepfer_imports(path) - {module}):
        layer = _layer_of(imported)
        if layer is None:  # a package itself (``from deepfer.server import routes`` names the module above)
            continue
        assert layer <= own, f"{module} (layer {own}) imports {imported} (layer {layer}), which sits above it"


def test_no_import_circle() -> None:
    """Within a layer too: the module graph (top-level and function-level imports alike) has no cycle."""
    graph = {
        _module_name(path): {name for name in _deepfer_imports(path) if _layer_of(name) is not None}
        for path in PACKAGE.rglob("*.py")
    }
    done: set[str] = set()

    def visit(module: str, trail: tuple[str, ...]) -> None:
        assert module not in trail, "import circle: " + " -> ".join([*trail[trail.index(module) :], module])
        if module in done:
            return
        for imported in sorted(graph.get(module, set()) - {module}):
            visit(imported, (*trail, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def _imported_names(path: Path) -> Iterator[str]:
    """Every module name a file imports, and for ``from a import b`` also ``a.b`` (``b`` may be a module)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_tests_never_import_the_benchmarks() -> None:
    """Benchmarks may reuse the tests' inputs (tests/hostile_inputs.py, tests/scenes.py, tests/tracking_clip.py);
    a test runs a benchmark only as a user does, as a command, so a script's changes cannot break a test's imports."""
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        for name in _imported_names(path)
        if name.split(".")[0] == "bench"
    ]
    assert not offenders, offenders


def test_no_module_imports_a_test_module() -> None:
    """What tests share lives in helper modules beside them (tests/servers.py, tests/onnx_models.py, ...): importing
    a test module runs its module-level set-up and skips, and ties one test file's edits to another's imports."""
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for folder in ("tests", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        for name in _imported_names(path)
        if name.startswith("tests.") and name.split(".")[-1].startswith("test_")
    ]
    assert not offenders, offenders
