"""The public API named in the brief resolves, and importing the package stays light."""
import subprocess
import sys

import unet_ref

BRIEF_NAMES = ["d1_d2", "weight_map", "reference", "build_unet", "output_size", "valid_input_size", "predict_tiled",
               "challenge_scores"]


def test_every_public_name_resolves():
    for name in BRIEF_NAMES + unet_ref.__all__:
        assert getattr(unet_ref, name) is not None, name
    assert callable(unet_ref.weight_map) and callable(unet_ref.reference.d1_d2)


def test_weight_map_does_not_import_tensorflow():
    # the weight map, the sizes and the data tools are usable without paying for TensorFlow
    code = "import sys, numpy as np, unet_ref; unet_ref.weight_map(np.eye(8, dtype=bool)); unet_ref.output_size(572); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _package_imports():
    """{module: set of unet_ref modules it imports}, every import statement counted (also
    those inside functions), read from the source with ast."""
    import ast
    import pathlib

    root = pathlib.Path(unet_ref.__file__).parent
    modules = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package upwards
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    graph = _package_imports()
    assert graph["unet_ref.train"] >= {"unet_ref.config", "unet_ref.runs"}  # the reader sees real edges

    def cycle_from(start):  # depth-first search for a path back to `start`
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [cycle for cycle in map(cycle_from, sorted(graph)) if cycle]
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_the_package_and_the_command_line_do_not_import_the_zarr_extra():
    # dask, zarr and ome-zarr are an optional extra: only a zarr input loads them
    code = ("import sys, unet_ref, unet_ref.cli; unet_ref.cli.build_parser(); "
            "print(sorted(m for m in ('dask', 'distributed', 'zarr', 'ome_zarr') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
