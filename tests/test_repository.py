"""The repository itself: no build outputs committed, and no install that downgrades PyTorch."""

import re
import shutil
import subprocess

import pytest

from conftest import ROOT

BUILD_OUTPUTS = ["tool-1.0-py3-none-any.whl", "ext.cpython-311-x86_64-linux-gnu.so", "sppfeat-0.1.0.tar.gz",
                 "dist/anything"]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="not a git checkout")
def test_no_build_output_is_committed_and_git_ignores_them():
    tracked = git("ls-files").splitlines()
    assert [p for p in tracked if p.endswith((".whl", ".so", ".tar.gz")) or p.startswith("dist/")] == []
    assert git("check-ignore", "--no-index", *BUILD_OUTPUTS).split() == BUILD_OUTPUTS


def test_pytorch_has_no_upper_bound():
    """A cap makes pip replace a user's newer PyTorch (gigabytes); only a known break may add one."""
    requirements = re.findall(r'"((?:torch|torchvision)\b[^"]*)"', (ROOT / "pyproject.toml").read_text())
    assert len(requirements) == 2 and all("<" not in r for r in requirements), requirements
