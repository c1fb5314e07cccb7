"""Batches of one shape from a stream of decoded images, for a network in this process (a GPU, or
the CPU with --workers 0): images wait by shape until a full batch of one shape is there, and are
released in input order once described.

Batch sizes are the batch size, or powers of two below it for the remainder of a shape that must
run early (more than `max_waiting` images waiting, or the end of the stream), so the pairs (shape,
batch size) a GPU sees are bounded: with bucketed shapes, cuDNN autotunes each pair once."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from .descriptor import DecodedItem


def shape_key(item: DecodedItem) -> tuple | None:
    """The shapes of an item's pixels at each scale; None for a file that failed to decode."""
    if item.error is not None:
        return None
    return tuple(None if pixels is None else pixels.shape for pixels in item.pixels)


def chunk_sizes(n: int, batch_size: int) -> list[int]:
    """n as full batches, then powers of two in decreasing order (13, 8 -> [8, 4, 1])."""
    sizes = [batch_size] * (n // batch_size)
    rest = n % batch_size
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


class ShapeGatherer:
    """Use as ``gatherer.released(describe_stream(gatherer.batches(decoded)))``: `batches` turns
    decoded batches (any shapes, input order) into batches of one shape; `released` takes those
    batches described, in the order `batches` made them, and yields the items in input order.
    Items are identified by their index, unique in a stream."""

    def __init__(self, batch_size: int, max_waiting: int):
        if batch_size < 1 or max_waiting < batch_size:
            raise ValueError(f"need 1 <= batch_size <= max_waiting, got {batch_size} and {max_waiting}")
        self.batch_size, self.max_waiting = batch_size, max_waiting
        self.waiting: dict[tuple, list[DecodedItem]] = {}  # by shape key, each in input order
        self.n_waiting = 0
        self.arrived: deque[DecodedItem] = deque()  # every item not yet released, in input order
        self.sent: set[int] = set()  # indices handed out for describing
        self.done: set[int] = set()  # indices described, not yet released

    def batches(self, decoded: Iterator[list[DecodedItem]]) -> Iterator[list[DecodedItem]]:
        for items in decoded:
            for item in items:
                self.arrived.append(item)
                key = shape_key(item)
                if key is None:  # nothing to run: described as it is, released in its turn
                    yield self.send([item])
                    continue
                self.waiting.setdefault(key, []).append(item)
                self.n_waiting += 1
                if len(self.waiting[key]) == self.batch_size:
                    yield self.send(self.take(key))
                elif self.n_waiting > self.max_waiting:
                    yield from self.oldest()
        while self.waiting:
            yield from self.oldest()

    def released(self, described: Iterator[list[DecodedItem]]) -> Iterator[list[DecodedItem]]:
        for items in described:
            self.done.update(item.index for item in items)
            ready = []
            while self.arrived and self.arrived[0].index in self.done:
                item = self.arrived.popleft()
                self.done.discard(item.index)
                self.sent.discard(item.index)
                ready.append(item)
            if ready:
                yield ready

    def send(self, items: list[DecodedItem]) -> list[DecodedItem]:
        self.sent.update(item.index for item in items)
        return items

    def take(self, key: tuple) -> list[DecodedItem]:
        items = self.waiting.pop(key)
        self.n_waiting -= len(items)
        return items

    def oldest(self) -> Iterator[list[DecodedItem]]:
        """The waiting images of the shape of the oldest waiting image, as batches of chunk_sizes."""
        first = next(item for item in self.arrived if item.index not in self.sent)
        items = self.take(shape_key(first))
        start = 0
        for size in chunk_sizes(len(items), self.batch_size):
            yield self.send(items[start:start + size])
            start += size
