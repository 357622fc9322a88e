""".env.example documents exactly the variables the code and the compose file read."""

from __future__ import annotations

import os
from typing import Any

import pytest

from app.settings import Settings
from tests.deploy.deployfiles import (
    EnvEntry,
    code_env_reads,
    load_compose_raw,
    plain_defaults,
    referenced_names,
    settings_env_names,
    string_values,
)
from tests.deploy.test_compose import PROJECT_SERVICES

# Settings whose compose value differs from the code's default on purpose: the container's
# layout, the bundled postgres and redis, and `auto` jobs going to the GPU worker.
COMPOSE_OVERRIDES = {
    "MODELKILN_HOME",
    "MODELKILN_ARTIFACTS_DIR",
    "MODELKILN_DATA_DIR",
    "MODELKILN_DATABASE_URL",
    "MODELKILN_BROKER_URL",
    "MODELKILN_AUTO_QUEUE",
}


def compose_text() -> str:
    """Every string value of docker-compose.yml (not its comments), one per line."""
    return "\n".join(string_values(load_compose_raw()))


def test_env_example_documents_every_variable_read_and_nothing_else(
    env_entries: list[EnvEntry],
) -> None:
    documented = [e.name for e in env_entries]
    assert len(documented) == len(set(documented)), "a variable is documented twice"
    reads = code_env_reads()
    needed = {
        **{name: "app/settings.py (Settings)" for name in settings_env_names()},
        **{name: ", ".join(where) for name, where in reads.names.items()},
        **{name: "docker-compose.yml" for name in referenced_names(compose_text())},
    }
    missing = {name: why for name, why in needed.items() if name not in documented}
    unused = sorted(set(documented) - set(needed))
    assert missing == {}, f"read but not in .env.example: {missing}"
    assert unused == [], f"in .env.example but read by nothing: {unused}"


def test_the_code_reads_environment_variables_only_by_literal_name() -> None:
    # A computed name could not be checked against .env.example.
    assert code_env_reads().dynamic == []


def test_the_env_reader_finds_each_kind_of_read(tmp_path: Any) -> None:
    src = tmp_path / "app"
    src.mkdir()
    (src / "m.py").write_text(
        "import os\nfrom os import environ\n"
        "a = os.getenv('A')\nb = os.environ.get('B', '')\nc = os.environ['C']\n"
        "d = 'D' in os.environ\ne = environ.pop('E', None)\nos.environ['W'] = '1'\n"
        "f = os.environ[name]\n"
        "g = typer.Option('x', envvar='G')\nh = click.option('--h', envvar=['H1', 'H2'])\n"
    )
    reads = code_env_reads(tmp_path, ("app",))
    # W is written, not read
    assert set(reads.names) == {"A", "B", "C", "D", "E", "G", "H1", "H2"}
    assert reads.dynamic == ["app/m.py:9"]


def test_each_variable_has_one_comment_line(env_entries: list[EnvEntry]) -> None:
    undocumented = [e.name for e in env_entries if not e.comment]
    assert undocumented == []


def test_no_modelkiln_setting_is_active_in_the_example(env_entries: list[EnvEntry]) -> None:
    # `modelkiln serve` reads .env from its folder too: an active MODELKILN_ line copied for
    # compose (say a postgres://…@postgres URL) would break the embedded service there.
    active = [e.name for e in env_entries if e.active and e.name.startswith("MODELKILN_")]
    assert active == []


def test_example_values_match_the_compose_defaults(env_entries: list[EnvEntry]) -> None:
    defaults: dict[str, set[str]] = {}
    for name, default in plain_defaults(compose_text()):
        defaults.setdefault(name, set()).add(default)
    disagree = {name: values for name, values in defaults.items() if len(values) > 1}
    assert disagree == {}, "one variable, two defaults in docker-compose.yml"
    example = {e.name: e.value for e in env_entries}
    differ = {
        name: (example.get(name), default)
        for name, (default,) in defaults.items()
        if example.get(name) != default
    }
    assert differ == {}, ".env.example value vs compose default"


@pytest.mark.parametrize("service", sorted(PROJECT_SERVICES))
def test_every_setting_reaches_every_project_container(
    compose: dict[str, Any], service: str
) -> None:
    environment = compose["services"][service]["environment"]
    assert set(settings_env_names()) <= set(environment)


def test_compose_defaults_equal_the_code_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # A default repeated in docker-compose.yml must not drift from app/settings.py.
    for name in [n for n in os.environ if n.startswith("MODELKILN_")]:
        monkeypatch.delenv(name)
    fields = settings_env_names()
    checked = 0
    for env_name, default in plain_defaults(compose_text()):
        if env_name not in fields or env_name in COMPOSE_OVERRIDES:
            continue
        field = fields[env_name]
        parsed = getattr(Settings(_env_file=None, **{field: default}), field)
        assert parsed == Settings.model_fields[field].default, env_name
        checked += 1
    assert checked >= 5
