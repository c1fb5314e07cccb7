"""benchmarks/gpu.py, the prepared GPU measurement, run once on the CPU on a handful of images: a
smoke test of the script itself (every step runs and reports), not a timing."""

import json
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import DEMO, ROOT, SUBPROCESS_TIMEOUT, VOC_SAMPLE

VOC = VOC_SAMPLE / "VOCdevkit" / "VOC2007"


def packed_voc(folder):
    """Three VOC images, their XML and a windows file (a grid of windows over each image), as
    `gpu.py pack --voc` lays them out; None without the shared sample."""
    if not VOC.is_dir():
        return None
    (folder / "images").mkdir(parents=True)
    (folder / "Annotations").mkdir()
    rows = ["path,x1,y1,x2,y2"]
    for image_id in ("000012", "000017", "000023"):
        shutil.copy(VOC / "JPEGImages" / f"{image_id}.jpg", folder / "images")
        shutil.copy(VOC / "Annotations" / f"{image_id}.xml", folder / "Annotations")
        width, height = Image.open(VOC / "JPEGImages" / f"{image_id}.jpg").size
        for x in np.linspace(0, width * 0.6, 5):
            for y in np.linspace(0, height * 0.6, 5):
                rows.append(f"{image_id}.jpg,{x:.0f},{y:.0f},{x + width * 0.4:.0f},{y + height * 0.4:.0f}")
    (folder / "windows.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_the_gpu_benchmark_runs_every_step_on_the_cpu(tmp_path):
    images = tmp_path / "images"
    for folder in sorted(DEMO.iterdir())[:2]:
        (images / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:4]:
            shutil.copy(photo, images / folder.name / photo.name)
    voc = packed_voc(tmp_path / "voc")
    detection = ["--voc", str(voc), "--epochs", "1"] if voc else []
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "run", str(images), "--device", "cpu",
                           "--repeat", "2", "--a-images", "3", "--out", str(tmp_path / "out"), *detection],
                          capture_output=True, text=True, timeout=3 * SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "gpu.jsonl").read_text().splitlines()]
    steps = {row["step"]: row for row in rows}
    assert [row for row in rows if "error" in row] == []
    assert set(steps) == {"env", "shapes", "C", "A", "B", "ratios", "decode", "writer", "C_exact", "C_process",
                          *(("train_detector", "detect") if voc else ())}
    assert steps["env"]["images"] == 16 and steps["C"]["images"] == 16 and steps["C_process"]["images"] == 16
    assert steps["shapes"]["bucketed"] <= steps["shapes"]["exact"]
    assert steps["A"]["images_per_s"] > 0 and steps["writer"]["rows"] == 16
    if voc:
        assert steps["train_detector"]["images"] == 3 and steps["train_detector"]["epochs"] == 1
        assert steps["detect"]["images"] == 3 and steps["detect"]["detections"] > 0
