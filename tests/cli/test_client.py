"""``app.client`` without a server: SSE parsing, resume by Last-Event-ID, the error shape."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from app.cli_client import check_hyperparams, dataset_ref, parse_settings
from app.client import ClientError, ModelKilnClient, _parse_sse
from ml.specs import ModelKind


def sse(seq: int, kind: str = "metrics", **data: object) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps({'seq': seq, **data})}\n\n"


def test_parse_sse_joins_data_lines_and_skips_comments() -> None:
    lines = iter([": keep-alive", "id: 3", "event: metrics", "data: {", 'data: "a": 1}', "", "x"])
    assert list(_parse_sse(lines)) == [("3", "metrics", '{\n"a": 1}')]


def test_events_resume_after_a_dropped_connection_without_gap_or_duplicate() -> None:
    """The first connection dies after seq 2; the client reconnects with Last-Event-ID: 2."""
    history = [sse(1, step=1), sse(2, step=2), sse(3, step=3), sse(4, "end", status="succeeded")]
    seen_headers: list[str | None] = []

    class Dropping(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield "".join(history[:2]).encode()
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        last = request.headers.get("Last-Event-ID")
        seen_headers.append(last)
        if last is None:
            return httpx.Response(200, stream=Dropping())
        rest = [h for h in history if int(h.split()[1]) > int(last)]
        return httpx.Response(200, text="".join(rest))

    with ModelKilnClient("http://test", transport=httpx.MockTransport(handler)) as api:
        events = list(api.events("j1"))
    assert [e.id for e in events] == [1, 2, 3, 4]
    assert events[-1].event == "end" and events[-1].data["status"] == "succeeded"
    assert seen_headers == [None, "2"]


def test_api_errors_keep_their_code_and_detail() -> None:
    body = {"error": "job_not_found", "detail": "no job with id 'x'"}
    transport = httpx.MockTransport(lambda _: httpx.Response(404, json=body))
    with (
        ModelKilnClient("http://test", transport=transport) as api,
        pytest.raises(ClientError) as e,
    ):
        api.get_job("x")
    assert (e.value.status, e.value.error, e.value.detail) == (404, "job_not_found", body["detail"])
    assert str(e.value) == "404 job_not_found: no job with id 'x'"


def test_a_server_that_is_down_is_a_client_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(refuse)
    with (
        ModelKilnClient("http://test", transport=transport) as api,
        pytest.raises(ClientError) as e,
    ):
        api.list_jobs()
    assert e.value.status is None and e.value.error == "unreachable"
    assert "cannot reach the ModelKiln API at http://test" in str(e.value)


def test_parse_settings_reads_json_values_else_strings() -> None:
    got = parse_settings(["lr=1e-3", "spectral_norm=true", "g_loss=minimax", "latent-dim=16"])
    assert got == {"lr": 0.001, "spectral_norm": True, "g_loss": "minimax", "latent_dim": 16}
    with pytest.raises(ValueError, match="key=value"):
        parse_settings(["epochs"])


def test_check_hyperparams_uses_the_api_spec() -> None:
    check_hyperparams(ModelKind.gan, {"epochs": 2, "pack": 2, "batch_size": 64})
    with pytest.raises(ValueError, match="must be a multiple of pack"):
        check_hyperparams(ModelKind.gan, {"pack": 3, "batch_size": 64})
    with pytest.raises(ValueError, match="unknown neuron setting latent_dim"):
        check_hyperparams(ModelKind.neuron, {"latent_dim": 3})


def test_dataset_ref() -> None:
    assert dataset_ref("digits") == {"name": "digits"}
    assert dataset_ref("id:abc123") == {"id": "abc123"}
