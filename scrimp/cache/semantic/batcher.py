"""Embeds questions for concurrent requests together: while one batch runs in a worker thread, the
questions that arrive queue up and go as the next batch. Alone, a question is embedded at once."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from scrimp.embedding.embedder import Embedder


class BatchingEmbedder:
    def __init__(self, embed: Embedder | object, max_batch: int = 32) -> None:
        self._embed = embed
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[str, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None
        self.batches = 0  # for tests and metrics: how many model calls served how many questions
        self.items = 0

    async def embed(self, text: str) -> np.ndarray:
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((text, fut))  # type: ignore[union-attr]
        return await fut

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                vecs = await asyncio.to_thread(self._embed.embed, [t for t, _ in batch])  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, fut), vec in zip(batch, vecs):
                if not fut.done():
                    fut.set_result(vec)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
