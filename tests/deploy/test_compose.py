"""docker-compose.yml: valid against the Compose Specification, and shaped as issue 5 asks.

No Docker engine runs here, so this is what ``docker compose config`` would check (schema,
interpolation, references) plus the deployment's own promises.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from app.cli import WORKER_STOP_TIMEOUT_S
from tests.deploy.deployfiles import (
    InterpolationError,
    load_compose,
    string_values,
)

SERVICES = {"redis", "postgres", "migrate", "api", "worker", "worker-cpu", "flower"}
PROJECT_SERVICES = {"migrate", "api", "worker", "worker-cpu", "flower"}  # the ModelKiln image
ONE_SHOT = {"migrate"}
WORKERS = {"worker", "worker-cpu"}


def errors(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``90s``, ``2m``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "use the exec (list) form for commands"
    return command


def option(words: list[str], name: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``words``."""
    for i, word in enumerate(words):
        if word == name:
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    raise AssertionError(f"{name} not in {words}")


# --- the schema ---------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification(
    schema_validator: jsonschema.protocols.Validator, compose: dict[str, Any]
) -> None:
    assert errors(schema_validator, compose) == []


def _rename_key(doc: dict[str, Any]) -> None:
    doc["services"]["api"]["commandd"] = doc["services"]["api"].pop("command")


def _bad_condition(doc: dict[str, Any]) -> None:
    doc["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_ready"


def _ports_mapping(doc: dict[str, Any]) -> None:
    doc["services"]["api"]["ports"] = {"8000": 8000}


def _healthcheck_typo(doc: dict[str, Any]) -> None:
    doc["services"]["redis"]["healthcheck"]["intervall"] = "10s"


def _gpu_without_capabilities(doc: dict[str, Any]) -> None:
    del doc["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"][0][
        "capabilities"
    ]


def _services_list(doc: dict[str, Any]) -> None:
    doc["services"] = list(doc["services"])


@pytest.mark.parametrize(
    "mutate",
    [
        _rename_key,
        _bad_condition,
        _ports_mapping,
        _healthcheck_typo,
        _gpu_without_capabilities,
        _services_list,
    ],
)
def test_schema_rejects_a_broken_copy_of_the_compose_file(
    schema_validator: jsonschema.protocols.Validator,
    compose: dict[str, Any],
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert errors(schema_validator, broken), f"{mutate.__name__} was accepted"


# --- interpolation and references ---------------------------------------------------------------


def test_compose_refuses_to_start_without_the_two_passwords(
    env_entries: list[Any], deploy_env: dict[str, str]
) -> None:
    # `cp .env.example .env` alone leaves both passwords empty: compose must stop there.
    for secret in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        env = {**deploy_env, secret: ""}
        with pytest.raises(InterpolationError, match=secret):
            load_compose(env)


def test_the_store_and_broker_urls_are_built_from_the_passwords(compose: dict[str, Any]) -> None:
    env = compose["services"]["api"]["environment"]
    assert env["MODELKILN_DATABASE_URL"] == (
        "postgresql://modelkiln:pg-secret@postgres:5432/modelkiln"
    )
    assert env["MODELKILN_BROKER_URL"] == "redis://:redis-secret@redis:6379/0"


def test_every_reference_resolves(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name} mounts undeclared volume {source}"
    # A `$` left after interpolation is one the container's shell expands (it was `$$`).
    assert [s for s in string_values(compose) if "${" in s] == []


# --- the deployment's promises ------------------------------------------------------------------


def test_every_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if name in ONE_SHOT:
            assert check == {"disable": True} and service["restart"] == "no", name
        else:
            assert check.get("disable") is not True and check["test"], name


def test_dependencies_wait_for_health_and_for_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["api"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert argv(services["migrate"]) == ["modelkiln", "migrate"]
    assert "--no-migrate" in argv(services["api"])  # migrations run once, in `migrate`
    for name in WORKERS:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["flower"]["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_redis_persists_and_never_evicts_queued_jobs(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(argv(redis))
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert '--maxmemory "$REDIS_MAXMEMORY"' in command  # the policy needs a cap to apply
    assert "--requirepass" in command
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_postgres_keeps_its_data_on_a_named_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_api_and_workers_share_one_artifact_volume_at_the_artifacts_dir(
    compose: dict[str, Any],
) -> None:
    for name in ("api", *WORKERS):
        service = compose["services"][name]
        target = service["environment"]["MODELKILN_ARTIFACTS_DIR"]
        assert f"artifacts:{target}" in service["volumes"], name


def test_gpu_worker_reserves_one_nvidia_gpu_and_serves_the_gpu_queue(
    compose: dict[str, Any],
) -> None:
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    words = argv(worker)
    assert words[:2] == ["modelkiln", "worker"]
    assert option(words, "--queues") == "gpu"
    assert option(words, "--concurrency") == "1"  # one process per GPU


def test_cpu_worker_serves_the_cpu_queue_without_a_gpu(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker-cpu"]
    words = argv(worker)
    assert words[:2] == ["modelkiln", "worker"]
    assert option(words, "--queues") == "cpu"
    assert "deploy" not in worker


def test_workers_get_time_to_checkpoint_before_they_are_killed(compose: dict[str, Any]) -> None:
    for name in WORKERS:
        grace = seconds(compose["services"][name]["stop_grace_period"])
        # at least what `modelkiln serve` itself gives its worker for the same shutdown
        assert grace >= WORKER_STOP_TIMEOUT_S, name


def test_api_and_flower_publish_their_ports(compose: dict[str, Any]) -> None:
    assert compose["services"]["api"]["ports"] == ["8000:8000"]
    assert compose["services"]["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    for name in ("redis", "postgres"):  # reachable from other hosts only by an override
        assert "ports" not in compose["services"][name]


def test_project_services_run_the_project_image(compose: dict[str, Any]) -> None:
    images = {name: s["image"] for name, s in compose["services"].items() if "build" in s}
    assert set(images) == PROJECT_SERVICES
    assert set(images.values()) == {"modelkiln:cu130"}
    for name in PROJECT_SERVICES:
        assert compose["services"][name]["build"]["context"] == "."
