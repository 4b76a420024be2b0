"""deploy/ is checked like code: alert rules by promtool (syntax and unit tests), Kubernetes
manifests against the API schemas and our own rules, compose and systemd command lines by the
real CLI parser, and every metric a dashboard or alert reads must be one the code exports."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import prometheus_client
import pytest
import yaml

from exchange.cli.main import parse_args

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, ("promtool is needed: install the Debian package 'prometheus' "
                  "(scripts/test.sh does when run as root)")
    return path


def test_alert_rules_pass_promtool_check() -> None:
    out = subprocess.run([promtool(), "check", "rules", "alerts.yml"], cwd=DEPLOY / "prometheus",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 6 rules found" in out.stdout


def test_alert_rules_unit_tests_pass() -> None:
    out = subprocess.run([promtool(), "test", "rules", "alerts.test.yml"],
                         cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_unit_tests_can_fail(tmp_path: Path) -> None:
    """The promtool tests see a broken rule: the same tests on a rule that never fires."""
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(rules.replace("md_flowing == 0", "md_flowing == 2"))
    shutil.copy(DEPLOY / "prometheus" / "alerts.test.yml", tmp_path)
    out = subprocess.run([promtool(), "test", "rules", "alerts.test.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "MarketDataStale" in out.stdout + out.stderr


def test_every_alert_named_in_the_brief_exists() -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    names = {rule["alert"] for group in groups for rule in group["rules"]}
    assert names == {"MatcherDown", "MatcherLinkDown", "JournalFsyncSlow", "OverloadRefusals",
                     "SlowConsumers", "MarketDataStale"}


# ---- Kubernetes -----------------------------------------------------------------------------

def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    return docs


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in k8s_documents()
            if d["kind"] in ("Deployment", "StatefulSet")]


def test_k8s_manifests_match_the_api_schemas() -> None:
    for doc in k8s_documents():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_schema_check_can_fail() -> None:
    doc = next(d for d in k8s_documents() if d["kind"] == "StatefulSet")
    doc["spec"]["template"]["spec"]["securityContext"]["fsGroupp"] = 10001
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_pods_have_fsgroup_probes_limits_and_pinned_images() -> None:
    specs = pod_specs()
    assert {name for name, _ in specs} == {"matcher", "gateway", "redis"}
    for name, spec in specs:
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True and security["fsGroup"] == security[
            "runAsGroup"], name
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            assert "readinessProbe" in container and "livenessProbe" in container, where
            limits = container["resources"]["limits"]
            assert {"cpu", "memory"} <= set(limits), where
            assert pinned(container["image"]), where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where


def test_k8s_exchange_uid_matches_the_image() -> None:
    uid = re.search(r"--uid (\d+)", (REPO / "Dockerfile").read_text())
    assert uid is not None
    for name, spec in pod_specs():
        if name in ("matcher", "gateway"):
            assert spec["securityContext"]["runAsUser"] == int(uid.group(1))
            assert spec["securityContext"]["fsGroup"] == int(uid.group(1))


# ---- command lines in compose, k8s, systemd, the Dockerfile ------------------------------------

def pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest") and any(
        c.isdigit() for c in tag)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def exchange_command_lines() -> list[tuple[str, list[str]]]:
    lines: list[tuple[str, list[str]]] = []
    for name, service in compose()["services"].items():
        if service["image"].startswith("exchange:"):
            lines.append((f"compose {name}", service["command"]))
    for name, spec in pod_specs():
        for container in spec["containers"]:
            if container["image"].startswith("exchange:"):
                lines.append((f"k8s {name}", container["args"]))
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        exec_start = re.search(r"^ExecStart=(.+)$", unit.read_text(), re.MULTILINE)
        assert exec_start is not None, unit
        argv = shlex.split(exec_start.group(1))
        assert argv[0].endswith("/exchange"), unit
        lines.append((unit.name, argv[1:]))
    cmd = re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd is not None
    lines.append(("Dockerfile", json.loads(cmd.group(1))))
    return lines


def test_every_deployed_command_line_parses() -> None:
    lines = exchange_command_lines()
    assert len(lines) >= 7
    for where, argv in lines:
        try:
            parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"{where}: exchange {' '.join(argv)} does not parse") from exc


def test_compose_pins_images_balances_gateways_and_mounts_what_exists() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert pinned(service["image"]), name
    assert "ports" not in services["gateway"]  # reached only through the load balancer
    assert services["gateway"]["deploy"]["replicas"] >= 2
    lb = services["lb"]
    assert lb["ports"] == ["8080:8080"] and "gateway" in lb["depends_on"]
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert "server gateway:8080" in nginx and "proxy_set_header Upgrade" in nginx
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


# ---- the dashboard and the metrics it reads -------------------------------------------------

def exported_metric_names() -> set[str]:
    """Every sample name the gateway and matcher processes can export."""
    from gateway.metrics import GatewayMetrics

    # Importing these registers their metrics in the process-wide registry.
    for module in ("exchange.marketdata.publish", "exchange.matcher.metrics",
                   "gateway.marketdata.metrics"):
        importlib.import_module(module)

    names: set[str] = set()
    for registry in (GatewayMetrics().registry, prometheus_client.REGISTRY):
        for family in registry.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
    # A histogram's or counter's samples appear only once a label set exists: add the
    # names every sample of the family will have.
    for name in list(names):
        names.update({f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


METRIC = re.compile(r"\b([a-z_]+_(?:total|bucket|sum|count|seconds|bytes|depth|flight|up|"
                    r"sessions|connections|connected|flowing))\b")


def metric_names_in(expr: str) -> set[str]:
    return set(METRIC.findall(expr)) - {"by"}


def test_dashboard_provisioned_and_reads_only_exported_metrics() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "exchange.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "exchange.json").read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert titles == {"Order rate by result", "Ack latency (order.place)",
                      "Queue depth and in flight", "Journal fsync latency", "Batch size",
                      "Market-data lag", "Sessions", "Slow consumers", "Process CPU",
                      "Process memory"}
    exported = exported_metric_names()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        for target in panel["targets"]:
            used = metric_names_in(target["expr"])
            assert used, target["expr"]
            assert used <= exported, f"{panel['title']}: {sorted(used - exported)}"


def test_alert_rules_read_only_exported_metrics() -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    exported = exported_metric_names() | {"up"}  # `up` is Prometheus's own
    for rule in groups[0]["rules"]:
        used = metric_names_in(rule["expr"]) | ({"up"} if "up{" in rule["expr"] else set())
        assert used and used <= exported, (rule["alert"], sorted(used - exported))
