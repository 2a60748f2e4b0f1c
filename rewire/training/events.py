"""Event recordings (tonic-style structured arrays) as a training ``Dataset`` of spike trains."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["EventDataset"]


class EventDataset(Dataset):
    """A ``Dataset`` of tonic-style event recordings, each turned into a spike train by a
    transform (e.g. ``tonic.transforms.ToFrame``), for :func:`rewire.training.train.train`.

    Each recording is a numpy structured array of events with fields such as ``x``, ``y``,
    ``t`` (time, µs in tonic) and ``p`` (polarity), as tonic's data sets hold them; nothing is
    downloaded: the recordings are the caller's. ``transform(events)`` must return the
    sample's spike train ``(T, *S)`` (numpy or torch), 0/1 valued: tonic's ``ToFrame`` gives
    event counts ``(T, P, H, W)``, so clip them (``np.minimum(frames, 1)``) and, for a model
    whose first layer is a ``Linear``, flatten each step (``frames.reshape(len(frames), -1)``).
    A ``DataLoader`` then collates ``(B, T, *S)`` batches, the layout ``train`` reads.

    Args:
        events: the recordings, one structured array per sample.
        labels: one integer class per recording.
        transform: events -> spike train ``(T, *S)``.

    Raises:
        ValueError: ``events`` and ``labels`` differ in length, or a label is not an
            integer >= 0.

    Example:
        >>> import numpy as np
        >>> ev = np.zeros(3, dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
        >>> ev["t"] = [0, 5, 9]
        >>> def frames(e):
        ...     f = np.zeros((2, 4), np.float32)
        ...     f[e["t"] // 5, e["x"]] = 1
        ...     return f
        >>> x, y = EventDataset([ev], [1], frames)[0]
        >>> x.shape, int(y)
        (torch.Size([2, 4]), 1)
    """

    def __init__(self, events, labels, transform: Callable) -> None:
        self.events, self.labels = list(events), [int(v) for v in labels]
        if len(self.events) != len(self.labels):
            raise ValueError(f"EventDataset: {len(self.events)} recordings but "
                             f"{len(self.labels)} labels; give one label per recording")
        if any(v < 0 for v in self.labels):
            raise ValueError("EventDataset: labels must be class indices >= 0")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, i: int):
        x = torch.as_tensor(np.asarray(self.transform(self.events[i])), dtype=torch.float32)
        return x, torch.tensor(self.labels[i], dtype=torch.long)
