"""One live embedded server for the CLI tests, and a ``cli`` runner bound to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.cli.live import CliResult, LiveServer, run_cli

Cli = Callable[..., CliResult]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli-server") / "home").start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def cli(server: LiveServer) -> Cli:
    """``cli("jobs")`` runs ``modelkiln jobs`` against the live server (MODELKILN_URL)."""

    def run(*args: str, timeout: float = 300) -> CliResult:
        return run_cli(*args, env=server.env, timeout=timeout, cwd=server.home.parent)

    return run
