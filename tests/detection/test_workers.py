"""The worker processes of the detection runs (runs.Workers, run_images): results in order from other
processes, at most a few ahead of the consumer, an error raised where the run is, and a worker that
dies stops the run with what is saved, never a hang."""

import os
import signal

import numpy as np
import pytest

from sppfeat.detection.runs import PREFETCH, ImageResult, PartsFolder, Workers, run_images
from sppfeat.features.interrupts import WorkerFailed


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
