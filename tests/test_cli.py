"""The command line: options parsed once into typed settings, one-line errors with one prefix, a
fast start, info and backbones."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner

from conftest import (DEMO, FAST_ARGS, SUBPROCESS_TIMEOUT, fast_config, one_process, run_sppfeat,
                      sppfeat_command)
from sppfeat import ExtractionConfig, evaluate, extract
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
    assert "format 2" in info.output and not re.search(r"^\s+split\s*$", info.output, re.M)
    again = run_cli("extract", folder, out, "--quiet")
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert run_cli("extract", folder, out, "--quiet", "--overwrite", "--scale", "64").exit_code == 0


def test_cli_errors_are_one_line_exit_2(tmp_path):
    """Through the real entry point: exit code 2, one line on stderr, no traceback."""
    (tmp_path / "empty").mkdir()
    cases = [(["extract", tmp_path / "missing", tmp_path / "o.h5"], "'IMAGES': Path"),
             (["extract"], "Missing argument 'IMAGES'"),
             (["extract", tmp_path / "empty", tmp_path / "o.h5"], "no images found"),
             (["extract", DEMO, tmp_path / "o.h5", "--levels", "3,x"], "'--levels': expected comma-separated"),
             (["extract", DEMO, tmp_path / "o.h5", "--device", "cuda:7"], "no CUDA device"),
             (["extract", DEMO, tmp_path / "no" / "o.h5"], "output folder does not exist"),
             (["info", tmp_path / "nothing.h5"], "does not exist"),
             (["info", DEMO / "pizza" / "image_0011.jpg"], "not an HDF5 file")]
    for args, message in cases:
        proc = run_sppfeat(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0] and lines[0].startswith("sppfeat: "), (args, proc.stderr)
    assert not (tmp_path / "o.h5").exists()


def test_option_values_are_checked_when_parsed(tmp_path):
    """Bad values fail in the option's own type, before any work, naming the option."""
    cases = [(["extract", DEMO, tmp_path / "o.h5", "--levels", "3,0"], "'--levels': levels must be one or more"),
             (["extract", DEMO, tmp_path / "o.h5", "--scale", "224,224"], "'--scale': scales must be distinct"),
             (["extract", DEMO, tmp_path / "o.h5", "--scale", "-1"], "'--scale': scales must be distinct"),
             (["extract", DEMO, tmp_path / "o.h5", "--shard", "3/3"], "'--shard': shard (i, n) needs"),
             (["extract", DEMO, tmp_path / "o.h5", "--shard", "x"], "'--shard': expected i/n"),
             (["train-svm", tmp_path / "f.h5", tmp_path / "m.h5", "--C", "-1"], "'--C': C must be a positive number"),
             (["train-svm", tmp_path / "f.h5", tmp_path / "m.h5", "--C", "big"], "'--C': expected a positive"),
             (["train-svm", tmp_path / "f.h5", tmp_path / "m.h5", "--C", "inf"], "'--C': C must be a positive number"),
             (["train-svm", tmp_path / "f.h5", tmp_path / "m.h5", "--power", "nan"], "'--power': nan is not a finite"),
             (["train-svm", tmp_path / "f.h5", tmp_path / "m.h5", "--test-fraction", "nan"],
              "'--test-fraction': nan is not a finite"),
             (["extract", DEMO, tmp_path / "o.h5", "--decode-timeout", "inf"], "'--decode-timeout': inf is not in the"),
             (["extract", DEMO, tmp_path / "o.h5", "--decode-timeout", "1e12"], "'--decode-timeout': 1000000000000.0"),
             (["extract", DEMO, tmp_path / "o.h5", "--batch-size", "1" + "0" * 20], "'--batch-size': 1000000000"),
             (["extract", DEMO, tmp_path / "o.h5", "--max-side", "1" + "0" * 20], "'--max-side': 1000000000"),
             (["extract", DEMO, tmp_path / "o.h5", "--levels", "1000"], "'--levels': levels must be one or more"),
             (["train-detector", DEMO, DEMO, tmp_path / "m.h5", "--head-lr", "inf"], "'--head-lr': inf is not a fin"),
             (["train-detector", DEMO, DEMO, tmp_path / "m.h5", "--C", "nan"], "'--C': nan is not a finite"),
             (["train-detector", DEMO, DEMO, tmp_path / "m.h5", "--head-hidden", "1024,,1024"],
              "'--head-hidden': expected comma-separated integers"),
             (["train-detector", DEMO, DEMO, tmp_path / "m.h5", "--context", "inf"], "'--context': context must be"),
             (["train-detector", DEMO, DEMO, tmp_path / "m.h5", "--head", "--mirror"],
              "--mirror: applies to the linear SVMs (--no-head) only"),
             (["detect", __file__, DEMO, "--threshold", "nan"], "'--threshold': nan is not a finite"),
             (["detect", __file__, DEMO, "--draw-threshold", "-inf"], "'--draw-threshold': -inf is not a finite")]
    for args, message in cases:
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0] and lines[0].startswith("sppfeat: "), (args, result.output)
    assert not (tmp_path / "o.h5").exists()


def test_the_api_names_arguments_and_the_cli_names_flags(tmp_path, demo_features):
    folder = tmp_path / "few"
    shutil.copytree(DEMO / "pizza", folder)
    out = tmp_path / "o.h5"
    out.write_text("in the way")
    with pytest.raises(ValueError, match=r"pass overwrite=True to replace it"):
        extract(folder, out, fast_config())
    result = run_cli("extract", folder, out, *FAST_ARGS)
    assert result.exit_code == 2 and "pass --overwrite to replace it" in result.output
    with pytest.raises(ValueError, match=r"test_fraction=N does not apply to protocol='per-class'"):
        from sppfeat import train_svm

        train_svm(demo_features, tmp_path / "m.h5", protocol="per-class", test_fraction=0.5)
    result = run_cli("train-svm", demo_features, tmp_path / "m.h5", "--protocol", "per-class", "--test-fraction", "0.5")
    assert "--test-fraction N does not apply to --protocol per-class" in result.output, result.output


@pytest.mark.parametrize("args", [["--help"], ["backbones"], ["extract", "--levels", "x", "a", "b"]])
def test_help_backbones_and_argument_errors_start_without_torch(args):
    """`python -X importtime` lists every module imported: torch must not be among them."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sppfeat",
                           *args], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "sppfeat.cli" in imported and "click" in imported
    assert not {name for name in imported if name == "torch" or name.startswith("torch.")}


def test_every_option_has_help_text():
    for command in main.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help", "version"):
                assert param.help, (command.name, param.name)


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
def test_ctrl_c_while_starting_is_one_line_and_leaves_nothing_behind(tmp_path, delay):
    """SIGINT at several moments of start-up (interpreter, imports, model loading): no traceback, at
    most one line, and a plain rerun works."""
    folder = tmp_path / "few"
    shutil.copytree(DEMO / "pizza", folder)
    out = tmp_path / "o.h5"
    proc = subprocess.Popen(sppfeat_command("extract", folder, out, *FAST_ARGS, "--workers", "1"),
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) <= 1, err
    assert proc.returncode in (0, 130, -signal.SIGINT), err
    if proc.returncode == 130:
        assert lines[0].startswith("sppfeat: ") and "interrupted" in lines[0]
    again = run_sppfeat("extract", folder, out, *FAST_ARGS, "--workers", "1", "--overwrite")
    assert again.returncode == 0, again.stderr


def test_backbones_command_lists_offline_weights():
    result = run_cli("backbones")
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("efficientnet_lite0"))
    assert "1280" in line and "(x-127)/128" in line and line.rstrip().endswith("yes")
    assert "resnet50" in result.output and "vgg16" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 100


def test_progress_rate_counts_only_this_runs_images(monkeypatch):
    """After a resume, 40 of 100 done before: 20 more in 10 s is 2.0 images/s, 40 left: 20 s."""
    import sppfeat.meter as meter

    clock = iter([100.0, 110.0])
    monkeypatch.setattr(meter.time, "monotonic", lambda: next(clock))
    progress = meter.Meter("extract", 100, done=40, quiet=True)
    progress.update(20)
    assert progress.line(110.0) == "extract 60/100 images, 2.0 images/s, ETA 20s"
    assert meter.duration(3725) == "1h02m05s" and meter.duration(225) == "3m45s"
    clock = iter([0.0, 50.0])  # items slower than one per 10 s show their time: 2 classes in 50 s, 18 left
    slow = meter.Meter("round 0 SVMs", 20, quiet=True, unit="classes")
    slow.update(2)
    assert slow.line(50.0) == "round 0 SVMs 2/20 classes, 25.0 s each, ETA 7m30s"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A model on the demo images at the fast settings (one training image per class)."""
    from sppfeat import train_svm

    folder = tmp_path_factory.mktemp("tiny")
    features, model = folder / "demo.h5", folder / "model.h5"
    extract(DEMO, features, fast_config(), one_process(), quiet=True)
    train_svm(features, model, C=1.0, protocol="per-class", train_per_class=1, test_per_class=0)
    return features, model


def unbuffered_off() -> dict:
    """The environment without PYTHONUNBUFFERED: stdout into a pipe block-buffered, as users have it."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}


def test_predict_into_a_closed_pipe_stops_quietly(tiny_model, tmp_path):
    """`sppfeat predict MODEL DIR | head -1`: once the reader has gone the run stops (the progress
    lines show how far it got) and exits like a Unix tool, without a message."""
    folder = tmp_path / "many"
    folder.mkdir()
    images = sorted(DEMO.glob("*/*.jpg"))
    for i in range(240):
        (folder / f"{i:03d}.jpg").symlink_to(images[i % len(images)])
    proc = subprocess.Popen(sppfeat_command("predict", tiny_model[1], folder),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**unbuffered_off(), "SPPFEAT_PROGRESS_SECONDS": "0"})
    assert proc.stdout.readline().startswith("predicted")
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=SUBPROCESS_TIMEOUT)
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception" not in err, err
    assert proc.returncode in (0, 141), err
    done = [int(n) for n in re.findall(r"predict (\d+)/240 images", err)]
    assert done and done[-1] < 120, err
    assert not [line for line in err.splitlines() if not line.startswith("sppfeat: predict ")], err


def test_a_command_whose_reader_left_at_once_exits_quietly():
    """`sppfeat backbones | true`: the table's only write fails; no message, a Unix tool's exit code."""
    proc = subprocess.Popen(sppfeat_command("backbones"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=unbuffered_off())
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=SUBPROCESS_TIMEOUT)
    assert err == "" and proc.returncode in (0, 141), (proc.returncode, err)


def test_a_broken_pipe_that_is_not_stdout_stays_an_error(monkeypatch):
    """A worker's pipe, say: one line and exit 1, as other failures of the machine."""
    import sppfeat.report

    def broken():
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sppfeat.report, "backbones_table", broken)
    result = run_cli("backbones")
    assert result.exit_code == 1 and result.output == "sppfeat: [Errno 32] Broken pipe\n", result.output


def test_a_scale_beyond_max_side_is_refused():
    """Images are capped at max_side on the longer side: a larger shorter side cannot be meant."""
    with pytest.raises(ValueError, match=r"scales=\(4096,\) cannot take effect with max_side=2048"):
        ExtractionConfig(scales=(4096,))
    assert ExtractionConfig(scales=(2048,)).scales == (2048,)
    made_before = {**ExtractionConfig(scales=(224,)).resolved("folder", None, "cpu").to_record(), "scale": [4096]}
    assert ExtractionConfig.from_record(made_before).scales == (4096,)  # a file written before the check still opens
    result = run_cli("extract", DEMO, "o.h5", "--scale", "224,10000")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("sppfeat: --scale 224,10000 cannot take effect with --max-side 2048: "), \
        result.output
    beyond = run_cli("extract", DEMO, "o.h5", "--scale", "224,100000")  # past any image format's side
    assert beyond.exit_code == 2 and "'--scale': scales must be distinct integers from 0 to 65535" in beyond.output
    assert run_cli("extract", DEMO, "o.h5", "--scale", "640", "--max-side", "600").output.startswith(
        "sppfeat: --scale 640 cannot take effect with --max-side 600: ")


def test_a_wrong_type_names_the_arguments_own_example():
    with pytest.raises(ValueError, match=r"scales must be a sequence of integers such as \(224,\)"):
        ExtractionConfig(scales="224")
    with pytest.raises(ValueError, match=r"levels must be a sequence of integers such as \(6, 3, 2, 1\)"):
        ExtractionConfig(levels="6,3")


def test_extract_takes_one_image_file(tmp_path):
    """As predict does: one row, named by the file's name (its folder is the root)."""
    image = DEMO / "pizza" / "image_0011.jpg"
    out = tmp_path / "one.h5"
    result = run_cli("extract", image, out, *FAST_ARGS, "--workers", "0", "--quiet")
    assert result.exit_code == 0, result.output
    features = open_features(out)
    assert features.paths == ["image_0011.jpg"] and features.read_features().shape == (1, 1280 * 5)
    assert features.record["image_root"] == str(image.parent)
    (tmp_path / "notes.txt").write_text("not a picture")
    refused = run_cli("extract", tmp_path / "notes.txt", tmp_path / "two.h5", "--quiet")
    assert refused.exit_code == 2 and "not an image" in refused.output, refused.output


def test_mismatched_settings_are_shown_as_the_caller_writes_them(tiny_model, tmp_path):
    """A model of --levels 2,1 on features of --levels 1: the API shows levels=(1,), the command
    line --levels 1 (never a Python list)."""
    features, model = tiny_model
    other = tmp_path / "other.h5"
    extract(DEMO / "pizza", other, fast_config(levels=(1,)), one_process(), quiet=True)
    with pytest.raises(ValueError, match=r"with levels=\(1,\), the model with levels=\(2, 1\)$"):
        evaluate(model, other)
    result = run_cli("eval", model, other)
    assert result.exit_code == 2 and result.output.endswith(" with --levels 1, the model with --levels 2,1\n"), \
        result.output


def test_a_resume_with_other_settings_shows_them_as_the_caller_writes_them(tmp_path):
    from sppfeat.cli import cli_wording
    from sppfeat.storage.progress import ProgressFolder

    progress = ProgressFolder(tmp_path / "out.h5")
    old = {**ExtractionConfig(scales=(224, 288)).for_device("cpu").to_record(), "image_root": "/a"}
    new = {**ExtractionConfig(scales=(224,), levels=(2, 1), shapes="bucketed", compute="float32").to_record(),
           "image_root": "/a"}
    progress.create({"config": old, "shard": [0, 1], "listing_sha256": "x", "n_listed": 1})
    with pytest.raises(ValueError) as refused:
        progress.check_resumable({"config": new, "shard": [0, 1], "listing_sha256": "x", "n_listed": 1})
    message = str(refused.value)
    assert "levels=(6, 3, 2, 1) (now levels=(2, 1)), scales=(224, 288) (now scales=(224,)), " \
           "shapes='exact' (now shapes='bucketed')" in message, message
    assert "--levels 6,3,2,1 (now --levels 2,1), --scale 224,288 (now --scale 224), --exact (now --bucketed)" \
        in cli_wording(message), cli_wording(message)


def test_the_progress_bar_counts_images(monkeypatch):
    import io

    import sppfeat.meter as meter

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    progress = meter.Meter("extract", 10)
    progress.update(4)
    progress.close()
    shown = sys.stderr.getvalue()
    assert re.search(r"4/10 .* images/s", shown) and "ima/s" not in shown, shown


def test_eval_replaces_its_report_and_pictures_only_with_overwrite(tiny_model, tmp_path):
    """An existing --report or a --plots folder that is not empty: one line naming --overwrite, before
    any work; with --overwrite both are replaced (so `make demo` runs twice in a row)."""
    features, model = tiny_model
    report, plots = tmp_path / "report.json", tmp_path / "plots"
    first = run_cli("eval", model, features, "--report", report, "--plots", plots)
    assert first.exit_code == 0, first.output
    made = report.stat().st_mtime_ns
    for args in (["--report", report], ["--plots", plots]):
        refused = run_cli("eval", model, features, *args)
        assert refused.exit_code == 2 and "--overwrite" in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1, refused.output
    again = run_cli("eval", model, features, "--report", report, "--plots", plots, "--overwrite")
    assert again.exit_code == 0, again.output
    assert report.stat().st_mtime_ns > made and (plots / "confusion_matrix.png").is_file()
