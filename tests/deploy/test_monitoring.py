"""What Prometheus and Grafana see: the live /metrics, the open scrape port, and the shipped dashboard's queries.

The dashboard (docker/grafana/dashboards/deepfer.json) is code no other test runs: a renamed metric would leave
a panel silently empty. Here every metric its queries name must be one the live service exports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.helpers import ROOT, compose, compose_environment
from tests.imaging import DATA
from tests.servers import free_port

DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "deepfer.json"
PROMETHEUS = ROOT / "docker" / "prometheus.yml"
SCENE = (DATA / "scenes" / "scene_0000.jpg").read_bytes()
METRIC_NAME = re.compile(r"\b(?:deepfer|process|python)_[a-z0-9_]+\b")


def exported_samples(metrics_text: str) -> set[str]:
    """Every sample name the exposition holds (``deepfer_request_seconds_bucket``, ``deepfer_errors_total``...)."""
    return {sample.name for family in text_string_to_metric_families(metrics_text) for sample in family.samples}


def dashboard_queries() -> list[str]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_metrics_are_honest(client: httpx.Client) -> None:
    """Process and platform collectors, no *_created series, the model's identity, errors by code, route
    templates only."""
    client.post("/predict", files={"file": SCENE})
    client.post("/predict", files={"file": b"not an image"})
    client.get("/no/such/route/12345")
    text = client.get("/metrics").text
    samples = exported_samples(text)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert name in samples
    assert "python_gc_collections_total" in samples
    assert not [line for line in text.splitlines() if "_created" in line]
    model = client.get("/model").json()
    expected = (
        f'deepfer_model_info{{name="{model["name"]}",sha256="{model["sha256"]}",version="{model["version"]}"}} 1.0'
    )
    assert expected in text
    errors = {
        sample.labels["code"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "deepfer_errors"
        for sample in family.samples
    }
    assert errors["bad_image"] >= 1 and errors["not_found"] >= 1
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(text)
        if family.name == "deepfer_requests"
        for sample in family.samples
    }
    assert "/no/such/route/12345" not in routes and "unmatched" in routes and "/predict" in routes


def test_scrape_port_is_open_while_the_api_port_needs_a_key(live_server: Callable[..., Any]) -> None:
    port = free_port()
    with live_server(api_keys=["scrape-test-key"], metrics_port=port) as url:
        assert httpx.get(f"{url}/metrics").status_code == 401
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert scraped.status_code == 200 and "deepfer_model_info{" in scraped.text


def test_every_dashboard_query_names_an_exported_metric(client: httpx.Client) -> None:
    client.post("/predict", files={"file": SCENE})  # so the labelled series exist
    client.post("/predict", files={"file": b"not an image"})
    exported = exported_samples(client.get("/metrics").text)
    queries = dashboard_queries()
    assert len(queries) >= 8
    for query in queries:
        named = METRIC_NAME.findall(query)
        assert named, f"no metric in {query!r}"
        missing = set(named) - exported
        assert not missing, f"{query!r} names {missing}, which the service does not export"


def test_monitoring_profile_scrapes_the_open_port_and_provisions_the_dashboard() -> None:
    services = compose()["services"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]
    metrics_port = int(compose_environment(services["api"])["DEEPFER_METRICS_PORT"])
    (job,) = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["api"] and discovery["port"] == metrics_port
    # Grafana's container path -> the repository folder mounted there.
    mounted = {target: ROOT / source for source, target, _ in (v.split(":") for v in services["grafana"]["volumes"])}
    provisioning = mounted["/etc/grafana/provisioning"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "deepfer.yml").read_text())["providers"]
    assert mounted[provider["options"]["path"]].resolve() == DASHBOARD.parent
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    assert {target["datasource"]["uid"] for panel in panels for target in panel["targets"]} == {source["uid"]}
