"""docker-compose.yml runs ticketq the way Celery deployments run: workers by host role that scale,
two beats (one schedules, one stands by), Flower never open and seeing every worker, every queue
consumed, healthchecks gating start-up order, restart policies on everything that runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
REQUIRED_ENV = {"SECRET_KEY": "s" * 40, "POSTGRES_PASSWORD": "pw", "FLOWER_BASIC_AUTH": "admin:secret"}


@pytest.fixture(scope="module")
def compose_services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def command(service: dict[str, Any]) -> list[str]:
    value = service.get("command") or []
    return value.split() if isinstance(value, str) else [str(part) for part in value]


def celery_role(service: dict[str, Any]) -> str | None:
    args = command(service)
    return args[3] if args[:3] == ["celery", "-A", "worker"] and len(args) > 3 else None


def queues(service: dict[str, Any]) -> set[str]:
    args = command(service)
    return set(args[args.index("-Q") + 1].split(",")) if "-Q" in args else set()


def test_two_beats_on_the_redbeat_lock_one_active_one_standby(compose_services: dict[str, Any]) -> None:
    beats = sorted(name for name, svc in compose_services.items() if celery_role(svc) == "beat")
    assert beats == ["beat", "beat-standby"]
    assert command(compose_services["beat"]) == command(compose_services["beat-standby"])
    args = command(compose_services["beat"])
    # the scheduler is celeryconfig's (redbeat: schedule and lock in Redis), never a local schedule file
    assert "-s" not in args and "--scheduler" not in args and "-S" not in args
    assert "--enable-remote-control" in args and args[args.index("-n") + 1] == "beat@%h"
    for name in beats:
        assert "inspect ping -d beat@$$HOSTNAME" in " ".join(compose_services[name]["healthcheck"]["test"])
    # no worker embeds a scheduler with -B
    assert not any("-B" in command(svc) or "--beat" in command(svc) for svc in compose_services.values())


def test_workers_by_host_role_scale_with_unique_node_names(compose_services: dict[str, Any]) -> None:
    assert queues(compose_services["worker-documents"]) == {"documents"}
    assert queues(compose_services["worker-mail"]) == {"mail", "orders"}
    for name, svc in compose_services.items():
        if celery_role(svc) != "worker":
            continue
        args = command(svc)
        node = args[args.index("-n") + 1]
        assert node.endswith("@%h"), f"{name}: each scaled container needs its own node name"
        assert f"ping -d {node.split('@')[0]}@$$HOSTNAME" in " ".join(svc["healthcheck"]["test"]), name
        assert "container_name" not in svc and "ports" not in svc, f"{name} must scale (--scale {name}=N)"
        assert svc["environment"]["TASK_EVENTS"] == "${TASK_EVENTS:-true}", f"Flower must see {name}'s tasks"


def test_everything_that_runs_restarts(compose_services: dict[str, Any]) -> None:
    for name, svc in compose_services.items():
        expected = "no" if name == "migrate" else "unless-stopped"
        assert svc.get("restart") == expected, name


def test_redis_and_postgres_can_be_shared_servers(compose_services: dict[str, Any]) -> None:
    env = compose_services["worker-documents"]["environment"]
    assert env["REDIS_URL"] == "${REDIS_URL:-redis://redis:6379/0}"  # sentinel:// or rediss:// from .env
    assert "@${POSTGRES_HOST:-postgres}:" in env["DATABASE_URL"]


def test_flower_requires_basic_auth_from_env(compose_services: dict[str, Any]) -> None:
    flower = compose_services["flower"]
    assert celery_role(flower) == "flower"
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    # `${VAR:?message}`: compose refuses to start when it is unset or empty, so Flower is never open
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", auth), auth
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]
    assert not any("basic" in part and "=" in part for part in command(flower)), "no password in argv"


def test_workers_consume_every_queue_with_documents_apart_from_mail(compose_services: dict[str, Any]) -> None:
    workers = {name: svc for name, svc in compose_services.items() if celery_role(svc) == "worker"}
    assert set().union(*(queues(svc) for svc in workers.values())) == {"orders", "documents", "mail"}
    for name, svc in workers.items():
        assert not {"documents", "mail"} <= queues(svc), f"{name} mixes PDF rendering with mail delivery"
        assert "-c" in command(svc), f"{name} sets its own concurrency"


def test_migrate_runs_once_before_the_app(compose_services: dict[str, Any]) -> None:
    assert command(compose_services["migrate"]) == ["ticketq", "db", "upgrade"]
    assert compose_services["migrate"]["restart"] == "no"
    for name in ("api", "worker-mail", "worker-documents", "beat", "beat-standby", "flower"):
        depends = compose_services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["postgres"]["condition"] == "service_healthy", name


def test_healthchecks(compose_services: dict[str, Any]) -> None:
    for name in ("redis", "postgres", "api", "worker-mail", "worker-documents", "beat", "beat-standby", "flower",
                 "mailpit"):
        assert compose_services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(compose_services["api"]["healthcheck"]["test"])


def test_app_services_share_one_production_configuration(compose_services: dict[str, Any]) -> None:
    for name in ("api", "worker-mail", "worker-documents", "beat", "beat-standby", "flower", "migrate"):
        env = compose_services[name]["environment"]
        assert env["ENVIRONMENT"] == "production"
        assert env["DATABASE_URL"].startswith("postgresql://") and env["REDIS_URL"].startswith("${REDIS_URL:-redis://")
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")


def test_the_monitoring_profile_scrapes_the_api_and_every_worker(compose_services: dict[str, Any]) -> None:
    """`docker compose --profile monitoring up -d`: Prometheus with the rules, Grafana provisioned."""
    for name in ("prometheus", "grafana"):
        svc = compose_services[name]
        assert svc["profiles"] == ["monitoring"] and svc["restart"] == "unless-stopped", name
        assert all(str(port).startswith("127.0.0.1:") for port in svc["ports"]), f"{name} listens on localhost only"
        for volume in svc["volumes"]:
            source = volume.split(":")[0]
            assert not source.startswith("./") or (ROOT / source).exists(), volume
    assert "./deploy/prometheus:/etc/prometheus:ro" in compose_services["prometheus"]["volumes"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["ticketq-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["localhost:9090"]
    dns = jobs["ticketq-workers"]["dns_sd_configs"][0]  # every replica of a scaled service
    workers = {name for name, svc in compose_services.items() if celery_role(svc) == "worker"}
    assert set(dns["names"]) == workers
    for name, svc in compose_services.items():
        port = svc.get("environment", {}).get("WORKER_METRICS_PORT")
        assert port == (str(dns["port"]) if name in workers else None), f"{name}: WORKER_METRICS_PORT on workers only"


def test_env_example_names_every_required_variable() -> None:
    text = (ROOT / ".env.example").read_text()
    for name in REQUIRED_ENV:
        assert re.search(rf"^{name}=", text, re.M), name


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    """`docker compose config` needs no engine; skipped only where no compose client is installed."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose client installed (the YAML checks above still ran)")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in REQUIRED_ENV.items()))
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}  # only .env interpolates
    ok = subprocess.run([*cli, "config", "-q"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    monitoring = subprocess.run([*cli, "--profile", "monitoring", "config", "--services"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, check=False)
    assert monitoring.returncode == 0, monitoring.stderr
    assert {"prometheus", "grafana"} <= set(monitoring.stdout.split())
    (tmp_path / ".env").write_text("SECRET_KEY=x\nPOSTGRES_PASSWORD=pw\n")  # no FLOWER_BASIC_AUTH
    refused = subprocess.run([*cli, "config", "-q"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             check=False)
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr


def test_the_image_installs_the_lock_and_copies_every_package() -> None:
    """The image runs the locked versions, and every package of pyproject.toml is in it."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert re.search(r"pip install --no-deps \.", dockerfile)
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.M))
    include = re.search(r"include = \[([^\]]*)\]", (ROOT / "pyproject.toml").read_text())
    assert include is not None
    packages = {name.strip().strip('"').rstrip("*") for name in include.group(1).split(",")}
    assert packages <= copied, f"not copied into the image: {packages - copied}"
