"""The production packaging, checked where no container engine runs: the lock files pin every
dependency pyproject.toml asks for, the Dockerfile's install steps build a working `fatoura` in a
clean virtual environment, and compose.yaml runs exactly the Procfile's process types."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            pins[_canonical(name)] = version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_lock_files_pin_a_version_inside_every_range_of_pyproject():
    project = _pyproject()["project"]
    app, test = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-test.lock")
    assert not set(app) & set(test), "a package is pinned twice"
    for raw, pins in [(r, app) for r in project["dependencies"]] + \
                     [(r, {**app, **test}) for r in project["optional-dependencies"]["test"]]:
        requirement = Requirement(raw)
        name = _canonical(requirement.name)
        assert name in pins, f"{requirement.name} is not in the lock files: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"{requirement.name}=={pins[name]} is outside pyproject's {requirement.specifier}: run `make lock`"


def test_the_makefile_installs_through_the_lock_files():
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCKS := requirements.lock requirements-test.lock" in makefile
    assert "$(foreach f,$(LOCKS),-c $(f))" in makefile


def _procfile() -> dict[str, list[str]]:
    kinds = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip():
            kind, _, command = line.partition(":")
            kinds[kind.strip()] = shlex.split(command.replace("$PORT", "8000"))
    return kinds


def test_compose_runs_the_procfiles_process_types_with_postgresql_redis_and_a_proxy():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = re.search(r'^ENTRYPOINT \["tini", "--", "fatoura"\]$', dockerfile, re.MULTILINE)
    assert entrypoint, "the image's entry point is `fatoura` (under tini, which forwards SIGTERM)"
    for kind, command in _procfile().items():
        assert command[0] == "fatoura"
        assert services[kind]["command"] == command[1:], f"compose's {kind} differs from the Procfile"
    assert services["web"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] == 2
    for kind in ("web", "worker"):
        needs = services[kind]["depends_on"]
        assert needs["release"] == {"condition": "service_completed_successfully"}, "migrations run first"
        assert services[kind]["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert services[kind]["environment"]["REDIS_URL"].startswith("redis://")
        assert services[kind]["environment"]["SANDBOX"] == "false"
    assert {"postgres", "redis", "proxy"} <= set(services)
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server web:8000;" in nginx
    assert "agents/stream" in nginx and "chat/ws" in nginx, "the long-lived streams are proxied unbuffered"


def test_the_image_runs_as_a_user_other_than_root_with_compiled_catalogs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert re.search(r"^USER fatoura$", dockerfile, re.MULTILINE)
    assert "pip install -r requirements.lock" in dockerfile
    assert "fatoura i18n compile" in dockerfile


@pytest.mark.slow
def test_the_dockerfiles_install_steps_give_a_working_fatoura_in_a_clean_venv(tmp_path):
    """The Dockerfile's RUN steps, replayed in a fresh virtual environment: the lock file alone
    satisfies the application (`pip check`), and the installed command compiles the catalogs and
    answers."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "FATOURA_LOCALES_DIR": str(tmp_path / "locales"),
           "PYTHONPATH": ""}
    subprocess.run(["cp", "-r", str(ROOT / "locales"), str(tmp_path / "locales")], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements.lock")], check=True, env=env)
    source = tmp_path / "src"  # like the image: only what the Dockerfile copies
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "babel.cfg", "core", "bot", "webhooks", "fatoura"):
        subprocess.run(["cp", "-r", str(ROOT / name), str(source / name)], check=True)
    subprocess.run([*pip, "--no-deps", str(source)], check=True, env=env)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    fatoura = venv / "bin" / "fatoura"
    subprocess.run([str(fatoura), "i18n", "compile"], check=True, env=env, cwd=tmp_path, capture_output=True)
    assert sorted(p.parent.parent.name for p in (tmp_path / "locales").rglob("messages.mo")) == ["ar", "en", "fr"]
    help_text = subprocess.run([str(fatoura), "--help"], check=True, env=env, cwd=tmp_path,
                               capture_output=True, text=True).stdout
    assert "serve" in help_text and "worker" in help_text
