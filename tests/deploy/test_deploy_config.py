"""The shipped deployment files agree with the code, checked without Docker or Kubernetes.

A Dockerfile, a compose file and manifests are code no unit test imports: a renamed setting, a moved health
route or a changed port breaks them silently, in production. These tests read them as data (deploy_helpers) and
hold every name and number they share with the service against the service itself: the settings class, the app's
routes, the console scripts of pyproject.toml.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deepfer.server.app import create_app
from deepfer.settings import Settings
from tests.deploy.helpers import (
    DEEPFER_BIN,
    DOCKERIGNORE,
    NGINX_CONF,
    REQUIREMENTS_SCRIPT,
    ROOT,
    compose,
    compose_environment,
    dockerfile_instructions,
    dockerfile_stages,
    interpolate,
    k8s_documents,
    k8s_object,
    nginx_directive,
    render_nginx_conf,
    stage,
)

RUNTIME_STAGES = ("cpu", "gpu")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def get_routes() -> set[str]:
    """Paths the app serves with GET, from its OpenAPI schema; building the app loads no model (its lifespan does)."""
    paths: dict[str, dict[str, Any]] = create_app(Settings()).openapi()["paths"]
    return {path for path, operations in paths.items() if "get" in operations}


def _every_env_setting() -> Iterator[tuple[str, str, str]]:
    """(where, name, value) for each DEEPFER_* variable the Dockerfile, compose file and manifests set."""
    for built in dockerfile_stages():
        for name, value in built.env().items():
            yield f"Dockerfile stage {built.name}", name, value
    for service_name, service in compose()["services"].items():
        for name, value in compose_environment(service).items():
            yield f"compose service {service_name}", name, value
    for env in k8s_object("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]:
        # A Secret's value is not in the manifest; any string stands in for it.
        yield "k8s Deployment", env["name"], env.get("value", "value-from-a-secret")


def _name(requirement: str) -> str:
    """Normalised distribution name of a requirement ("opencv_python-headless>=4" -> "opencv-python-headless")."""
    return canonicalize_name(Requirement(requirement).name)


def _pod_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = k8s_object("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# --- Dockerfile ------------------------------------------------------------------------------------------------


def test_dockerfile_base_is_overridable_for_the_local_build() -> None:
    """container-build.sh passes its local Debian base as BASE, so the first FROM must use it."""
    instructions = dockerfile_instructions()
    assert (instructions[0].keyword, instructions[0].args) == ("ARG", "BASE=python:3.11-slim")
    assert dockerfile_stages()[0].base == "${BASE}"


def test_default_target_is_cpu_and_gpu_is_a_target() -> None:
    """`docker build .` (and the CI's build, which names no target) must give the CPU image."""
    stages = dockerfile_stages()
    assert stages[-1].name == "cpu"
    assert stages[-1].base == "${BASE}"
    gpu_chain = {s.name: s.base for s in stages}
    assert gpu_chain["gpu"] == "gpu-python"
    assert gpu_chain["gpu-python"] == "${CUDA_BASE}"
    assert any("CUDA_BASE=nvidia/cuda:" in i.args and "cudnn-runtime" in i.args for i in dockerfile_instructions())


@pytest.mark.parametrize("name", RUNTIME_STAGES)
def test_entry_point_is_the_declared_console_script(name: str) -> None:
    """ENTRYPOINT + CMD is `deepfer serve`, `deepfer` is pyproject's script, and `serve` is its command."""
    runtime = stage(name)
    command = runtime.last("ENTRYPOINT").exec_form() + runtime.last("CMD").exec_form()
    assert command == ["deepfer", "serve"]
    assert PYPROJECT["project"]["scripts"]["deepfer"] == "deepfer.cli:main"
    installed = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert installed.get("deepfer") == "deepfer.cli:main", "run `pip install -e .` so the script is installed"
    done = subprocess.run(
        [str(DEEPFER_BIN), "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", RUNTIME_STAGES)
def test_runtime_runs_as_the_non_root_user_kubernetes_expects(name: str) -> None:
    user = stage(name).last("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER must be a numeric non-root uid, got {user}"
    pod = k8s_object("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))


@pytest.mark.parametrize("name", RUNTIME_STAGES)
def test_healthcheck_calls_readyz_and_the_port_matches(name: str, get_routes: set[str]) -> None:
    runtime = stage(name)
    probe = runtime.last("HEALTHCHECK").exec_form()
    assert "/readyz" in probe[-1]
    assert "/readyz" in get_routes
    env = runtime.env()
    assert env["DEEPFER_HOST"] == "0.0.0.0"
    assert runtime.last("EXPOSE").args == env["DEEPFER_PORT"] == "8000"


def test_compose_healthcheck_is_the_image_healthcheck() -> None:
    """Two copies of one command: they must not drift apart."""
    image_probe = stage("cpu").last("HEALTHCHECK").exec_form()
    for name in ("api", "api-gpu"):
        assert compose()["services"][name]["healthcheck"]["test"] == ["CMD", *image_probe]


def test_image_installs_no_training_dependency() -> None:
    """The runtime requirement lists come from pyproject's dependencies; no `train` extra package is in them."""
    train = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["train"]}
    listed = {}
    for variant in ("cpu", "gpu"):
        done = subprocess.run(
            [sys.executable, str(REQUIREMENTS_SCRIPT), "--variant", variant, str(ROOT / "pyproject.toml")],
            capture_output=True,
            text=True,
            check=True,
        )
        listed[variant] = {_name(line) for line in done.stdout.splitlines()}
        assert not listed[variant] & train, f"{variant} image would install {listed[variant] & train}"
    assert "tensorflow" in train
    assert "onnxruntime" in listed["cpu"]
    assert "onnxruntime" not in listed["gpu"]
    assert "onnxruntime-gpu" in listed["gpu"]
    for name, variant in (("build", "cpu"), ("gpu-build", "gpu")):
        runs = " ".join(i.args for i in stage(name).all("RUN"))
        assert f"requirements.py --variant {variant}" in runs


def test_build_context_holds_what_the_dockerfile_copies_and_no_training_code() -> None:
    """.dockerignore is an allow-list; each COPY source must be on it, and training/ must not be."""
    lines = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert not {"training", "export", "runs", ".venv", "tests"} & allowed
    for built in dockerfile_stages():
        for copy in built.all("COPY"):
            if copy.args.startswith("--from"):
                continue
            for source in copy.args.split()[:-1]:
                assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"


# --- settings, everywhere ----------------------------------------------------------------------------------------


def test_every_deepfer_variable_is_a_setting_with_a_valid_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt DEEPFER_ name is silently ignored by pydantic-settings (extra="ignore"), so check each one.

    Each place's values are also loaded through Settings, so a value the class would reject (a provider name
    it does not know, say) fails here rather than at a user's `docker compose up`.
    """
    fields = {f"DEEPFER_{name.upper()}" for name in Settings.model_fields}
    by_place: dict[str, dict[str, str]] = {}
    for where, name, value in _every_env_setting():
        if name.startswith("DEEPFER_"):
            assert name in fields, f"{where} sets {name}, which deepfer.settings.Settings does not have"
            by_place.setdefault(where, {})[name] = value
    assert {"compose service api", "compose service api-gpu", "k8s Deployment", "Dockerfile stage cpu"} <= set(by_place)
    for values in by_place.values():
        with monkeypatch.context() as patch:
            for name, value in values.items():
                patch.setenv(name, value)
            Settings()


# --- docker-compose.yml ----------------------------------------------------------------------------------------


def test_compose_api_service_is_production_shaped() -> None:
    services = compose()["services"]
    api = services["api"]
    assert api["build"]["target"] == "cpu"
    assert "profiles" not in api, "the CPU service is the default: it must start without a profile"
    assert api["restart"] in {"unless-stopped", "always"}
    assert {"cpus", "memory"} <= set(api["deploy"]["resources"]["limits"])
    environment = compose_environment(api)
    assert api["expose"] == [environment["DEEPFER_PORT"], environment["DEEPFER_METRICS_PORT"]]
    assert "ports" not in api, "replicas publish no host port, so --scale cannot collide; lb is the entry"
    assert compose_environment(api)["DEEPFER_EXECUTION_PROVIDER"] == "cpu"
    grace_s = float(api["stop_grace_period"].removesuffix("s"))
    assert grace_s > Settings().graceful_shutdown_s
    assert api["read_only"] is True and "/tmp" in api["tmpfs"]


def test_compose_gpu_profile_reserves_a_gpu_and_uses_cuda() -> None:
    gpu = compose()["services"]["api-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["target"] == "gpu"
    assert compose_environment(gpu)["DEEPFER_EXECUTION_PROVIDER"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "api" in gpu["networks"]["default"]["aliases"], "nginx balances over the name `api`"


def test_compose_lb_runs_the_shipped_nginx_conf_after_the_api_is_ready() -> None:
    lb = compose()["services"]["lb"]
    source, target, _mode = lb["volumes"][0].split(":")
    assert (ROOT / source).resolve() == NGINX_CONF
    assert target == "/etc/nginx/nginx.conf"
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    assert lb["depends_on"]["api-gpu"] == {"condition": "service_healthy", "required": False}
    assert lb["ports"] == ["${LB_PORT:-8000}:8000"]


# --- nginx.conf ----------------------------------------------------------------------------------------------


def test_nginx_forwards_to_the_container_port_and_retries_safely() -> None:
    port = compose_environment(compose()["services"]["api"])["DEEPFER_PORT"]
    assert nginx_directive("server") == [f"api:{port} max_fails=3 fail_timeout=5s"]
    assert nginx_directive("listen") == ["8000"]
    retry_on = set(nginx_directive("proxy_next_upstream")[0].split())
    assert {"error", "timeout", "http_502", "http_503", "http_504", "non_idempotent"} <= retry_on
    assert "http_500" not in retry_on
    assert nginx_directive("proxy_request_buffering") in ([], ["on"]), "retries need the buffered body"


def test_nginx_body_cap_is_above_the_service_limits() -> None:
    """The service's own limits must decide (with its JSON error), not nginx's HTML 413."""
    settings = Settings()
    (cap,) = nginx_directive("client_max_body_size")
    assert cap.endswith("m")
    assert int(cap[:-1]) * 1024 * 1024 > settings.max_batch_files * settings.max_upload_bytes


def test_nginx_test_substitution_changes_only_servers_and_listen() -> None:
    """What tests/deploy/test_nginx_lb.py runs is the shipped file but for the documented lines."""
    shipped = NGINX_CONF.read_text(encoding="utf-8").splitlines()
    rendered = render_nginx_conf([9001, 9002], 9000).splitlines()
    changed = [line.strip() for line in rendered if line not in shipped]
    assert changed == [
        "server 127.0.0.1:9001 max_fails=3 fail_timeout=5s;",
        "server 127.0.0.1:9002 max_fails=3 fail_timeout=5s;",
        "listen 127.0.0.1:9000;",
    ]
    assert len(rendered) == len(shipped) + 1


# --- Kubernetes ----------------------------------------------------------------------------------------------


def test_k8s_probes_hit_real_routes_on_the_container_port(get_routes: set[str]) -> None:
    container = _pod_container()
    ports = {port["name"]: port for port in container["ports"]}
    port = ports["http"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert port["containerPort"] == int(env["DEEPFER_PORT"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in get_routes
        assert container[probe]["httpGet"]["port"] == port["name"]


def test_k8s_scrape_annotations_name_the_open_metrics_port() -> None:
    """Annotation scrapers send no API key, so they must point at DEEPFER_METRICS_PORT, not the API port."""
    container = _pod_container()
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    annotations = k8s_object("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] == int(env["DEEPFER_METRICS_PORT"])


def test_k8s_deployment_requests_resources_and_drains() -> None:
    container = _pod_container()
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    spec = k8s_object("Deployment")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > Settings().graceful_shutdown_s
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_k8s_service_and_hpa_point_at_the_deployment() -> None:
    deployment = k8s_object("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    service = k8s_object("Service")
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == _pod_container()["ports"][0]["name"]
    hpa = k8s_object("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu", "utilisation is a share of the pod's CPU request"


# --- Kubernetes schema ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", k8s_documents(), ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}")
def test_k8s_manifest_matches_the_kubernetes_schema(document: dict[str, Any]) -> None:
    """No cluster runs here: kubernetes-validate checks each object against the API server's own JSON schema,
    strictly (an unknown or misspelt field fails), for the Kubernetes version that package bundles last."""
    kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_k8s_api_keys_come_from_a_secret() -> None:
    env = {item["name"]: item for item in _pod_container()["env"]}
    for name in ("DEEPFER_API_KEYS", "DEEPFER_ADMIN_TOKEN"):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"] == "deepfer"


def test_custom_model_is_mounted_where_the_setting_points() -> None:
    """Compose and k8s both read the classifier from a mounted volume, at the path DEEPFER_CLASSIFIER_PATH names."""
    api = compose()["services"]["api"]
    (mount,) = api["volumes"]
    source, target, mode = interpolate(mount).split(":")
    assert mode == "ro" and compose_environment(api)["DEEPFER_CLASSIFIER_PATH"].startswith(target + "/")
    assert (ROOT / source / Path(compose_environment(api)["DEEPFER_CLASSIFIER_PATH"]).name).is_file()

    container = _pod_container()
    env = {item["name"]: item.get("value") for item in container["env"]}
    (models,) = [m for m in container["volumeMounts"] if m["name"] == "models"]
    assert models["readOnly"] and env["DEEPFER_CLASSIFIER_PATH"].startswith(models["mountPath"] + "/")
    volumes = {v["name"]: v for v in k8s_object("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert (
        volumes["models"]["persistentVolumeClaim"]["claimName"]
        == k8s_object("PersistentVolumeClaim")["metadata"]["name"]
    )
