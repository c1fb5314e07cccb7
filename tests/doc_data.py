"""The data the doc blocks use (tests/test_doc_blocks.py), under the names the blocks give it: small real
data made by builders, each of which makes one file or folder at `out` (built once per session, then
copied into a block's folder), and the settings that make detectors train in seconds."""

import dataclasses
import json
import os
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

from conftest import CALTECH, DEMO, VOC_SAMPLE, fast_config, one_process

VOC = VOC_SAMPLE / "VOCdevkit" / "VOC2007"
SEARCH = ["--search-side", "200", "--max-boxes", "300"]
SMALL = {"proposals": SEARCH, "train-detector": [  # appended to these commands; SVMs or a head, whichever trains
    "--scale", "160", "--levels", "2,1", "--rounds", "1", "--head-epochs", "2", "--head-hidden", "64",
    "--head-reduce", "32", *SEARCH]}


def small_detector() -> dict:
    """SMALL's settings as train_detector's arguments (proposals takes the search's)."""
    from sppfeat import DETECTION_DEFAULTS, ProposalConfig, TrainingSettings
    from sppfeat.detection.settings import DEFAULT_HEAD

    return {"config": dataclasses.replace(DETECTION_DEFAULTS, scales=(160,), levels=(2, 1)),
            "settings": TrainingSettings(rounds=1),
            "head": DEFAULT_HEAD and dataclasses.replace(DEFAULT_HEAD, epochs=2, hidden=(64,), reduced=32),
            "proposal_config": ProposalConfig(max_side=200, max_boxes=300)}


def needs(path: Path, builder):
    """The builder, marked as reading `path` (a block that uses it is skipped without it)."""
    builder.needs = path
    return builder


def link(target: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, out)


def demo_classes(out, store, classes=("Leopards", "pizza", "starfish"), per_class=5):
    for c in classes:
        for f in sorted((DEMO / c).iterdir())[:per_class]:
            link(f, out / c / f.name)


def demo_flat(out, store):
    for f in sorted((DEMO / "airplanes").iterdir())[:3] + sorted((DEMO / "pizza").iterdir())[-2:]:
        link(f, out / f"{f.parent.name}_{f.name}")


def demo_file(out, store, name="pizza/image_0011.jpg"):  # 300 × 300: room for python-api.md's boxes
    from PIL import Image

    Image.open(DEMO / name).save(out)


def examples(out, store):
    demo_classes(out / "demo_images", store, sorted(p.name for p in DEMO.iterdir()), 10)


def caltech(out, store):
    for c in ("BACKGROUND_Google", "Leopards"):  # the protocol's 30 training photos per class, and 2 to test
        for f in sorted((CALTECH / c).iterdir())[:32]:
            link(f, out / c / f.name)


def voc_lines(name: str) -> list[list[str]]:
    return [line.split() for line in (VOC / "ImageSets" / "Main" / name).read_text().splitlines()]


def vocdevkit(out, store):
    """VOCdevkit/VOC2007: trainval holds 3 positives of every class (train-svm's 3 folds), test 6 images."""
    classes = sorted(f.name[:-10] for f in (VOC / "ImageSets" / "Main").glob("*_train.txt"))
    labels = {split: {c: dict(voc_lines(f"{c}_{split}.txt")) for c in classes} for split in ("train", "val")}
    chosen = []
    for (i,) in voc_lines("train.txt"):
        if any(labels["train"][c][i] == "1" and sum(labels["train"][c][j] == "1" for j in chosen) < 3
               for c in classes):
            chosen.append(i)
    main = out / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for split, source, ids in (("trainval", "train", chosen), ("test", "val", [i for i, in voc_lines("val.txt")[:6]])):
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for c in classes:
            (main / f"{c}_{split}.txt").write_text("".join(f"{i} {labels[source][c][i]}\n" for i in ids))
        for i in ids:
            link(VOC / "JPEGImages" / f"{i}.jpg", out / "VOC2007" / "JPEGImages" / f"{i}.jpg")


DETECT_TRAIN, DETECT_TEST = ["000012", "000017", "000023", "000033"], ["000021", "000060"]


def voc_files(out, store, ids=DETECT_TRAIN, kinds=("JPEGImages",)):
    """Links to the sample's photos (JPEGImages) and/or annotations (Annotations) of `ids`, in one folder."""
    for i in ids:
        for kind in kinds:
            name = f"{i}.jpg" if kind == "JPEGImages" else f"{i}.xml"
            link(VOC / kind / name, out / name)


def voc_split(out, store, ids):
    voc_files(out / "photos", store, ids)
    voc_files(out / "Annotations", store, ids, ("Annotations",))


def voc_objects(i: str):
    """(class, [x1, y1, x2, y2] 0-based half-open, difficult) of each object of a VOC annotation; its size."""
    root = ET.parse(VOC / "Annotations" / f"{i}.xml").getroot()
    objects = [(o.findtext("name"), [float(o.findtext(f"bndbox/{k}")) - k.endswith("min") for k in
                                     ("xmin", "ymin", "xmax", "ymax")], o.findtext("difficult") == "1")
               for o in root.iter("object")]
    return objects, int(root.findtext("size/width")), int(root.findtext("size/height"))


def coco(out, store, classes=("car", "person")):
    """A COCO JSON of the cars and people of the first 20 training images (13 have some), converted by hand."""
    images, annotations = [], []
    for (i,) in voc_lines("train.txt")[:20]:
        objects, w, h = voc_objects(i)
        boxes = [(c, b) for c, b, difficult in objects if c in classes and not difficult]
        if boxes:
            images.append({"id": len(images) + 1, "file_name": f"{i}.jpg", "width": w, "height": h})
        annotations += [{"id": len(annotations) + k + 1, "image_id": len(images), "category_id": classes.index(c) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
                        for k, (c, (x1, y1, x2, y2)) in enumerate(boxes)]
    out.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}))


def coco_images(out, store):
    for image in json.loads(store.get(COCO, "boxes.coco.json").read_text())["images"]:
        link(VOC / "JPEGImages" / image["file_name"], out / image["file_name"])


def labelimg(out, store):
    """LabelImg's layout: each photo's VOC XML beside it."""
    for split, ids in (("train", DETECT_TRAIN), ("test", DETECT_TEST)):
        voc_files(out / split, store, ids, ("JPEGImages", "Annotations"))


def yolo(out, store):
    """YOLO labels converted by hand: images/ and labels/ side by side, classes.txt in labels/."""
    names = []
    for split, ids in (("train", DETECT_TRAIN), ("val", DETECT_TEST)):
        voc_files(out / "images" / split, store, ids)
        (out / "labels" / split).mkdir(parents=True)
        for i in ids:
            objects, w, h = voc_objects(i)
            names += [c for c in dict.fromkeys(c for c, _, _ in objects) if c not in names]
            (out / "labels" / split / f"{i}.txt").write_text("".join(
                f"{names.index(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                f"{(y2 - y1) / h:.6f}\n" for c, (x1, y1, x2, y2), _ in objects))
    (out / "labels" / "classes.txt").write_text("".join(f"{c}\n" for c in names))


def demo_h5(out, store):
    from sppfeat import extract

    extract(DEMO, out, fast_config(), one_process(), quiet=True)


def shard(out, store, index):
    from sppfeat import extract

    photos = store.get(demo_classes, "photos")
    extract(photos, out.with_name("out.h5"), fast_config(), one_process(), shard=(index, 2), quiet=True)


def predictions(out, store):
    from sppfeat import predict, train_svm

    train_svm(store.get(demo_h5, "demo.h5"), out.with_name("svm.h5"))
    predict(out.with_name("svm.h5"), DEMO / "pizza", out, top_k=2, quiet=True)


def detector(out, store):
    from sppfeat import train_detector

    train = store.get(TRAIN, "train")
    train_detector(train / "photos", train / "Annotations", out, cores=1, quiet=True, **small_detector())


def voc2007(out, store):
    link(store.get(COCO_IMAGES, "JPEGImages"), out / "JPEGImages")


COCO, COCO_IMAGES = needs(VOC, coco), needs(VOC, coco_images)
TRAIN, TEST = (needs(VOC, partial(voc_split, ids=ids)) for ids in (DETECT_TRAIN, DETECT_TEST))
PHOTOS_TEST = needs(VOC, partial(voc_files, ids=DETECT_TEST))
A_JPG, B_PNG = demo_file, partial(demo_file, name="starfish/image_0011.jpg")
DATA = {  # document -> {name in its blocks: builder}
    "README.md": {"examples/": examples, "photos/": demo_classes, "new_photos/": demo_flat, "a.jpg": A_JPG,
                  "b.png": B_PNG, "VOC2007/": needs(VOC, voc2007), "boxes.coco.json": COCO, "train/": TRAIN,
                  "test/": TEST, "101_ObjectCategories": needs(CALTECH, caltech), "VOCdevkit": needs(VOC, vocdevkit)},
    "docs/detection.md": {"IMAGES": needs(VOC, voc_files), "NEW_IMAGES": PHOTOS_TEST,
                          "BOXES": needs(VOC, partial(voc_files, kinds=("Annotations",))),
                          "TRUE_BOXES": needs(VOC, partial(voc_files, ids=DETECT_TEST, kinds=("Annotations",))),
                          "train/": TRAIN, "test/": TEST, "labelled/": needs(VOC, labelimg), "yolo/": needs(VOC, yolo)},
    "docs/file-formats.md": {"demo.h5": demo_h5, "predictions.csv": partial(predictions),
                             "predictions.jsonl": partial(predictions)},
    "docs/python-api.md": {"photos/": demo_classes, "new_photos/": demo_flat, "boxes.coco.json": COCO,
                           "JPEGImages": COCO_IMAGES, "a.jpg": A_JPG, "b.png": B_PNG, "demo.h5": demo_h5,
                           "query.jpg": partial(demo_file, name="soccer_ball/image_0011.jpg"),
                           **{f"out.shard-0000{i}-of-00002.h5": partial(shard, index=i) for i in range(2)}},
    "docs/scaling.md": {"IMAGES": demo_classes, "photos/": PHOTOS_TEST, "detector.h5": needs(VOC, detector)},
}
