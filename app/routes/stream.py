"""The live event stream of a job, as Server-Sent Events (FastAPI's native ``fastapi.sse``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.exc import InterfaceError, OperationalError

from app.deps import JobDep, SettingsDep, StoreDep
from app.schemas import EventPublic
from app.store import JobStore

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

BATCH = 500  # events read from the store per poll
RETRY_MS = 1000  # how soon a browser's EventSource reconnects
SEQ_MAX = 2**62

LastEventId = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=SEQ_MAX,
        description="Resume after this seq (browsers send it when they reconnect).",
    ),
]
AfterQuery = Annotated[
    int | None,
    Query(ge=0, le=SEQ_MAX, description="Like Last-Event-ID, for clients that cannot set it."),
]


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={404: {"description": "No such job."}},
)
async def events(
    job: JobDep,
    store: StoreDep,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
    after: AfterQuery = None,
) -> AsyncIterator[ServerSentEvent]:
    """Replay the job's events, then follow them live until a final `end` event."""
    start = last_event_id if last_event_id is not None else (after or 0)
    async for item in follow(store, job.id, start, settings.sse_poll_interval_s):
        yield item


async def follow(
    store: JobStore, job_id: str, seq: int, poll_s: float
) -> AsyncIterator[ServerSentEvent]:
    """Events after ``seq`` in order (``id`` = seq), then ``end`` once the job is final.

    The job's status is read *before* each batch of events: a final status is committed
    together with its status event, so when the job was already final, the batch read after
    it holds everything and ``end`` follows only once that batch is sent in full.
    """
    first = True
    while True:
        try:
            job = await anyio.to_thread.run_sync(store.get_job, job_id)
            batch = await anyio.to_thread.run_sync(store.events_after, job_id, seq, BATCH)
        except (OperationalError, InterfaceError) as exc:
            log.warning("event stream %s: store unreachable (%s); closing", job_id, exc)
            return  # the client reconnects with Last-Event-ID
        for ev in batch:
            yield ServerSentEvent(
                event=ev.kind,
                id=str(ev.seq),
                data=EventPublic.from_record(ev),
                retry=RETRY_MS if first else None,
            )
            first = False
            seq = ev.seq
        if len(batch) == BATCH:
            continue
        if job is None:
            yield ServerSentEvent(event="end", data={"status": "deleted", "last_seq": seq})
            return
        if job.terminal:
            end = {"status": job.status.value, "error": job.error, "last_seq": seq}
            yield ServerSentEvent(event="end", data=end)
            return
        await anyio.sleep(poll_s)
