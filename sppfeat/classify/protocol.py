"""Training protocols: which rows train and which test, chosen from the data and the options given.

per-class (Caltech 101: `train_per_class` per class train, up to `test_per_class` of the rest test),
stratified (`test_fraction` of each class held out), all (train on every row; test on another file;
multi-label data always). 'auto' follows the options given, else the data set.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("auto", "per-class", "stratified", "all")
DEFAULT_POWER = 0.5  # signed square root before L2: +0.2 points on Caltech 101 (docs/benchmarks.md)
DEFAULT_TRAIN_PER_CLASS = 30
DEFAULT_TEST_PER_CLASS = 50  # 0 = every remaining image
DEFAULT_TEST_FRACTION = 0.25


@dataclass(frozen=True)
class Protocol:
    """A resolved protocol and the numbers it uses (None where it uses none)."""

    name: str
    train_per_class: int | None = None
    test_per_class: int | None = None
    test_fraction: float | None = None

    def as_dict(self) -> dict:
        return {key: value for key, value in vars(self).items() if value is not None and key != "name"}


def choose_protocol(protocol: str, *, multilabel: bool, dataset: str, train_per_class: int | None = None,
                    test_per_class: int | None = None, test_fraction: float | None = None) -> Protocol:
    """The protocol to train with. Options of one protocol select it under 'auto'; options that the
    protocol would ignore raise ValueError instead of being dropped."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    per_class = [name for name, value in (("train_per_class=N", train_per_class),
                                          ("test_per_class=N", test_per_class)) if value is not None]
    stratified = ["test_fraction=N"] if test_fraction is not None else []
    if per_class and stratified:
        raise ValueError(f"{per_class[0]} belongs to protocol='per-class' and test_fraction=N to "
                         "protocol='stratified': pass the options of one protocol")
    if multilabel and (protocol not in ("auto", "all") or per_class or stratified):
        raise ValueError("multi-label features are trained on every row (protocol='all'); evaluate on a "
                         "separate test file")
    if protocol == "auto":
        protocol = ("all" if multilabel else "per-class" if per_class else "stratified" if stratified
                    else "per-class" if dataset == "caltech101" else "stratified")
    unused = {"per-class": stratified, "stratified": per_class, "all": per_class + stratified}[protocol]
    if unused:
        raise ValueError(f"{unused[0]} does not apply to protocol={protocol!r}")
    if protocol == "per-class":
        return Protocol(protocol, DEFAULT_TRAIN_PER_CLASS if train_per_class is None else train_per_class,
                        DEFAULT_TEST_PER_CLASS if test_per_class is None else test_per_class)
    if protocol == "stratified":
        return Protocol(protocol, test_fraction=DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction)
    return Protocol(protocol)
