"""The README and docs/ against the repository: the install commands are those CI runs, every
relative link and every repository path named in the docs exists, and docs/commands.md documents
every option of every command it describes (test_doc_blocks.py runs their code blocks)."""

import dataclasses
import re

import click
import pytest

from conftest import ROOT
from sppfeat.cli import main

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(r"(?<![\w./-])(?:tests|benchmarks|sppfeat)/[\w./-]*")
DOCUMENTED = ("extract", "regions", "info", "train-svm", "eval", "predict", "merge", "backbones")
DETECTION = ("proposals", "train-detector", "detect", "eval-detections")  # on docs/detection.md


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation and symbols dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path) -> set[str]:
    """The anchors of a Markdown file's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        base = slug(heading)
        seen[base] = seen.get(base, -1) + 1
    return {base if n == 0 else f"{base}-{k}" for base, n in seen.items() for k in range(n + 1)} | set(seen)


def missing_links(path, root=ROOT) -> list[str]:
    """Relative links of one Markdown file whose file (inside `root`), or heading anchor, does not exist."""
    missing = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or root.resolve() not in (linked, *linked.parents):
            missing.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            missing.append(target)
    return missing


def missing_paths(path, root=ROOT) -> list[str]:
    """`tests/...`, `benchmarks/...`, `sppfeat/...` named in code of one Markdown file that do not
    exist (`sppfeat/x/y.name` may name `name` in module y.py)."""
    text = path.read_text()
    code = CODE_SPAN.findall(re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)) + fenced_blocks(text, r"\w*")
    missing = []
    for span in code:
        for named in REPO_PATH.findall(span):
            named = named.rstrip(".")
            candidate = root / named
            if not candidate.exists() and not candidate.with_suffix(".py").exists():
                missing.append(named)
    return missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_and_paths_in_the_docs_exist(doc):
    assert missing_links(doc) == [] and missing_paths(doc) == []


def test_the_link_check_finds_what_is_missing(tmp_path):
    """The checks above are not true by construction: dead files, dead anchors, links out of the
    repository and moved test files are caught, and good ones pass."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests" / "data").mkdir(parents=True)
    (tmp_path / "tests" / "data" / "test_hostile.py").touch()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## Bad files, and `--resume`\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text("# Title\n\n[a](other.md#bad-files-and---resume) [b](#title) [c](../docs/other.md) "
                    "[d](https://example.org/x) [e](gone.md) [f](other.md#nothing) [g](#none) [h](../../x.md)\n"
                    "`tests/data/test_hostile.py`, `python tests/test_hostile.py`\n")
    (tmp_path.parent / "x.md").touch()
    assert missing_links(page, tmp_path) == ["gone.md", "other.md#nothing", "#none", "../../x.md"]
    assert missing_paths(page, tmp_path) == ["tests/test_hostile.py"]
    assert slug("Caltech 101 (`make bench-caltech`, i.e. `python benchmarks/caltech101.py`)") == \
        "caltech-101-make-bench-caltech-ie-python-benchmarkscaltech101py"


def test_the_install_commands_are_the_ones_ci_runs():
    """The README's first code block installs and tests with the `make` targets `.ci/run` calls."""
    readme_install = fenced_blocks((ROOT / "README.md").read_text(), "bash")[0]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("make ")]
    assert ci == ["make install", "make test"]
    installed = [line.split("#")[0].strip() for line in readme_install.splitlines()]
    assert all(command in installed for command in ci), readme_install
    makefile = (ROOT / "Makefile").read_text()
    assert all(re.search(rf"^{command.split()[1]}:", makefile, re.M) for command in ci)


def sections(path) -> dict[str, str]:
    """The `## name` sections of a Markdown file, by name."""
    parts = re.split(r"^## (.+)$", path.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_commands_page_documents_every_option():
    """Each command's section of docs/commands.md (docs/detection.md for detection) names every option of `sppfeat COMMAND --help`
    (regions may say "extract's options" for the ones it shares), and the options in its table's
    first column are that command's."""
    documented = {**sections(ROOT / "docs" / "commands.md"), **sections(ROOT / "docs" / "detection.md")}
    assert set(DOCUMENTED) | set(DETECTION) <= set(documented)
    for name, command in main.commands.items():
        if name not in documented:
            continue  # a command documented on its own page
        options = {opt for p in command.params if isinstance(p, click.Option) and p.name != "help"
                   for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}
        shared = {opt for p in main.commands["extract"].params for opt in (*p.opts, *p.secondary_opts)}
        text = documented[name]
        expected = options - shared if name == "regions" else options
        assert not [opt for opt in expected if not re.search(rf"{re.escape(opt)}(?![\w-])", text)], name
        table_options = {opt for row in re.findall(r"^\| ([^|]*)\|", text, re.M)
                         for opt in re.findall(r"--[a-z][\w-]*", row)}
        assert table_options <= options, (name, table_options - options)


def test_every_report_key_is_documented():
    from sppfeat import Evaluation

    formats = (ROOT / "docs" / "file-formats.md").read_text()
    for field in dataclasses.fields(Evaluation):
        assert f"`{field.name}`" in formats, field.name
