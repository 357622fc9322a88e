"""The SSE endpoint: replay, resume with Last-Event-ID (no gap, no duplicate), live follow, end."""

from __future__ import annotations

import json
import threading
import time

from fastapi.testclient import TestClient

from app.store import EventIn, JobStatus, JobStore


def read_stream(
    client: TestClient, job_id: str, headers: dict[str, str] | None = None
) -> list[tuple[str | None, str, dict[str, object]]]:
    """(id, event, data) of every event until the stream ends."""
    out: list[tuple[str | None, str, dict[str, object]]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers or {}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        ev_id, name, data = None, "message", ""
        for line in r.iter_lines():
            if line.startswith("id: "):
                ev_id = line[4:]
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data:
                out.append((ev_id, name, json.loads(data)))
                ev_id, name, data = None, "message", ""
    return out


def finished_job(client: TestClient, store: JobStore) -> str:
    r = client.post("/v1/jobs", json={"model": "neuron", "dataset": {"name": "moons"}})
    job_id = str(r.json()["id"])
    store.claim(job_id, "w", "cpu")  # seq 1
    store.append_events(
        job_id, [EventIn("metrics", s, 1, 8, {"loss": 1.0 / s}) for s in range(1, 9)]
    )  # seqs 2..9
    store.finish(job_id, JobStatus.succeeded)  # seq 10
    return job_id


def test_replay_then_end(client: TestClient, api_store: JobStore) -> None:
    job_id = finished_job(client, api_store)
    events = read_stream(client, job_id)
    assert [e[0] for e in events[:-1]] == [str(i) for i in range(1, 11)]
    assert [e[1] for e in events] == ["status"] + ["metrics"] * 8 + ["status", "end"]
    assert events[1][2]["data"] == {"loss": 1.0} and events[1][2]["step"] == 1
    assert events[-1][2]["status"] == "succeeded"
    assert events[-1][0] is None  # end carries no id: it does not move Last-Event-ID


def test_last_event_id_resumes_without_gap_or_duplicate(
    client: TestClient, api_store: JobStore
) -> None:
    job_id = finished_job(client, api_store)
    full = read_stream(client, job_id)
    head = full[:4]
    tail = read_stream(client, job_id, {"Last-Event-ID": head[-1][0] or ""})
    assert [e[0] for e in head + tail] == [e[0] for e in full]
    assert read_stream(client, job_id, {"Last-Event-ID": "10"})[0][1] == "end"
    via_query = client.get(f"/v1/jobs/{job_id}/events", params={"after": 8})
    assert "id: 9\n" in via_query.text and "id: 8\n" not in via_query.text


def test_follows_live_events_until_finished(client: TestClient, api_store: JobStore) -> None:
    r = client.post("/v1/jobs", json={"model": "neuron", "dataset": {"name": "moons"}})
    job_id = str(r.json()["id"])

    def train() -> None:
        time.sleep(0.2)
        api_store.claim(job_id, "w", "cpu")
        for s in range(1, 6):
            api_store.append_events(job_id, [EventIn("metrics", s, 1, 5, {"loss": 1.0})])
            time.sleep(0.05)
        api_store.finish(job_id, JobStatus.succeeded)

    t = threading.Thread(target=train)
    t.start()
    events = read_stream(client, job_id)
    t.join()
    assert [e[0] for e in events[:-1]] == [str(i) for i in range(1, 8)]
    assert events[-1][1] == "end"


def test_unknown_job_is_404_not_a_stream(client: TestClient) -> None:
    r = client.get("/v1/jobs/nosuchjob/events")
    assert r.status_code == 404 and r.json()["error"] == "job_not_found"
