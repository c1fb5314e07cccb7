"""Every fenced block of README.md and docs/*.md runs as a user pastes it: bash line by line, Python
with exec, each block in a new folder holding small real data under the names it uses (doc_data.DATA),
or in the folder of the block it continues (CONTINUES). Heavy commands are made small by options
appended to them (doc_data.SMALL, the same settings in Python); a block that cannot run here is in
NOT_RUN with the reason; text blocks are shown output, never commands. Tables name a block by its
document and a piece of its text found in no other block of that document."""

import contextlib
import dataclasses
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from functools import partial
from pathlib import Path

import pytest

from conftest import ROOT, SUBPROCESS_TIMEOUT
from doc_data import DATA, SMALL, small_detector

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = ("bash", "python", "text")
COMMAND = re.compile(r"^\s*(\$ |sppfeat |python|torchrun |pip |make |git )")  # never in a text block
ADAPTED = {"--nproc-per-node 8": "--nproc-per-node 2"}  # 8 GPUs' ranks: 2 CPU processes here
NOT_RUN = {
    ("README.md", "git clone"): "installs a clone: test_docs.py checks these are the commands CI runs",
    ("README.md", "download.pytorch.org"): "downloads PyTorch's CPU build; tests download nothing",
    ("docs/scaling.md", "srun "): "needs a Slurm cluster of 4 nodes",
    ("docs/benchmarks.md", "benchmarks/detection.py"): "the detection benchmark: hours on the whole VOC sample",
    ("docs/benchmarks.md", "benchmarks/gpu.py"): "the GPU benchmark: packs 1,800 images for a GPU machine",
}
CONTINUES = {  # a block -> the block whose folder (files and outputs) it goes on in
    ("README.md", "sppfeat info photos.h5"): "--scale 224,288 --dtype float16",
    ("README.md", "sppfeat train-svm photos.h5 svm.h5"): "sppfeat info photos.h5",
    ("README.md", "sppfeat eval svm.h5 photos.h5"): "sppfeat train-svm photos.h5 svm.h5",
    ("README.md", "sppfeat predict svm.h5 new_photos/"): "sppfeat eval svm.h5 photos.h5",
    ("docs/python-api.md", "Describer(load_features"): "config = ExtractionConfig(",
    ("docs/detection.md", "--draw-threshold -0.5"): "sppfeat proposals labelled/train",
    ("docs/detection.md", "labelled/test --metric coco"): "--draw-threshold -0.5",
}
EXPECT = {  # a block -> what it prints
    ("README.md", "sppfeat eval svm.h5 demo.h5"): r"^accuracy \d+\.\d+ %",
    ("README.md", "sppfeat eval svm.h5 photos.h5"): r"^accuracy \d+\.\d+ %",
    ("README.md", "print(evaluate("): r"^[01]\.\d+$",
    ("docs/detection.md", "sppfeat proposals labelled/train"): r"^mAP \d+\.\d+% \(11-point AP\)",
    ("docs/detection.md", "labelled/test --metric coco"): r"^AP \d.*AP50",
    ("docs/detection.md", "evaluation.per_class.items()"): r"^mAP \d+\.\d% \(11-point AP\)",
}
OPTIONAL = {"pandas"}  # a block importing one of these, not installed, is skipped (sppfeat does not install it)


@dataclasses.dataclass(frozen=True)
class Block:
    doc: str  # relative to the checkout
    line: int  # of the block's first line in the file
    lang: str
    text: str

    def __str__(self):
        return f"{self.doc}:{self.line}"

    def has(self, key: tuple[str, str]) -> bool:
        return key[0] == self.doc and key[1] in self.text


def fenced(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    blocks, opened = [], None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fence = re.match(r"^```(\S*)\s*$", line)
        if fence and opened is None:
            opened, lines = (n + 1, fence.group(1)), []
        elif fence:
            blocks.append(Block(path.relative_to(ROOT).as_posix(), *opened, "\n".join(lines) + "\n"))
            opened = None
        elif opened is not None:
            lines.append(line)
    return blocks


BLOCKS = [block for doc in DOCS for block in fenced(doc)]
RUN = [block for block in BLOCKS if block.lang != "text" and not any(map(block.has, NOT_RUN))]


def the_block(key: tuple[str, str]) -> Block:
    found = [block for block in BLOCKS if block.has(key)]
    assert len(found) == 1, (key, [str(block) for block in found])
    return found[0]


def commands(block: Block) -> list[tuple[int, str]]:
    """The commands of a bash block (continued lines joined), with their line numbers; no comment lines."""
    found, pending = [], None
    for n, line in enumerate(block.text.splitlines(), block.line):
        if pending is None and (not line.strip() or line.lstrip().startswith("#")):
            continue
        start, text = pending or (n, "")
        pending = (start, text + line[:-1]) if line.endswith("\\") else None
        if pending is None:
            found.append((start, text + line))
    return found


class Store:
    """Each builder's output, made once under root."""

    def __init__(self, root: Path):
        self.root, self.made = root, {}

    def get(self, builder, name: str) -> Path:
        if builder not in self.made:
            out = Path(tempfile.mkdtemp(dir=self.root)) / name
            builder(out, self)
            self.made[builder] = out
        return self.made[builder]


def shell_env(bin_dir: Path) -> dict:
    """PATH with this Python's scripts, behind a `sppfeat` that appends SMALL's options to its command."""
    shim = bin_dir / "sppfeat"
    shim.write_text(f"#!{sys.executable}\nimport sys\nfrom sppfeat.__main__ import run\n"
                    f"sys.argv += {SMALL!r}.get(sys.argv[1] if len(sys.argv) > 1 else '', [])\nrun()\n")
    shim.chmod(0o755)
    return dict(os.environ, PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]))


def run_bash(block: Block, folder: Path, env: dict) -> str:
    out = []
    for n, line in commands(block):
        for old, new in ADAPTED.items():
            line = line.replace(old, new)
        run = subprocess.run(["bash", "-c", line], cwd=folder, env=env, capture_output=True, text=True,
                             timeout=SUBPROCESS_TIMEOUT)
        assert run.returncode == 0, f"{block.doc}:{n}: {line}\nexit code {run.returncode}\n{run.stderr[-3000:]}"
        out.append(run.stdout)
    return "".join(out)


def run_python(block: Block, folder: Path) -> str:
    """exec in `folder` (sppfeat.train_detector and proposals given small_detector()'s settings); an
    exception is named by the document's line."""
    import sppfeat

    path, out, small = str(ROOT / block.doc), io.StringIO(), small_detector()
    code = compile("\n" * (block.line - 1) + block.text, path, "exec")
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.chdir(folder)
        patch.setattr(sppfeat, "train_detector", partial(sppfeat.train_detector, **small))
        patch.setattr(sppfeat, "proposals", partial(sppfeat.proposals, config=small["proposal_config"]))
        try:
            exec(code, {"__name__": "__main__"})
        except Exception as exc:
            lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == path]
            raise AssertionError(f"{block.doc}:{lines[-1]}: {type(exc).__name__}: {exc}") from exc
    return out.getvalue()


class Runner:
    """Runs blocks, each in its folder, and keeps each block's folder and output."""

    def __init__(self, tmp):
        self.tmp, self.store, self.env = tmp, Store(tmp.mktemp("data")), shell_env(tmp.mktemp("bin"))
        self.done: dict[Block, tuple[Path, str]] = {}

    def folder(self, block: Block) -> Path:
        """The block's folder, with the data it names that is not there yet."""
        entries = {name: builder for name, builder in DATA.get(block.doc, {}).items() if name in block.text}
        absent = {str(b.needs) for b in entries.values() if not getattr(b, "needs", ROOT).exists()}
        modules = re.findall(r"^(?:import|from) (\w+)", block.text, re.M) if block.lang == "python" else []
        absent |= {m for m in modules if m in OPTIONAL and importlib.util.find_spec(m) is None}
        if absent:
            pytest.skip(f"needs {', '.join(sorted(absent))}")
        earlier = [(block.doc, text) for key, text in CONTINUES.items() if block.has(key)]
        folder = self.run(the_block(earlier[0]))[0] if earlier else self.tmp.mktemp("block")
        for name, builder in entries.items():
            source, target = self.store.get(builder, Path(name).name), folder / name.rstrip("/")
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                (partial(shutil.copytree, symlinks=True) if source.is_dir() else shutil.copy2)(source, target)
        return folder

    def run(self, block: Block) -> tuple[Path, str]:
        if block not in self.done:
            folder = self.folder(block)
            out = run_bash(block, folder, self.env) if block.lang == "bash" else run_python(block, folder)
            self.done[block] = folder, out
        return self.done[block]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return Runner(tmp_path_factory)


@pytest.mark.parametrize("block", RUN, ids=str)
def test_the_block_runs(block, runner):
    """Each command exits 0 (Python: no exception), and prints what the docs say it prints."""
    out = runner.run(block)[1]
    for key, pattern in EXPECT.items():
        if block.has(key):
            assert re.search(pattern, out, re.M), f"{block}: no {pattern!r} in what it printed:\n{out[-3000:]}"


def test_every_block_is_tagged_and_every_table_names_one_block():
    assert [str(b) for b in BLOCKS if b.lang not in LANGUAGES] == []
    assert [str(b) for b in BLOCKS if b.lang == "text" and any(map(COMMAND.match, b.text.splitlines()))] == []
    for key in [*NOT_RUN, *CONTINUES, *EXPECT, *((doc, text) for (doc, _), text in CONTINUES.items())]:
        the_block(key)
    assert all(len(reason) > 20 for reason in NOT_RUN.values())
    assert [(doc, name) for doc, names in DATA.items() for name in names
            if not any(b.has((doc, name)) for b in RUN)] == []


def test_a_failing_block_is_named_by_its_file_and_line(runner):
    bash = Block("docs/x.md", 10, "bash", "# a comment\ntrue \\\n  --version\nfalse  # fails\n")
    with pytest.raises(AssertionError, match=r"^docs/x\.md:13: false"):
        runner.run(bash)
    python = Block("docs/x.md", 20, "python", "x = 1\n\nraise ValueError('no')\n")
    with pytest.raises(AssertionError, match=r"^docs/x\.md:22: ValueError: no"):
        runner.run(python)
