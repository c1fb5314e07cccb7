"""What the HDF5 files share: string type, the `.partial` name they are written under, opening with
one-line errors, and the check that an output may be written."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")


def partial_path(path: str | os.PathLike) -> Path:
    """OUT.h5 -> OUT.h5.partial, the name a file is written under until it is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def check_output(path: str | os.PathLike, replace: bool) -> Path:
    """ValueError unless `path` can be written: its folder exists, and it does not exist or
    `replace` allows replacing it (the CLI's --overwrite)."""
    path = Path(path)
    if path.exists() and not replace:
        raise ValueError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise ValueError(f"output folder does not exist: {path.parent}")
    return path


def open_hdf5(path: str | os.PathLike, what: str) -> h5py.File:
    """Open an existing HDF5 file read-only; ValueError naming `what` was expected otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"not an HDF5 file: {path} ({str(exc).splitlines()[0]})") from None


def read_strings(dataset: h5py.Dataset) -> list:
    return dataset.asstr()[()].tolist()


def plain(value):
    """An HDF5 attribute as a plain Python value."""
    return value.item() if isinstance(value, np.generic) else value
