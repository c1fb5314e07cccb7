"""The worker processes of the detection runs (runs.Workers, run_images): results in order from other
processes, at most a few ahead of the consumer, an error raised where the run is, and a worker that
dies stops the run with what is saved, never a hang."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, SUBPROCESS_TIMEOUT
from sppfeat.detection.runs import PREFETCH, ImageResult, PartsFolder, Workers, run_images
from sppfeat.features.interrupts import StopSignals, WorkerFailed


def test_results_come_in_order_from_other_processes():
    factor = 3
    with Workers(lambda i: (factor * i, os.getpid()), 2) as workers:  # a closure: inherited, never pickled
        out = list(workers.map(range(20)))
    assert [value for value, _ in out] == [3 * i for i in range(20)]
    assert os.getpid() not in {pid for _, pid in out}


def test_the_workers_wait_when_they_are_ahead_of_the_consumer(tmp_path):
    def mark(i):
        (tmp_path / str(i)).touch()
        return i

    with Workers(mark, 2) as workers:
        stream = workers.map(range(20))
        assert next(stream) == 0
        started = len(list(tmp_path.iterdir()))
        assert list(stream) == list(range(1, 20))  # whatever ran ahead is not lost
    assert 1 <= started <= PREFETCH * 2


def test_an_error_in_a_worker_is_raised_in_the_run():
    def fail(i):
        if i == 3:
            raise ValueError(f"image {i} is bad")
        return i

    with pytest.raises(ValueError, match="image 3 is bad"), Workers(fail, 2) as workers:
        list(workers.map(range(10)))


def test_a_dead_worker_stops_the_run_and_says_what_is_saved(tmp_path):
    def work(i):
        if i == 40:
            os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
        return ImageResult(i, {"x": np.full(1, i)})

    parts = PartsFolder(tmp_path / "out.csv")
    parts.open({"run": 1}, resume=False, overwrite=False)
    with pytest.raises(WorkerFailed, match=r"worker process died .*; 40 of 50 images are saved .* resume=True"):
        run_images(work, range(50), parts, total=50, processes=2, quiet=True)
    assert parts.done() == set(range(40))  # every result before the dead one, in order


def test_the_workers_do_not_inherit_the_runs_stop_handlers():
    def handlers(i):
        return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), \
            signal.pthread_sigmask(signal.SIG_BLOCK, [])

    with StopSignals() as stop, Workers(handlers, 2) as workers:
        out = list(workers.map(range(4)))
        assert signal.getsignal(signal.SIGTERM) == stop._handle  # this process still stops cleanly
    assert out == [(signal.SIG_IGN, signal.SIG_DFL, set())] * 4
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()


def test_stopping_the_workers_prints_nothing_after_a_run_or_a_sigterm(tmp_path):
    """Idle workers stopped after a finished run, or after SIGTERM stopped it, die quietly: before,
    each printed the traceback of the run's own ExtractionInterrupted (or an EOFError), exit code 0."""
    script = textwrap.dedent(f"""
        import os, signal, time
        import numpy as np
        from sppfeat.detection.runs import ImageResult, PartsFolder, run_images
        from sppfeat.features.interrupts import ExtractionInterrupted

        def work(i):
            time.sleep(0.01)
            return ImageResult(i, {{"x": np.full(1, i)}})

        for run in range(3):
            run_images(work, range(6), None, total=6, processes=2, quiet=True)
        parts = PartsFolder({str(tmp_path / "out.csv")!r})
        parts.open({{"run": 1}}, resume=False, overwrite=False)
        stop = lambda result: result.index == 3 and os.kill(os.getpid(), signal.SIGTERM)
        try:
            run_images(work, range(20), parts, total=20, processes=2, quiet=True, on_result=stop)
        except ExtractionInterrupted as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "interrupted by SIGTERM after 4 of 20 images; they are saved in" in proc.stdout
