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
import functools
import io
import os
import pathlib
import re
import sys

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

    @functools.cache
    def match(i, j):
        if i == len(want):
            return j == len(got)
        if want[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and _same_token(want[i], got[j]) and match(i + 1, j + 1)

    return match(0, 0)


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
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    compile(code, "colab.ipynb", "exec")  # no shell magics: the notebook is a Python script


def test_colab_notebook_runs_top_to_bottom_tiny(tmp_path, isbi_dir):
    """The whole notebook (install check, GPU check, demo, ISBI, training of the paper's
    configuration, overlap-tile prediction, challenge scores) with UNET_REF_COLAB_TINY=1."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "UNET_REF_COLAB_TINY": "1", "UNET_REF_ISBI": str(isbi_dir), "MPLBACKEND": "Agg",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(DOCS / "colab.py")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "U-Net paper, Table 1" in done.stdout and "GPUs:" in done.stdout
    assert (tmp_path / "demo" / "panel.png").is_file() and (tmp_path / "runs" / "paper" / "last.keras").is_file()


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
