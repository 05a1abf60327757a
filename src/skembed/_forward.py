"""A Forward: the encoder of one backend, run on one batch or on a stream of batches.

``forward(ids, mask, output)`` runs one padded batch on every thread; ``forward.map`` runs
a stream of batches several at a time (what :mod:`skembed._backends` and
:mod:`skembed._graph_runtimes` return, and what :mod:`skembed._encoding` calls).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Forward:
    """The encoder of a resolved backend, for one thread budget.

    ``run(ids, mask, output, threads)`` runs one batch on ``threads`` intra-op threads.
    ``streams`` is how many batches may run at once: ONNX Runtime runs one batch per
    thread, each on its own (fewer pauses to split every small matrix product between
    threads); PyTorch runs one batch at a time on all of them.
    """

    run: Callable[[np.ndarray, np.ndarray, str, int], tuple]
    threads: int
    streams: int = 1

    def __call__(self, ids: np.ndarray, mask: np.ndarray, output: str) -> tuple:
        """Run one batch on every thread."""
        return self.run(ids, mask, output, self.threads)

    def map(
        self, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], output: str, count: int
    ) -> Iterator[tuple[np.ndarray, tuple]]:
        """Yield (indices, outputs) for (indices, ids, mask) batches, in their order.

        Up to ``streams`` batches (no more than ``count``, how many there are) run at once,
        sharing the threads; at most two per stream are waiting, so memory stays flat.
        """
        streams = min(self.streams, count)
        if streams <= 1:
            for idx, ids, mask in batches:
                yield idx, self(ids, mask, output)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        threads = self.threads // streams
        with ThreadPoolExecutor(streams, thread_name_prefix="skembed") as pool:
            pending: deque = deque()
            for idx, ids, mask in batches:
                pending.append((idx, pool.submit(self.run, ids, mask, output, threads)))
                if len(pending) == 2 * streams:
                    idx, future = pending.popleft()
                    yield idx, future.result()
            for idx, future in pending:
                yield idx, future.result()
