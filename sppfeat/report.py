"""Human-readable summaries of feature and model files (``sppfeat info``)."""

from __future__ import annotations

from collections import Counter

from .store import open_features, open_hdf5


def describe_features(path: str) -> str:
    ff = open_features(path)
    lines = [f"{path}: sppfeat feature file",
             f"  rows        {len(ff.paths)} × {ff.dim} ({ff.dtype})",
             f"  classes     {len(ff.class_names)}" + (" (multi-label)" if ff.multilabel else "")]
    if ff.class_names:
        counts = Counter(ff.labels.tolist()) if not ff.multilabel else Counter(
            {i: int((ff.targets[:, i] == 1).sum()) for i in range(len(ff.class_names))})
        shown = ", ".join(f"{ff.class_names[i]} {counts.get(i, 0)}" for i in range(min(8, len(ff.class_names))))
        lines.append(f"              {shown}" + (", ..." if len(ff.class_names) > 8 else ""))
    if len(ff.image_sizes):
        heights, widths = ff.image_sizes[:, 0], ff.image_sizes[:, 1]
        lines.append(f"  image size  height {heights.min()}..{heights.max()}, width {widths.min()}..{widths.max()} px")
    lines.append(f"  skipped     {len(ff.skipped)}")
    for skipped_path, reason in ff.skipped[:10]:
        lines.append(f"              {skipped_path}: {reason}")
    if len(ff.skipped) > 10:
        lines.append(f"              ... and {len(ff.skipped) - 10} more")
    lines.append("  configuration")
    for key, value in sorted(ff.config.items()):
        lines.append(f"    {key:<16}{value}")
    return "\n".join(lines)


def describe_file(path: str) -> str:
    """Summary of an sppfeat feature file or SVM model file; ValueError for anything else."""
    with open_hdf5(path, "file") as f:
        kind = f.attrs.get("sppfeat_kind", "features")
    if kind == "svm_model":
        from .svm_file import describe_model

        return describe_model(path)
    return describe_features(path)
