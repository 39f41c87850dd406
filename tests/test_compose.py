"""docker-compose.yml and the Dockerfile: validated by docker-compose, and their contract."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from _monitoring import PROMETHEUS_DIR, REPO, load_yaml
from _tools import require_tool

SERVICES = {"token-tracker", "prometheus", "alertmanager", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(REPO / "docker-compose.yml")


def _ports(service: dict[str, Any]) -> list[str]:
    return [str(p) for p in service.get("ports", [])]


def test_docker_compose_config_validates(tmp_path, monkeypatch) -> None:
    tool = require_tool("docker-compose")
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.multi-term expands somewhere harmless
    result = subprocess.run(
        [tool, "-f", "docker-compose.yml", "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_have_healthchecks(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES
    assert "version" not in compose, "obsolete in the Compose Specification"
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
        assert service.get("restart") == "unless-stopped", name


def test_only_loopback_is_published(compose: dict[str, Any]) -> None:
    exporter = compose["services"]["token-tracker"]
    assert not exporter.get("ports"), "the exporter is reachable on the compose network only"
    assert [str(p) for p in exporter["expose"]] == ["9464"]
    for name, service in compose["services"].items():
        for port in _ports(service):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert "127.0.0.1:3000:3000" in _ports(compose["services"]["grafana"])


def test_exporter_is_built_from_the_dockerfile_as_non_root(compose: dict[str, Any]) -> None:
    exporter = compose["services"]["token-tracker"]
    assert exporter["build"]["context"] == "."
    assert (REPO / exporter["build"]["dockerfile"]).is_file()
    user = exporter["user"]
    default_uid = re.fullmatch(r"\$\{\w+:-(\d+)\}:\$\{\w+:-(\d+)\}", user)
    assert default_uid, user
    assert default_uid.group(1) != "0" and default_uid.group(2) != "0"
    assert "~/.multi-term:/data" in exporter["volumes"]
    assert "ALL" in exporter.get("cap_drop", [])


def test_dockerfile_contract() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    assert re.search(r"^FROM python:3\.12-slim\b", text, re.M)
    assert re.search(r"pip install\b.*/src|pip install \.", text)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] == "10001"
    healthcheck = re.search(r"^HEALTHCHECK .*", text, re.M)
    assert healthcheck and "urllib" in healthcheck.group(0) and "/healthz" in healthcheck.group(0)
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])", text, re.M)
    assert entrypoint
    args = entrypoint.group(1)
    assert '"token-tracker", "serve"' in args
    assert '"--web.listen-address", "0.0.0.0:9464"' in args
    assert '"--ledger", "/data/token_usage.json"' in args
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignore and ".git" in ignore


def test_prometheus_service_loads_config_and_rules(compose: dict[str, Any]) -> None:
    prom = compose["services"]["prometheus"]
    mounts = dict(v.split(":")[1::-1] for v in prom["volumes"])  # target -> source
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == "./prometheus/rules"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    # rule_files in prometheus.yml are relative to the config file's directory
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    assert all(f.startswith("rules/") for f in config["rule_files"])
    # the scrape target is the exporter's service name and port
    target = config["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == "token-tracker:9464"


def test_named_volumes_keep_history(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    wanted = {"prometheus": "/prometheus", "grafana": "/var/lib/grafana",
              "alertmanager": "/alertmanager"}  # fmt: skip
    for service, path in wanted.items():
        named = [
            v.split(":")[0]
            for v in compose["services"][service]["volumes"]
            if v.split(":")[1] == path
        ]
        assert named and named[0] in declared, service


def test_bind_mounts_exist_in_the_repo(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source}"


def test_grafana_is_provisioned_without_anonymous_access(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    directory, _, file = home.rpartition("/")
    assert (REPO / mounts[directory] / file).is_file()
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_alertmanager_service_uses_the_repo_config(compose: dict[str, Any]) -> None:
    am = compose["services"]["alertmanager"]
    assert "./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in am["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
