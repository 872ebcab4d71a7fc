"""The tutorial cannot rot: every ```python block in docs/*.md and README.md runs here.

The runner is deliberately small and dependency-free. For each page, the ```python blocks
are executed in order in ONE namespace (a page is a program read top to bottom, as in the
keras-io examples), in a temporary working directory, with matplotlib on the Agg backend.
Tracebacks point at the line of the Markdown file.

An HTML comment on the line just before a block changes how it runs:

    <!-- skip: slow -->      run only when UNET_REF_DOCS_SLOW=1 (training-sized blocks):
                             UNET_REF_DOCS_SLOW=1 python -m pytest tests/test_docs.py
    <!-- requires: isbi -->  run only when the ISBI 2012 data is present (conftest's
                             `isbi_dir` fixture); the block finds it through the
                             UNET_REF_ISBI environment variable.

Blocks in other languages (```bash, ```text) are never executed. A skipped block must not
define anything a later block of its page needs.

A ```text block right after a ```python block (only blank lines between) is what that block
prints, and is compared with it: token by token, whitespace aside; a number matches to the
digits written (0.05 matches any printed value in [0.045, 0.055], 13 any in [12.5, 13.5]),
and ... stands for any text (a value that depends on training, say).
"""
import contextlib
import io
import os
import pathlib
import re
import shutil
import sys
from html.parser import HTMLParser

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
RUN_SLOW = os.environ.get("UNET_REF_DOCS_SLOW", "0") == "1"

# CommonMark: the info string of a backtick fence has no backtick, so ```` ```python ```` is inline code.
FENCE_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<lang>[\w+-]*)(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>skip|requires):\s*(?P<what>[\w-]+)\s*-->\s*$")
KNOWN_MARKERS = {("skip", "slow"), ("requires", "isbi")}


def code_blocks(text):
    """Yield (first_line_number, language, markers, source) for each fenced block of `text`.

    `markers` is the set of (kind, what) pairs from the comment line(s) right above the fence.
    Indented fences (inside admonitions) are dedented by the fence's own indentation.
    """
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE_OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match["indent"], match["fence"], match["lang"].lower()
        markers, j = set(), i - 1
        while j >= 0 and MARKER.match(lines[j]):
            m = MARKER.match(lines[j])
            markers.add((m["kind"], m["what"]))
            j -= 1
        body, k = [], i + 1
        while k < len(lines) and lines[k].strip() != fence:
            line = lines[k]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            k += 1
        if k == len(lines):
            raise ValueError(f"unclosed ``` fence opened at line {i + 1}")
        yield i + 2, lang, markers, "\n".join(body) + "\n"
        i = k + 1


def python_blocks(page):
    return [b for b in code_blocks(page.read_text(encoding="utf-8")) if b[1] in ("python", "py")]


def expected_outputs(text):
    """{first line of a ```python block: (first line of its ```text output block, that text)}."""
    lines, blocks = text.splitlines(), list(code_blocks(text))
    outputs = {}
    for (line, lang, _, source), (next_line, next_lang, _, expected) in zip(blocks, blocks[1:]):
        closing = line + source.count("\n")  # the closing fence's line (1-based)
        between = lines[closing:next_line - 2]
        if lang in ("python", "py") and next_lang == "text" and not any(b.strip() for b in between):
            outputs[line] = (next_line, expected)
    return outputs


# numbers first (so that 0.5 or -3 is one token), then words, then any other character
TOKEN = re.compile(r"\.\.\.|[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|\w+|\S")
NUMBER = re.compile(r"[-+]?(?:\d+\.?(?P<decimals>\d*)|\.(?P<only>\d+))(?:[eE](?P<exponent>[-+]?\d+))?")


def _same_token(written, printed):
    number = NUMBER.fullmatch(written)
    if number is None or NUMBER.fullmatch(printed) is None:
        return written == printed
    decimals = len(number["decimals"] or number["only"] or "")
    half_digit = 0.5 * 10.0 ** (int(number["exponent"] or 0) - decimals)
    return abs(float(printed) - float(written)) <= half_digit * (1 + 1e-9)


def output_matches(expected, printed):
    """True if `printed` reads as the output block `expected` (the rule in the docstring)."""
    want, got = TOKEN.findall(expected), TOKEN.findall(printed)
    reached = [True] + [False] * len(got)  # reached[j]: the tokens of `want` so far match got[:j]
    for token in want:
        if token == "...":  # any text: every j at or after a reached one
            reached = [any(reached[:j + 1]) for j in range(len(got) + 1)]
        else:
            reached = [False] + [reached[j] and _same_token(token, got[j]) for j in range(len(got))]
    return reached[-1]


PAGES_WITH_CODE = [p for p in PAGES if p.exists() and python_blocks(p)]


def test_the_block_parser_finds_fences_markers_and_line_numbers():
    text = "intro ```` ```python ```` inline\n```` ```python ```` inline\n<!-- skip: slow -->\n```python\nx = 1\n```\n```bash\nls\n```\n    ```python\n    y = 2\n    ```\n"
    blocks = list(code_blocks(text))
    assert [(b[0], b[1], b[2], b[3]) for b in blocks] == [
        (5, "python", {("skip", "slow")}, "x = 1\n"),
        (8, "bash", set(), "ls\n"),
        (11, "python", set(), "y = 2\n"),
    ]
    with pytest.raises(ValueError, match="unclosed"):
        list(code_blocks("```python\nx = 1\n"))


def test_an_output_block_is_the_text_block_right_after_a_python_block():
    text = "```python\nprint(1)\n```\n\n```text\n1\n```\n```python\nx = 2\n```\nprose\n```text\nnot output\n```\n"
    assert expected_outputs(text) == {2: (6, "1\n")}


@pytest.mark.parametrize("expected, printed, same", [
    ("(1, 44, 60)", "(1, 44,  60)\n", True),
    ("(1, 44, 60)", "(1, 44, 61)", False),
    ("12.7 GiB", "12.702 GiB", True),  # to the digits written
    ("12.7 GiB", "12.76 GiB", False),
    ("46.01%", "46.0147%", True),
    ("13", "12.7", True),
    ("6e-08", "5.96e-08", True),
    ("a ... b", "a x 1.5 y b", True),  # ... is any text
    ("a ... b", "a x 1.5 y c", False),
    ("x", "x y", False),  # nothing printed beyond what is written
])
def test_an_output_block_matches_numbers_to_the_digits_written(expected, printed, same):
    assert output_matches(expected, printed) is same


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_marker_is_one_the_runner_knows(page):
    if not page.exists():
        pytest.skip(f"{page} does not exist")
    for line_no, _, markers, _ in code_blocks(page.read_text(encoding="utf-8")):
        unknown = markers - KNOWN_MARKERS
        assert not unknown, f"{page.name}:{line_no}: unknown marker(s) {sorted(unknown)}"


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_python_blocks_of_the_page_run_in_order(page, tmp_path, monkeypatch, request):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    isbi = None  # asked for at the first block that needs it: False when absent

    namespace = {"__name__": f"docs_{page.stem}"}
    skipped = []
    outputs = expected_outputs(page.read_text(encoding="utf-8"))
    for line_no, _, markers, source in python_blocks(page):
        if ("skip", "slow") in markers and not RUN_SLOW:
            skipped.append(f"line {line_no} (slow; UNET_REF_DOCS_SLOW=1 runs it)")
            continue
        if ("requires", "isbi") in markers:
            if isbi is None:
                try:  # fails here instead where the data is required (conftest.missing_data)
                    isbi = request.getfixturevalue("isbi_dir")
                    monkeypatch.setenv("UNET_REF_ISBI", str(isbi))
                except pytest.skip.Exception:
                    isbi = False
            if not isbi:
                skipped.append(f"line {line_no} (ISBI 2012 data absent)")
                continue
        # Pad with newlines so that tracebacks show the Markdown file's line numbers.
        code = compile("\n" * (line_no - 1) + source, str(page), "exec")
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)
        finally:
            plt.close("all")
            sys.stdout.write(printed.getvalue())
        if line_no in outputs:
            output_line, expected = outputs[line_no]
            assert output_matches(expected, printed.getvalue()), (
                f"{page.name}:{output_line}: the block at line {line_no} printed\n{printed.getvalue()}"
                f"which is not the output written under it:\n{expected}")
    if skipped:
        print(f"{page.name}: skipped blocks at " + "; ".join(skipped))


def test_every_figure_the_docs_show_exists_and_is_made_by_make_figures():
    script = (DOCS / "make_figures.py").read_text(encoding="utf-8")
    shown = set()
    for page in PAGES:
        if page.exists():
            shown |= set(re.findall(r"\((?:docs/)?(figures/[\w./-]+\.png)\)", page.read_text(encoding="utf-8")))
    assert shown, "the docs show no figure at all"
    for figure in sorted(shown):
        assert (DOCS / figure).is_file(), f"{figure} is shown in the docs but missing: run python docs/make_figures.py"
        assert pathlib.PurePosixPath(figure).name in script, f"{figure} is not produced by docs/make_figures.py"
    for png in sorted((DOCS / "figures").glob("*.png")):
        assert png.name in script, f"docs/figures/{png.name} is committed but not produced by docs/make_figures.py"


def test_published_run_settings_name_paths_a_reader_has():
    """The config.json of every published run (docs/figures/data) names the data folder as
    chapter 1 does and the run folder as the commands do, not the machine it ran on."""
    import json

    configs = sorted((DOCS / "figures" / "data").rglob("config.json"))
    assert configs, "no published run settings"
    for path in configs:
        config = json.loads(path.read_text(encoding="utf-8"))
        run = path.parent.relative_to(DOCS / "figures" / "data").as_posix()
        assert config["data"] == "isbi2012", f"{path.relative_to(ROOT)}: data is {config['data']!r}"
        assert config["out"] == f"runs/{run}", f"{path.relative_to(ROOT)}: out is {config['out']!r}, not runs/{run}"


def test_generated_tables_are_up_to_date():
    """The tables pasted into the pages (between <!-- begin NAME --> and <!-- end NAME -->)
    are what make_figures.py produces from today's code and data."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    tables = [name for name in make_figures.OUTPUTS if name.endswith(".md")]
    assert tables, "make_figures.py produces no generated table"
    texts = [page.read_text(encoding="utf-8") for page in PAGES if page.exists()]
    for name in tables:
        blocks = [block for block in (make_figures.pasted(text, name) for text in texts) if block is not None]
        assert blocks, f"no page shows the generated table {name}"
        for block in blocks:
            assert block == make_figures.OUTPUTS[name](), f"the table {name} is stale: run python docs/make_figures.py {name}"


def test_isbi_prose_quotes_the_published_seeds():
    """results_isbi.md's prose quotes the reference CPU run as the published seeds give it
    (docs/figures/data/recipe/seeds, at least three): each score's mean ± sd without and
    with TTA, and the mean's ratio to the paper's Table 1, to the digits written there."""
    import json

    import numpy as np

    from unet_ref.challenge import PAPER_TABLE_1

    def digits(x, n):  # n significant digits, never in e-notation: 0.00008, 0.14, 3.7
        return np.format_float_positional(x, precision=n, fractional=False, trim="-")

    runs = [json.loads(path.read_text()) for path in sorted((DOCS / "figures/data/recipe/seeds").glob("*/result.json"))]
    assert len(runs) >= 3, f"the reference run is reported over at least 3 seeds, {len(runs)} are published"
    text = " ".join((DOCS / "results_isbi.md").read_text(encoding="utf-8").replace("**", "").split())
    for key in ("scores", "scores_tta"):
        for metric, paper in PAPER_TABLE_1.items():
            values = [run[key][metric] for run in runs]
            mean, sd = np.mean(values), np.std(values, ddof=1)
            quoted = f"{digits(mean, 2)} ± {digits(sd, 1)}"
            assert quoted in text, f"results_isbi.md does not quote the {key} {metric} of the seeds: {quoted}"
            ratio = digits(mean / paper, 2)
            assert re.search(rf"\b{re.escape(ratio)}\b(?:[^.]|\.\d)*times", text), f"no ratio {ratio} for the {key} {metric}"
            for value in values:  # each seed's Rand error, to three decimals
                if metric == "rand_error":
                    assert f"{value:.3f}" in text, f"results_isbi.md does not list the seed's {key} Rand error {value:.3f}"


def test_pages_read_raw():
    """The pages read the same raw on the code host: no snippet includes, no admonitions
    (which show as text and code blocks there); collapsible boxes are <details> blocks."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "--8<--" not in text, f"{page.name} includes a snippet"
        assert not re.search(r"^(!!!|\?\?\?)", text, re.M), f"{page.name} has an admonition"


def test_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: no broken link, missing page, snippet or API reference.
    Skipped where the docs extra (mkdocs-material, mkdocstrings[python]) is not installed."""
    import subprocess
    import sys

    pytest.importorskip("mkdocs", reason="pip install mkdocs-material 'mkdocstrings[python]' to build the site")
    pytest.importorskip("mkdocstrings_handlers.python", reason="pip install 'mkdocstrings[python]'")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "weight_map" / "index.html").is_file()


def test_colab_notebook_is_made_from_its_source():
    """docs/colab.ipynb is docs/colab.py converted by make_figures.py, a valid nbformat 4 notebook."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    committed = (DOCS / "colab.ipynb").read_text(encoding="utf-8")
    assert committed == make_figures.OUTPUTS["colab.ipynb"](), "docs/colab.ipynb is stale: run python docs/make_figures.py colab.ipynb"
    notebook = json.loads(committed)
    assert notebook["nbformat"] == 4 and notebook["metadata"]["kernelspec"]["name"] == "python3"
    kinds = [cell["cell_type"] for cell in notebook["cells"]]
    assert kinds[0] == "markdown" and kinds.count("code") >= 5
    for cell in notebook["cells"]:
        assert {"id", "metadata", "source"} <= set(cell) and cell["source"], cell
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    compile(notebook_code(notebook), "colab.ipynb", "exec")  # Python, once IPython has read its `!` lines


def notebook_code(notebook):
    """The code cells of a notebook as IPython runs them: a line `!command` is
    `get_ipython().system("command")`, which expands {NAME} from the notebook's names."""
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    return re.sub(r"^(\s*)!(.*)$", lambda m: f"{m[1]}get_ipython().system({m[2]!r})", code, flags=re.M)


def colab_notebook():
    import json

    return json.loads((DOCS / "colab.ipynb").read_text(encoding="utf-8"))


def test_colab_notebook_installs_and_runs_the_demo_in_shell_lines():
    """A Colab cell shows what a `!` line prints, not what a subprocess prints: the notebook
    installs with `!pip install` and runs `!unet-ref demo`. docs/colab.py writes them as
    shell(f"...") lines, which make_figures.py converts only where IPython reads them as
    the f-string does ({NAME} fields; no expression, `$` or backslash)."""
    import importlib.util

    lines = [line.strip() for cell in colab_notebook()["cells"] if cell["cell_type"] == "code" for line in cell["source"]]
    shell = [line for line in lines if line.startswith("!")]
    assert any(line.startswith("!pip install ") for line in shell), shell
    assert any(line.startswith("!unet-ref demo ") for line in shell), shell
    assert not any("subprocess" in line or "shell(" in line for line in lines)

    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    assert make_figures.shell_line('    shell(f\'pip install "{SOURCE}"\')') == '    !pip install "{SOURCE}"'
    for unlike_ipython in ('shell(f"ls {OUT.parent}")', 'shell("ls {OUT}")', 'shell("echo $HOME")', "shell(command)"):
        with pytest.raises(ValueError):
            make_figures.shell_line(unlike_ipython)


@pytest.mark.parametrize("use_drive", [False, True], ids=["as_shipped", "USE_DRIVE_True"])
def test_colab_notebook_mounts_drive_only_when_asked(use_drive, tmp_path, monkeypatch, capsys):
    """The notebook's first code cell on a stand-in for google.colab (here unet_ref is
    installed, so it installs nothing): as shipped it mounts nothing and sets the one output
    folder OUT to ./unet_ref; with `USE_DRIVE = True` it mounts Drive and OUT is in it."""
    import sys
    import types

    mounted, made = [], []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=lambda path: mounted.append(path))
    colab.files = types.SimpleNamespace(upload=lambda: pytest.fail("asked for an upload with unet_ref installed"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(pathlib.Path, "mkdir", lambda self, **options: made.append(self))  # no /content here
    monkeypatch.chdir(tmp_path)
    first = next(cell for cell in colab_notebook()["cells"] if cell["cell_type"] == "code")
    code = notebook_code({"cells": [first]})
    assert code.count("USE_DRIVE = False") == 1
    if use_drive:
        code = code.replace("USE_DRIVE = False", "USE_DRIVE = True")
    namespace = {"get_ipython": lambda: pytest.fail("ran a shell line with unet_ref installed")}
    exec(compile(code, "colab.ipynb", "exec"), namespace)
    out = namespace["OUT"]
    if use_drive:
        assert mounted == ["/content/drive"] and out.is_relative_to("/content/drive/MyDrive")
    else:
        assert mounted == [] and out == tmp_path / "unet_ref"
    assert made == [out] and f"writes everything to {out}" in capsys.readouterr().out


def colab_like_python(tmp_path):
    """A virtual environment like Colab's Python for this project: TensorFlow, Keras and the
    other dependencies preinstalled, unet_ref neither importable nor installed.

    Its site-packages holds one .pth line naming a folder of symbolic links to every entry
    of this test environment's site-packages except unet_ref's (its editable-install hook
    and metadata). So, as on Colab, the preinstalled packages import and pip sees them as
    installed, while pip installs into the venv and never touches them (they lie outside
    it). The base interpreter has no TensorFlow, so a --system-site-packages venv would not
    do; this one costs a few seconds and no download. Returns (venv, its site-packages).
    """
    import site
    import subprocess
    import sys

    preinstalled = tmp_path / "preinstalled"
    preinstalled.mkdir()
    for folder in site.getsitepackages():
        for entry in pathlib.Path(folder).iterdir():
            if "unet_ref" not in entry.name and not (preinstalled / entry.name).exists():
                (preinstalled / entry.name).symlink_to(entry)
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = pathlib.Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                          capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "preinstalled.pth").write_text(f"{preinstalled}\n")
    found = subprocess.run([python, "-c", "import importlib.util as u; print([bool(u.find_spec(m)) for m in "
                            "('tensorflow', 'keras', 'unet_ref')])"], capture_output=True, text=True, check=True,
                           cwd=tmp_path)  # not the project's folder, which `python -c` would put on sys.path
    assert found.stdout.strip() == "[True, True, False]", found.stdout
    return venv, purelib


def project_copy(destination):
    """The project's files as a fresh clone has them (plus new, not yet committed ones):
    no .venv, no build products."""
    import shutil
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0:  # not a Git checkout: everything but what .gitignore names
        shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(
            ".git", ".venv", "site", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.c", "runs"))
        return destination
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_colab_notebook_runs_top_to_bottom_from_the_sdist_it_asks_for(tmp_path, isbi_dir):
    """The notebook as a newcomer runs it, tiny (UNET_REF_COLAB_TINY=1), with no address set:

    1. The sdist is built with the one-liner of the notebook's first text cell, in a copy of
       the project's files, with this interpreter as `python`.
    2. A Colab-like Python (`colab_like_python`): TensorFlow and Keras, no unet_ref.
    3. The working folder holds only that sdist, as after an upload; PATH starts with the
       venv's bin and leaves out this environment's, so `pip` and `unet-ref` are the venv's.
    4. docs/colab.py (colab.ipynb's source, equal to it by the test above) runs there.

    It must run to the end showing the demo's output, install unet_ref from that sdist into
    the venv and nothing else (Colab's TensorFlow and Keras serve), and write everything
    into the one output folder ./unet_ref.
    """
    import json
    import os
    import shutil
    import subprocess
    import sys

    first_text = "".join(colab_notebook()["cells"][0]["source"])
    one_liner = re.search(r"^    (python -m pip install build && python -m build --sdist)$", first_text, re.M)
    built_name = re.search(r"dist/(unet_ref-[\w.]+\.tar\.gz)", first_text)
    assert one_liner and built_name, "the first text cell says how to build the sdist and what it is called"
    assert one_liner[1] in (ROOT / "README.md").read_text(encoding="utf-8"), "README tells another way"
    here = os.path.dirname(sys.executable)
    clone = project_copy(tmp_path / "clone")
    built = subprocess.run(one_liner[1], shell=True, cwd=clone, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PATH": here + os.pathsep + os.environ["PATH"]})
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    sdist = clone / "dist" / built_name[1]
    assert sdist.is_file(), f"the one-liner made {sorted(os.listdir(clone / 'dist'))}, not {built_name[1]}"

    venv, site_packages = colab_like_python(tmp_path)
    before = {path.name for path in site_packages.iterdir()}
    work, notebook = tmp_path / "content", tmp_path / "notebook"
    work.mkdir(), notebook.mkdir()
    shutil.copy(sdist, work)
    shutil.copy(DOCS / "colab.py", notebook)
    path = os.pathsep.join([str(venv / "bin")] + [p for p in os.environ["PATH"].split(os.pathsep)
                                                  if p and os.path.realpath(p) != os.path.realpath(here)])
    assert shutil.which("unet-ref", path=path) == str(venv / "bin" / "unet-ref") or \
        shutil.which("unet-ref", path=path) is None, "another unet-ref is on PATH"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=path, UNET_REF_COLAB_TINY="1", UNET_REF_ISBI=str(isbi_dir), MPLBACKEND="Agg",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    done = subprocess.run([venv / "bin" / "python", notebook / "colab.py"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    installed = site_packages / "unet_ref" / "__init__.py"
    assert installed.is_file() and f"from {installed.parent}" in done.stdout
    origin = json.loads(next(site_packages.glob("unet_ref-*.dist-info/direct_url.json")).read_text())
    assert origin["url"] == (work / sdist.name).as_uri()
    added = {path.name for path in site_packages.iterdir()} - before
    assert {name for name in added if not name.startswith("unet_ref")} == set(), added  # no second TensorFlow
    assert "GPUs:" in done.stdout and "trivial all-cell predictor" in done.stdout  # the demo's output shows
    assert "U-Net paper, Table 1" in done.stdout
    assert sorted(path.name for path in work.iterdir()) == sorted([sdist.name, "unet_ref"])
    assert (work / "unet_ref" / "demo" / "panel.png").is_file() and (work / "unet_ref" / "paper" / "last.keras").is_file()


def test_the_readmes_reading_order_gives_each_modules_line_count_within_the_budget():
    # the reading path stays readable: every listed module's count is its length, the total
    # at most 2,200 lines, and the modules defining the story's public functions are on it
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Reading order$(.*?)(?=^#+ )", text, re.S | re.M).group(1)
    rows = re.findall(r"^\| \d+ \| `(unet_ref/[\w/]+\.py)` \| ([\d,]+) \|", section, re.M)
    counts = {path: int(lines.replace(",", "")) for path, lines in rows}
    actual = {path: len((ROOT / path).read_text().splitlines()) for path in counts}
    assert counts == actual
    total = sum(actual.values())
    assert total <= 2200 and f"{total:,} lines" in section
    for path in ("unet_ref/model.py", "unet_ref/weights.py", "unet_ref/tiles.py", "unet_ref/tiling.py",
                 "unet_ref/train.py", "unet_ref/sizes.py", "unet_ref/loss.py", "unet_ref/augment.py"):
        assert path in counts, path


CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


class TypesetMath(HTMLParser):
    """What a rendered page's DOM says of its formulas: for each pymdownx.arithmatex
    element, whether KaTeX typeset it, and any raw TeX delimiter left in the visible text
    (code, scripts and KaTeX's hidden MathML aside)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
    HIDDEN = {"script", "style", "code", "pre", "annotation", "textarea"}

    def __init__(self, html):
        super().__init__()
        self.stack, self.formulas, self.raw = [], [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        classes = set((dict(attrs).get("class") or "").split())
        if "katex" in classes and any("arithmatex" in c for _, c in self.stack):
            self.formulas[-1] = True
        if tag in self.VOID:
            return
        if "arithmatex" in classes:
            self.formulas.append(False)
        self.stack.append((tag, classes))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        hidden = any(tag in self.HIDDEN or "katex-mathml" in classes for tag, classes in self.stack)
        if not hidden and any(delimiter in data for delimiter in ("\\(", "\\[", "$$")):
            self.raw.append(data.strip()[:80])


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium (see README, developer notes)")
def test_the_built_site_typesets_its_formulas_offline(tmp_path):
    """Every page of the strictly built site that has formulas, served on 127.0.0.1 and
    opened in headless Chromium with every other host unreachable (no name resolves, other
    addresses go to a dead proxy): each pymdownx.arithmatex formula is typeset by KaTeX
    (served with the site) and no raw \\( \\[ $$ is left in the page's text (KaTeX leaves
    the source of a formula it cannot read). The server must have served KaTeX's script
    and fonts."""
    import functools
    import http.server
    import subprocess
    import sys
    import threading

    pytest.importorskip("mkdocs", reason="pip install mkdocs-material 'mkdocstrings[python]' to build the site")
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-3000:]
    pages = sorted(p.parent.relative_to(site).as_posix() + "/" for p in site.rglob("index.html")
                   if 'class="arithmatex"' in p.read_text(encoding="utf-8"))
    assert "weight_map/" in pages, pages

    served = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            served.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for page in pages:
            url = f"http://127.0.0.1:{server.server_port}/{page.removeprefix('./')}"
            browser = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--proxy-server=http://127.0.0.1:9", "--virtual-time-budget=20000", "--dump-dom", url],
                capture_output=True, text=True, timeout=180)
            assert browser.returncode == 0 and "</html>" in browser.stdout, browser.stderr[-2000:]
            dom = TypesetMath(browser.stdout)
            assert dom.formulas and all(dom.formulas), f"{page}: {dom.formulas.count(False)} of {len(dom.formulas)} " \
                f"formulas not typeset"
            assert not dom.raw, f"{page}: raw TeX {dom.raw[:5]}"
    finally:
        server.shutdown()
        server.server_close()
    assert any(path.endswith("/katex.min.js") for path in served) and any(path.endswith(".woff2") for path in served)
