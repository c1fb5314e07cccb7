"""The command line: options parsed once into typed settings, one-line errors, info and backbones."""

import shutil

from click.testing import CliRunner

from conftest import DEMO, run_sppfeat
from sppfeat.cli import main
from sppfeat.storage.feature_file import open_features


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_end_to_end_and_info(tmp_path):
    folder = tmp_path / "two"
    for cls in ("pizza", "starfish"):
        shutil.copytree(DEMO / cls, folder / cls)
    out = tmp_path / "f.h5"
    result = run_cli("extract", folder, out, "--scale", "128,96", "--levels", "2,1", "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    config = open_features(out).config
    assert config.scales == (128, 96) and config.levels == (2, 1)
    info = run_cli("info", out)
    assert info.exit_code == 0 and "20 × 6400" in info.output and "efficientnet_lite0" in info.output
    assert "format 2" in info.output
    again = run_cli("extract", folder, out, "--quiet")
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert run_cli("extract", folder, out, "--quiet", "--overwrite", "--scale", "64").exit_code == 0


def test_cli_errors_are_one_line_exit_2(tmp_path):
    """Through the real entry point: exit code 2, one line on stderr, no traceback."""
    (tmp_path / "empty").mkdir()
    cases = [(["extract", tmp_path / "missing", tmp_path / "o.h5"], "image folder not found"),
             (["extract", tmp_path / "empty", tmp_path / "o.h5"], "no images found"),
             (["extract", DEMO, tmp_path / "o.h5", "--levels", "3,x"], "'--levels': expected comma-separated"),
             (["extract", DEMO, tmp_path / "o.h5", "--device", "cuda:7"], "no CUDA device"),
             (["extract", DEMO, tmp_path / "no" / "o.h5"], "output folder does not exist"),
             (["info", tmp_path / "nothing.h5"], "not found")]
    for args, message in cases:
        proc = run_sppfeat(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], (args, proc.stderr)
    assert not (tmp_path / "o.h5").exists()


def test_option_values_are_checked_when_parsed(tmp_path):
    """Bad values fail in the option's own type, before any work, naming the option."""
    cases = [(["extract", DEMO, tmp_path / "o.h5", "--levels", "3,0"], "'--levels': levels must be one or more"),
             (["extract", DEMO, tmp_path / "o.h5", "--scale", "224,224"], "'--scale': scales must be distinct"),
             (["extract", DEMO, tmp_path / "o.h5", "--scale", "-1"], "'--scale': scales must be distinct"),
             (["extract", DEMO, tmp_path / "o.h5", "--shard", "3/3"], "'--shard': shard (i, n) needs"),
             (["extract", DEMO, tmp_path / "o.h5", "--shard", "x"], "'--shard': expected i/n"),
             (["train-svm", tmp_path / "f.h5", tmp_path / "m.h5", "--C", "-1"], "'--C': C must be positive"),
             (["train-svm", tmp_path / "f.h5", tmp_path / "m.h5", "--C", "big"], "'--C': expected a positive")]
    for args, message in cases:
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], (args, result.output)
    assert not (tmp_path / "o.h5").exists()


def test_backbones_command_lists_offline_weights():
    result = run_cli("backbones")
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("efficientnet_lite0"))
    assert "1280" in line and "(x - 127) / 128" in line and line.rstrip().endswith("yes")
    assert "resnet50" in result.output and "vgg16" in result.output
