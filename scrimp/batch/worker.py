"""The lane's worker: one per replica, but only the replica holding the lease acts (a row in batch_lease renewed
every tick; a dead holder's lease runs out after `lease_s`), so each batch is submitted and polled by exactly one.

Each tick: recover what a crash left half done (a submission whose provider batch id was never stored is found
again by its token, or its lines queued again), flush the models whose queue is due (size, bytes, or the oldest
line's wait) into provider batches split at the provider's limits, poll the submitted batches and store every
line's answer, record the finished lines nobody is waiting for, run jobs' lines through the pipeline, and deliver
finished jobs to their webhooks. Every step is a transaction on the stored state, so a SIGKILL at any point
leaves either the step done or not done, and the next tick (after a restart) picks up from there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from scrimp.batch import codec, recorder
from scrimp.batch.providers import LIMITS, LineResult, ProviderError, line_body
from scrimp.metrics import Sample

if TYPE_CHECKING:
    from scrimp.batch.stage import BatchStage

log = logging.getLogger("scrimp.batch")
RECOVER_AFTER_S = 30.0  # a submission this old with no provider id, and not under way here, crashed
MAX_RUNNING = 512  # job lines going through the pipeline at once, per process
ORPHANED_AFTER_S = 5.0  # a job line another replica took and has not run for this long: its replica died


class Worker:
    def __init__(self, lane: BatchStage) -> None:
        self.lane = lane
        self.store = lane.store
        self.options = lane.options
        self.holder = uuid.uuid4().hex
        self.leader = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.submitting: set[str] = set()  # batch ids whose submission is under way in this process
        self.running: set[str] = set()  # job lines going through the pipeline here
        self.local_jobs: set[str] = set()  # jobs created on this replica (their lines are run here)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.cleaned = time.monotonic()  # the last clean-up of old lines
        self.submitted = 0  # provider batches this replica submitted
        self.lines_submitted = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def kick(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self.tasks):
            task.cancel()
        if self.leader:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release_lease, self.holder)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def metrics(self) -> list[Sample]:
        return [Sample("scrimp_batch_provider_batches_total", "counter",
                       "Provider batches this replica submitted.", self.submitted),
                Sample("scrimp_batch_lines_submitted_total", "counter",
                       "Lines this replica submitted in provider batches.", self.lines_submitted),
                Sample("scrimp_batch_leader", "gauge", "1 when this replica holds the lane's lease.", int(self.leader))]

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch lane tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.tick_s)
            self._wake.clear()

    async def tick(self) -> None:
        self.leader = await asyncio.to_thread(self.store.acquire_lease, self.holder, self.options.lease_s)
        await self.run_new_job_lines()  # every replica runs its own jobs' lines; the leader also orphaned ones
        if not self.leader:
            return
        await self.recover()
        await self.flush()
        await self.poll()
        await asyncio.to_thread(self.adopt_orphan_followers)
        await self.record_unwaited()
        from scrimp.batch import jobs

        await jobs.finish_and_deliver(self.lane)
        from scrimp.batch import passthrough

        await passthrough.poll(self.lane)
        if time.monotonic() - self.cleaned >= 60.0:
            self.cleaned = time.monotonic()
            await asyncio.to_thread(self.clean_up, time.time() - self.options.retention_days * 86400)

    def clean_up(self, before: float) -> int:
        """Forget what is answered, recorded and older than the retention (an idempotency key expires with it)."""
        def work(cur: Any) -> int:
            q = self.store.q
            cur.execute(q("DELETE FROM batch_jobs WHERE state <> 'open' AND updated < ? AND (webhook IS NULL OR "
                          "delivered IS NOT NULL OR state = 'webhook_failed')"), (before,))
            cur.execute(q("DELETE FROM batch_lines WHERE state = 'done' AND recorded = 1 AND updated < ? AND "
                          "(job_id IS NULL OR job_id NOT IN (SELECT id FROM batch_jobs))"), (before,))
            removed = cur.rowcount
            cur.execute(q("DELETE FROM batch_batches WHERE state = 'ended' AND updated < ?"), (before,))
            return removed
        return int(self.store.tx(work))

    # -- submission ----------------------------------------------------------------------------------------
    def due_models(self) -> list[str]:
        rows = self.store.db.execute(
            "SELECT model, provider, COUNT(*), SUM(body_bytes), MIN(flush_by) FROM batch_lines "
            "WHERE state = 'queued' AND leader IS NULL GROUP BY model, provider", fetch="all")
        now = time.time()
        due = []
        for model, provider, count, size, flush_by in rows:
            max_lines, max_bytes = self.limits(provider)
            if count >= max_lines or (size or 0) >= max_bytes or (flush_by or 0) <= now:
                due.append(model)
        return due

    def limits(self, provider: str) -> tuple[int, int]:
        max_lines, max_bytes = LIMITS.get(provider, LIMITS["openai"])
        return (min(self.options.max_lines or max_lines, max_lines), min(self.options.max_bytes or max_bytes, max_bytes))

    async def flush(self) -> None:
        for model in await asyncio.to_thread(self.due_models):
            spec = self.lane.ctx.models.get(model)
            if spec is None:
                continue
            lines = await asyncio.to_thread(self.store.db.execute,
                                            "SELECT id, request, body_bytes FROM batch_lines WHERE state = 'queued' "
                                            "AND leader IS NULL AND model = ? ORDER BY created", (model,), "all")
            max_lines, max_bytes = self.limits(spec.provider)
            chunk: list[tuple[str, str]] = []
            size = 0
            for line_id, raw, nbytes in lines:
                if chunk and (len(chunk) >= max_lines or size + nbytes > max_bytes):
                    await self.submit(spec, chunk)
                    chunk, size = [], 0
                chunk.append((line_id, raw))
                size += nbytes
            if chunk:
                await self.submit(spec, chunk)

    async def submit(self, spec: Any, chunk: list[tuple[str, str]]) -> None:
        # the lease is renewed before each submission, not once per tick: a tick of several large uploads must
        # not outlive it, or another replica, taking over, would recover this one's submission and send it again
        self.leader = await asyncio.to_thread(self.store.acquire_lease, self.holder, self.options.lease_s)
        if not self.leader:
            return
        batch_id = "sbatch_" + uuid.uuid4().hex[:24]
        ids = [line_id for line_id, _ in chunk]
        now = time.time()

        def claim(cur: Any) -> set[str]:
            """The batch row and its lines, together: after a crash either both exist or neither."""
            q = self.store.q
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                cur.execute(q(f"UPDATE batch_lines SET state = 'submitted', batch_id = ?, updated = ? WHERE state = "
                              f"'queued' AND id IN ({', '.join('?' * len(part))})"), (batch_id, now, *part))
            cur.execute(q("SELECT id FROM batch_lines WHERE batch_id = ?"), (batch_id,))
            claimed = {r[0] for r in cur.fetchall()}
            if claimed:
                cur.execute(q("INSERT INTO batch_batches (id, provider, model, state, lines, created, updated) "
                              "VALUES (?, ?, ?, 'submitting', ?, ?, ?)"),
                            (batch_id, spec.provider, spec.name, len(claimed), now, now))
            return claimed
        self.submitting.add(batch_id)
        try:
            claimed = await asyncio.to_thread(self.store.tx, claim)
            if not claimed:
                return
            ids = [line_id for line_id in ids if line_id in claimed]
            body = [(line_id, line_body(spec, codec.request_from_json(raw))) for line_id, raw in chunk
                    if line_id in claimed]
            try:
                remote = await self.lane.client.submit(spec, body, self.options.completion_window, batch_id)
            except ProviderError as exc:
                if exc.status in (400, 401, 403, 404, 413, 422):  # refused for good: the lines fail
                    await asyncio.to_thread(self.fail_batch, batch_id, {"status": exc.status, "message": exc.message})
                    return
                raise
            await asyncio.to_thread(self.store.db.execute, "UPDATE batch_batches SET remote_id = ?, state = "
                                    "'submitted', updated = ?, polled = ? WHERE id = ?",
                                    (remote, time.time(), time.time(), batch_id))
            self.submitted += 1
            self.lines_submitted += len(ids)
            log.info("submitted %d lines of %s as %s (%s)", len(ids), spec.name, remote, batch_id)
        except Exception:
            log.exception("submitting %s failed; it will be recovered", batch_id)
        finally:
            self.submitting.discard(batch_id)

    def fail_batch(self, batch_id: str, error: dict[str, Any]) -> list[str]:
        raw = codec.dumps(error)
        now = time.time()

        def work(cur: Any) -> list[str]:
            q = self.store.q
            cur.execute(q("SELECT id FROM batch_lines WHERE batch_id = ? AND state <> 'done'"), (batch_id,))
            ids = [r[0] for r in cur.fetchall()]
            cur.execute(q("UPDATE batch_lines SET state = 'done', error = ?, updated = ? WHERE batch_id = ? "
                          "AND state <> 'done'"), (raw, now, batch_id))
            for line_id in ids:
                cur.execute(q("SELECT id FROM batch_lines WHERE leader = ? AND state <> 'done'"), (line_id,))
                ids.extend(r[0] for r in cur.fetchall())
                cur.execute(q("UPDATE batch_lines SET state = 'done', error = ?, updated = ? WHERE leader = ? "
                              "AND state <> 'done'"), (raw, now, line_id))
            cur.execute(q("UPDATE batch_batches SET state = 'ended', error = ?, updated = ? WHERE id = ?"),
                        (raw, now, batch_id))
            return ids
        ids = self.store.tx(work)
        self.lane.notify(ids)
        return ids

    async def recover(self) -> None:
        """Submissions a crash interrupted: adopt the provider batch if it was made, else queue the lines again."""
        rows = await asyncio.to_thread(self.store.db.execute,
                                       "SELECT id, model, lines, created FROM batch_batches WHERE state = "
                                       "'submitting' AND created < ?", (time.time() - RECOVER_AFTER_S,), "all")
        for batch_id, model, count, created in rows:
            if batch_id in self.submitting:
                continue
            spec = self.lane.ctx.models.get(model)
            remote = None
            if spec is not None:
                try:
                    remote = await self.lane.client.find(spec, batch_id, created, count, await asyncio.to_thread(
                        self.known_remote_ids))
                except Exception:
                    log.exception("could not look for %s at the provider; will try again", batch_id)
                    continue
            if remote is not None:
                await asyncio.to_thread(self.store.db.execute, "UPDATE batch_batches SET remote_id = ?, state = "
                                        "'submitted', updated = ? WHERE id = ?", (remote, time.time(), batch_id))
                log.warning("recovered %s: the provider had it as %s", batch_id, remote)
                continue

            def requeue(cur: Any, batch_id: str = batch_id) -> None:
                q = self.store.q
                cur.execute(q("UPDATE batch_lines SET state = 'queued', batch_id = NULL WHERE batch_id = ? AND "
                              "state = 'submitted'"), (batch_id,))
                cur.execute(q("DELETE FROM batch_batches WHERE id = ?"), (batch_id,))
            await asyncio.to_thread(self.store.tx, requeue)
            log.warning("%s never reached the provider; its lines are queued again", batch_id)

    def known_remote_ids(self) -> set[str]:
        return {r[0] for r in self.store.db.execute("SELECT remote_id FROM batch_batches WHERE remote_id IS NOT NULL",
                                                    fetch="all")}

    # -- results ---------------------------------------------------------------------------------------------
    async def poll(self) -> None:
        now = time.time()
        rows = await asyncio.to_thread(self.store.db.execute,
                                       "SELECT id, model, remote_id FROM batch_batches WHERE state = 'submitted' "
                                       "AND polled <= ?", (now - self.options.poll_s,), "all")
        for batch_id, model, remote in rows:
            spec = self.lane.ctx.models.get(model)
            if spec is None:
                continue
            try:
                await asyncio.to_thread(self.store.db.execute, "UPDATE batch_batches SET polled = ? WHERE id = ?",
                                        (time.time(), batch_id))
                if not await self.lane.client.ended(spec, remote):
                    continue
                results = await self.lane.client.results(spec, remote)
            except Exception:
                log.exception("polling %s (%s) failed; will try again", batch_id, remote)
                continue
            ids = await asyncio.to_thread(self.store_results, batch_id, results)
            self.lane.notify(ids)
            log.info("%s ended: %d lines answered", batch_id, len(ids))

    def store_results(self, batch_id: str, results: list[LineResult]) -> list[str]:
        """Every line of the batch done, in one transaction (a line the provider did not mention fails)."""
        now = time.time()
        missing = codec.dumps({"status": 502, "message": "the provider's batch ended without this line"})

        def work(cur: Any) -> list[str]:
            q = self.store.q
            cur.execute(q("SELECT id FROM batch_lines WHERE batch_id = ? AND state <> 'done'"), (batch_id,))
            open_ids = {r[0] for r in cur.fetchall()}
            finished: list[str] = []
            outcome: dict[str, tuple[str | None, str | None]] = {}
            for r in results:
                if r.custom_id in open_ids:
                    outcome[r.custom_id] = (codec.response_to_json(r.response) if r.response is not None else None,
                                            codec.dumps(r.error) if r.error is not None else None)
            for line_id in open_ids:
                result, error = outcome.get(line_id, (None, missing))
                cur.execute(q("UPDATE batch_lines SET state = 'done', result = ?, error = ?, updated = ? "
                              "WHERE id = ?"), (result, error, now, line_id))
                cur.execute(q("SELECT id FROM batch_lines WHERE leader = ? AND state <> 'done'"), (line_id,))
                followers = [row[0] for row in cur.fetchall()]
                if followers:
                    cur.execute(q("UPDATE batch_lines SET state = 'done', result = ?, error = ?, updated = ? "
                                  "WHERE leader = ? AND state <> 'done'"), (result, error, now, line_id))
                finished.append(line_id)
                finished.extend(followers)
            cur.execute(q("UPDATE batch_batches SET state = 'ended', updated = ? WHERE id = ?"), (now, batch_id))
            return finished
        return self.store.tx(work)

    def adopt_orphan_followers(self) -> None:
        """A line that joined an identical one just as it finished: it takes that answer."""
        rows = self.store.db.execute(
            "SELECT f.id, l.result, l.error FROM batch_lines f JOIN batch_lines l ON f.leader = l.id "
            "WHERE f.state = 'queued' AND f.leader IS NOT NULL AND l.state = 'done'", fetch="all")
        for line_id, result, error in rows:
            self.store.finish_line(line_id, result, error)
        self.lane.notify([r[0] for r in rows])

    async def record_unwaited(self) -> None:
        """Finished lines no request here is waiting for: a job's, or one whose client left (or whose gateway
        died); a line waited for on another replica is left to it for `record_grace_s`."""
        cutoff = time.time() - self.options.record_grace_s
        lines = await asyncio.to_thread(self.store.lines_where,
                                        "recorded = 0 AND state = 'done' AND (job_id IS NOT NULL OR updated < ?)",
                                        (cutoff,))
        for line in lines:
            if line.id in self.lane.waiters or line.id in self.running:
                continue
            who = orjson.loads(line.who)
            call = recorder.call_of(line.id, who)
            spec = self.lane.ctx.models.get(line.model or "")
            resp = codec.response_from_json(line.result) if line.result else None
            rows = recorder.rows_for(call, resp, spec.name if spec else line.model or "",
                                     spec.provider if spec else line.provider or "", shared=line.leader is not None,
                                     error=recorder.error_of(line.error))
            ledger = self.lane.ctx.ledger
            if await asyncio.to_thread(self.store.tx, recorder.write_once(self.store, line.id, rows, ledger)):
                recorder.committed(ledger, rows)

    async def run_new_job_lines(self) -> None:
        """Job lines not yet through the pipeline, at most MAX_RUNNING at a time per process (a job of 100,000
        lines is not 100,000 tasks at once): this replica's own jobs', and, on the leader, lines another replica
        took and has not run for ORPHANED_AFTER_S (it died)."""
        from scrimp.batch import jobs

        room = MAX_RUNNING - len(self.running)
        if room <= 0:
            return
        lines = await asyncio.to_thread(self.store.lines_where, "state = 'new' ORDER BY created LIMIT ?",
                                        (room + len(self.running),))
        orphaned = time.time() - ORPHANED_AFTER_S
        for line in lines:
            if line.id in self.running or not (line.job_id in self.local_jobs or
                                               (self.leader and line.created < orphaned)):
                continue
            self.running.add(line.id)
            self.spawn(jobs.run_line(self.lane, line))
            room -= 1
            if room <= 0:
                break
