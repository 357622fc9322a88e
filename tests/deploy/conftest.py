"""Fixtures for the static deployment checks: the parsed compose file, .env.example, schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from tests.deploy.deployfiles import (
    EnvEntry,
    compose_schema,
    deploy_environment,
    load_compose,
    parse_env_example,
)


@pytest.fixture(scope="session")
def env_entries() -> list[EnvEntry]:
    return parse_env_example()


@pytest.fixture(scope="session")
def deploy_env(env_entries: list[EnvEntry]) -> dict[str, str]:
    """The variables Compose sees after `cp .env.example .env` and setting the two passwords."""
    return deploy_environment(env_entries)


@pytest.fixture(scope="session")
def compose(deploy_env: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml, interpolated with ``deploy_env``."""
    return load_compose(deploy_env)


@pytest.fixture(scope="session")
def schema_validator() -> jsonschema.protocols.Validator:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)
