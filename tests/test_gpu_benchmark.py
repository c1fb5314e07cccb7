"""benchmarks/gpu.py, the prepared GPU measurement, run once on the CPU on a handful of images: a
smoke test of the script itself (every step runs and reports), not a timing."""

import json
import shutil
import subprocess
import sys

from conftest import DEMO, ROOT, SUBPROCESS_TIMEOUT


def test_the_gpu_benchmark_runs_every_step_on_the_cpu(tmp_path):
    images = tmp_path / "images"
    for folder in sorted(DEMO.iterdir())[:2]:
        (images / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:4]:
            shutil.copy(photo, images / folder.name / photo.name)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "run", str(images), "--device", "cpu",
                           "--repeat", "2", "--a-images", "3", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=3 * SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "gpu.jsonl").read_text().splitlines()]
    steps = {row["step"]: row for row in rows}
    assert [row for row in rows if "error" in row] == []
    assert set(steps) == {"env", "shapes", "C", "A", "B", "ratios", "decode", "writer", "C_exact", "C_process"}
    assert steps["env"]["images"] == 16 and steps["C"]["images"] == 16 and steps["C_process"]["images"] == 16
    assert steps["shapes"]["bucketed"] <= steps["shapes"]["exact"]
    assert steps["A"]["images_per_s"] > 0 and steps["writer"]["rows"] == 16
