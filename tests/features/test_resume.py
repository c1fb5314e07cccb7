"""Interrupted extractions: kill -9 at random moments, SIGINT / SIGTERM, damaged progress, refusals."""

import errno
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import DEMO, FAST_ARGS, SUBPROCESS_TIMEOUT, assert_same_rows, fast_config, one_process, run_sppfeat
from conftest import sppfeat_command
from sppfeat import extract
from sppfeat.features.interrupts import ExtractionInterrupted
from sppfeat.storage.progress import SegmentBuffer, parts_path

FAST = [*FAST_ARGS, "--workers", "1", "--checkpoint-every", "16", "-q"]


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    """300 real photos (the 60 demo images, 5 names each) in 6 class folders, plus 3 bad files."""
    root = tmp_path_factory.mktemp("many") / "images"
    for src in sorted(DEMO.rglob("*.jpg")):
        (root / src.parent.name).mkdir(parents=True, exist_ok=True)
        for copy in range(5):
            shutil.copy(src, root / src.parent.name / f"{src.stem}_{copy}.jpg")
    (root / "pizza" / "empty.jpg").write_bytes(b"")
    data = (DEMO / "starfish" / "image_0011.jpg").read_bytes()
    (root / "starfish" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (root / "airplanes" / "notes.jpg").write_text("not a photo")
    return root


@pytest.fixture(scope="module")
def reference(many_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    extract(many_images, out, fast_config(), one_process(checkpoint_every=16), quiet=True)
    return out


def cli(*args):
    return sppfeat_command("extract", *args)


def extract_cli(*args, **options):
    return run_sppfeat("extract", *args, **options)


def assert_same_file(path, reference):
    assert_same_rows(path, reference)
    assert not parts_path(path).exists()


def leftover_processes(out):
    """pids of processes whose command line names `out` (the killed runs and their worker processes)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if str(out).encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def segments_written(out):
    parts = parts_path(out)
    return len([n for n in os.listdir(parts) if n.endswith(".npz")]) if parts.is_dir() else 0


def wait_for_segments(proc, out, n, timeout=60, poll=0.05):
    """Until `out` has n saved segments, the run ends or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while segments_written(out) < n and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(poll)


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_file(many_images, reference, tmp_path):
    """Five kill -9s, each after a random number of newly saved segments plus a random delay (so some
    land while a segment or the final file is being written), then a last --resume to the end."""
    out = tmp_path / "killed.h5"
    rng = random.Random(7)
    saved_at_kill = []
    fast = [*FAST[:-2], "8", "-q"]  # checkpoint every 8 images: 38 segments
    for attempt in range(5):
        proc = subprocess.Popen(cli(many_images, out, *fast, *(["--resume"] if attempt else [])),
                                stderr=subprocess.PIPE)
        wait_for_segments(proc, out, segments_written(out) + rng.randint(0 if attempt == 0 else 1, 3), 120, 0.01)
        time.sleep(rng.uniform(0, 0.1))
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.kill()
        proc.wait()
        saved_at_kill.append(segments_written(out))
    print("segments saved at each kill:", saved_at_kill)
    time.sleep(1)
    assert not leftover_processes(out), "worker processes outlived their killed parent"
    assert len(saved_at_kill) == 5 and saved_at_kill[-1] > 0 and not out.exists()
    done = extract_cli(many_images, out, *fast, "--resume")
    assert done.returncode == 0, done.stderr
    assert_same_file(out, reference)


@pytest.mark.parametrize("signum, code, group", [
    (signal.SIGINT, 130, False),  # kill -INT PID
    (signal.SIGINT, 130, True),  # Ctrl-C in a terminal: the whole process group, workers included
    (signal.SIGTERM, 143, True),  # a scheduler's wall-time limit, `timeout`, `docker stop`
])
def test_sigint_and_sigterm_save_work_and_say_how_to_resume(many_images, reference, tmp_path, signum, code, group):
    out = tmp_path / "stopped.h5"
    proc = subprocess.Popen(cli(many_images, out, *FAST), stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_segments(proc, out, 2)
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0] and "Traceback" not in err
    assert not out.exists() and segments_written(out) >= 2
    again = extract_cli(many_images, out, *FAST, "--resume")
    assert again.returncode == 0, again.stderr
    assert_same_file(out, reference)


def test_a_worker_killed_mid_run_gives_one_line_and_the_work_resumes(many_images, reference, tmp_path):
    """A worker process that dies (the out-of-memory killer picks the biggest process) ends the run
    with one line naming --resume, exit code 1; the finished images are kept."""
    out = tmp_path / "worker.h5"
    proc = subprocess.Popen(cli(many_images, out, *FAST), stderr=subprocess.PIPE, text=True)
    wait_for_segments(proc, out, 2)
    workers = [int(pid) for task in os.listdir(f"/proc/{proc.pid}/task")
               for pid in open(f"/proc/{proc.pid}/task/{task}/children").read().split()]
    assert workers, "no worker process to kill"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "worker process died" in lines[0] and "--resume" in lines[0], err
    assert not out.exists() and segments_written(out) >= 2
    again = extract_cli(many_images, out, *FAST, "--resume")
    assert again.returncode == 0, again.stderr
    assert_same_file(out, reference)


def test_damaged_and_unfinished_segments_are_redone(many_images, reference, tmp_path, monkeypatch):
    out = tmp_path / "damaged.h5"
    calls = {"n": 0}
    real_add = SegmentBuffer.add

    def add_then_stop(self, item):  # an interruption after 100 images
        real_add(self, item)
        calls["n"] += 1
        if calls["n"] == 100:
            raise ExtractionInterrupted(signal.SIGTERM)

    monkeypatch.setattr(SegmentBuffer, "add", add_then_stop)
    with pytest.raises(ExtractionInterrupted, match="resume=True"):
        extract(many_images, out, fast_config(), one_process(checkpoint_every=16), quiet=True)
    monkeypatch.undo()
    parts = parts_path(out)
    names = sorted(n for n in os.listdir(parts) if n.endswith(".npz"))
    assert len(names) >= 6
    data = (parts / names[1]).read_bytes()
    (parts / names[1]).write_bytes(data[: len(data) // 2])  # torn write
    (parts / names[3]).write_bytes(data[:100] + b"\0" * 50 + data[150:])  # flipped bytes
    (parts / (names[4] + ".tmp")).write_bytes(data[:10])  # an unfinished write
    extract(many_images, out, fast_config(), one_process(checkpoint_every=16), resume=True, quiet=True)
    assert_same_file(out, reference)


def test_resume_refuses_other_settings_and_a_changed_folder(many_images, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(many_images / "pizza", images / "pizza")
    shutil.copytree(many_images / "starfish", images / "starfish")
    out = tmp_path / "out.h5"
    proc = subprocess.Popen(cli(images, out, *FAST), stderr=subprocess.PIPE, text=True)
    wait_for_segments(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    refused = extract_cli(images, out, *FAST, "--levels", "3,1", "--resume")
    assert refused.returncode == 2 and "other settings" in refused.stderr and "(now --levels 3,1)" in refused.stderr
    assert "feature_dim" not in refused.stderr, refused.stderr  # the vector length follows from the levels
    no_flag = extract_cli(images, out, *FAST)
    assert no_flag.returncode == 2 and "--resume" in no_flag.stderr
    shutil.copy(DEMO / "pizza" / "image_0011.jpg", images / "pizza" / "new.jpg")
    changed = extract_cli(images, out, *FAST, "--resume")
    assert changed.returncode == 2 and "image folder changed" in changed.stderr
    for result in (refused, no_flag, changed):
        assert len(result.stderr.strip().splitlines()) == 1
    fresh = extract_cli(images, out, *FAST, "--overwrite")
    assert fresh.returncode == 0 and out.exists() and not parts_path(out).exists()
    finished = extract_cli(images, out, *FAST[:-1], "--resume")
    assert finished.returncode == 0 and "already complete" in finished.stderr



def test_ctrl_c_pressed_three_times_is_one_line_and_the_work_resumes(many_images, reference, tmp_path):
    out = tmp_path / "again.h5"
    proc = subprocess.Popen(cli(many_images, out, *FAST), stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_segments(proc, out, 2)
    for _ in range(3):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("sppfeat: interrupted by SIGINT after") and "--resume" in lines[0]
    again = extract_cli(many_images, out, *FAST, "--resume")
    assert again.returncode == 0, again.stderr
    assert_same_file(out, reference)


def test_an_interruption_before_the_first_saved_image_leaves_nothing(many_images, tmp_path, monkeypatch):
    out = tmp_path / "early.h5"

    def stop_at_once(self, item):
        raise ExtractionInterrupted(signal.SIGINT)

    monkeypatch.setattr(SegmentBuffer, "add", stop_at_once)
    with pytest.raises(ExtractionInterrupted, match="before any image was saved; nothing is left behind"):
        extract(many_images, out, fast_config(), one_process(checkpoint_every=16), quiet=True)
    assert not parts_path(out).exists() and not out.exists()


@pytest.mark.parametrize("where", ["segment", "final copy"])
def test_a_full_disk_stops_with_one_line_and_resume_completes(many_images, reference, tmp_path, monkeypatch, where):
    """ENOSPC injected while a progress segment or the final file is written: the finished segments
    stay, the message names the folder and the space needed, and --resume gives the whole file."""
    from sppfeat.features.interrupts import DiskFull
    from sppfeat.storage.feature_file import FeatureWriter
    from sppfeat.storage.progress import ProgressFolder

    out = tmp_path / "full.h5"
    target, method = (ProgressFolder, "write") if where == "segment" else (FeatureWriter, "append")
    real = getattr(target, method)
    calls = {"n": 0}

    def fill_up(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 4:  # the disk stays full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(target, method, fill_up)
    with pytest.raises(DiskFull, match=rf"the disk is full: {tmp_path} needs about [\d.]+ MiB more.*resume=True"):
        extract(many_images, out, fast_config(), one_process(checkpoint_every=16), quiet=True)
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    assert segments_written(out) == (3 if where == "segment" else 19)  # 300 listed images: 19 segments
    monkeypatch.undo()
    extract(many_images, out, fast_config(), one_process(checkpoint_every=16), resume=True, quiet=True)
    assert_same_file(out, reference)


def test_progress_lines_when_stderr_is_not_a_terminal(many_images, tmp_path):
    out = tmp_path / "logged.h5"
    run = extract_cli(many_images, out, *FAST[:-1], env=dict(os.environ, SPPFEAT_PROGRESS_SECONDS="0.2"))
    assert run.returncode == 0, run.stderr
    progress = [line for line in run.stderr.splitlines() if line.startswith("sppfeat: extract ")]
    assert len(progress) >= 2, run.stderr
    for line in progress:
        assert re.fullmatch(r"sppfeat: extract \d+/301 images, \d+\.\d images/s(, ETA \d+(m\d\ds|s))?", line), line
    assert "\r" not in run.stderr and "it/s" not in run.stderr  # no progress bar in a log
