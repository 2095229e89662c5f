"""Shared by the deployment tests: the shipped deployment files, read as data, and `deepfer serve` as a process.

The deployment files are parsed rather than pattern-matched so a test can ask real questions ("which env
variables does the api service set?", "what does the final stage's ENTRYPOINT say?"). Replicas run as separate
`deepfer serve` processes, the same entry point the image uses, because the load-balancer test has to kill one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import yaml

from tests.servers import free_ports

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "docker" / "nginx.conf"
K8S_DIR = ROOT / "docker" / "k8s"
REQUIREMENTS_SCRIPT = ROOT / "docker" / "requirements.py"
# The console script installed into the venv the tests run in (pip put it beside the interpreter).
DEEPFER_BIN = Path(sys.executable).with_name("deepfer")


def shared_dir() -> Path:
    """``DEEPFER_SHARED_DIR``, or ``../shared`` beside the repository, as every test of the project reads it."""
    return Path(os.environ.get("DEEPFER_SHARED_DIR", ROOT.parent / "shared"))


def public_scene() -> bytes:
    """One public scene with faces in it; skips the calling test when the shared data is absent."""
    path = shared_dir() / "data" / "scenes_public" / "scene_0000.jpg"
    if not path.is_file():
        pytest.skip(f"public scenes not found at {path.parent} (set DEEPFER_SHARED_DIR)")
    return path.read_bytes()


# --- Dockerfile -----------------------------------------------------------------------------------------------


@dataclass
class Instruction:
    """One Dockerfile instruction with its line continuations joined: ``keyword`` upper-case, ``args`` raw."""

    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (``CMD ["a", "b"]``), after any ``--flag=value`` options."""
        text = self.args
        while text.startswith("--"):
            text = text.split(maxsplit=1)[1]
        if text.startswith("CMD "):  # HEALTHCHECK [options] CMD [...]
            text = text[4:]
        value = json.loads(text)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.args}"
        return [str(item) for item in value]


@dataclass
class Stage:
    """A build stage: its ``FROM`` image, its ``AS`` name, and the instructions after the ``FROM``."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Every instruction of this kind, in order."""
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        """The instruction of this kind that takes effect (Docker keeps the last CMD, USER, ...)."""
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """The stage's ``ENV key=value ...`` pairs (the only ENV form the Dockerfile uses)."""
        pairs: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.args):
                key, _, value = token.partition("=")
                pairs[key] = value
        return pairs


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """All instructions of a Dockerfile, comments dropped and ``\\`` continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    return instructions


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The build stages in file order; the last one is what ``docker build`` without ``--target`` produces."""
    stages: list[Stage] = []
    for instruction in dockerfile_instructions(path):
        if instruction.keyword == "FROM":
            parts = instruction.args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def stage(name: str) -> Stage:
    """The stage called ``name``."""
    for candidate in dockerfile_stages():
        if candidate.name == name:
            return candidate
    raise AssertionError(f"the Dockerfile has no stage {name!r}")


# --- docker-compose and Kubernetes -----------------------------------------------------------------------------

# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}.
_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str, environ: Mapping[str, str] | None = None) -> str:
    """What Compose substitutes into ``value`` with the given shell environment (none: every default applies)."""
    env = environ or {}
    return _INTERPOLATION.sub(lambda m: env.get(m["name"], m["default"] or ""), value)


def compose() -> dict[str, Any]:
    """docker-compose.yml as plain data, YAML anchors and merge keys resolved by PyYAML."""
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A Compose service's environment (mapping or ``KEY=value`` list form), defaults interpolated."""
    raw = service.get("environment", {})
    items = raw.items() if isinstance(raw, dict) else (entry.split("=", 1) for entry in raw)
    return {key: interpolate(str(value)) for key, value in items}


def k8s_documents() -> list[dict[str, Any]]:
    """Every YAML document under docker/k8s/, in file-name order."""
    documents: list[dict[str, Any]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return documents


def k8s_object(kind: str) -> dict[str, Any]:
    """The one object of this kind under docker/k8s/."""
    found = [doc for doc in k8s_documents() if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in {K8S_DIR}, found {len(found)}"
    return found[0]


# --- nginx.conf ------------------------------------------------------------------------------------------------

# The two places docker/nginx.conf documents as test substitutions (see its header).
_UPSTREAM_SERVER = re.compile(r"^(?P<indent>\s*)server api:8000(?P<params>[^;]*);$", re.MULTILINE)
_LISTEN = re.compile(r"^(?P<indent>\s*)listen 8000;$", re.MULTILINE)


def render_nginx_conf(upstream_ports: list[int], listen_port: int) -> str:
    """docker/nginx.conf with only the upstream servers and the listen port moved to 127.0.0.1."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    server = _UPSTREAM_SERVER.search(text)
    assert server is not None, "docker/nginx.conf lost its `server api:8000 ...;` line"
    lines = [f"{server['indent']}server 127.0.0.1:{port}{server['params']};" for port in upstream_ports]
    text = text[: server.start()] + "\n".join(lines) + text[server.end() :]
    text, listens = _LISTEN.subn(lambda m: f"{m['indent']}listen 127.0.0.1:{listen_port};", text)
    assert listens == 1, "docker/nginx.conf lost its `listen 8000;` line"
    return text


def nginx_directive(name: str) -> list[str]:
    """The arguments of every ``name ...;`` directive in docker/nginx.conf, comments ignored."""
    text = re.sub(r"#.*", "", NGINX_CONF.read_text(encoding="utf-8"))
    return [m.group(1).strip() for m in re.finditer(rf"(?:^|[{{;\s]){re.escape(name)}\s+([^;{{}}]*);", text)]


# --- processes -------------------------------------------------------------------------------------------------


def wait_until(check: Any, timeout_s: float, what: str) -> None:
    """Poll ``check()`` every 0.2 s until it is truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def answers_ok(url: str) -> bool:
    """True when ``url`` answers 2xx; False while nothing listens or it answers otherwise."""
    try:
        return httpx.get(url, timeout=2.0).is_success
    except httpx.TransportError:
        return False


@dataclass
class Replica:
    """One `deepfer serve` process on 127.0.0.1."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        """Base URL of this replica."""
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def running_replicas(count: int, workdir: Path, ready_timeout_s: float = 90.0) -> Iterator[list[Replica]]:
    """Start ``count`` `deepfer serve` processes, wait until each passes /readyz, and stop them afterwards.

    Settings go in through DEEPFER_* variables, as in the container. They start together, so model loading
    overlaps; on exit each gets SIGTERM (uvicorn's graceful stop), then SIGKILL if it has not gone in 10 s.
    """
    replicas: list[Replica] = []
    logs: list[IO[bytes]] = []
    try:
        for index, port in enumerate(free_ports(count)):
            env = {**os.environ, "DEEPFER_HOST": "127.0.0.1", "DEEPFER_PORT": str(port), "DEEPFER_LOG_LEVEL": "warning"}
            log = workdir / f"replica-{index}.log"
            logs.append(log.open("wb"))
            process = subprocess.Popen([str(DEEPFER_BIN), "serve"], env=env, stdout=logs[-1], stderr=subprocess.STDOUT)
            replicas.append(Replica(port, process, log))
        for replica in replicas:
            wait_until(
                lambda r=replica: r.process.poll() is not None or answers_ok(f"{r.url}/readyz"),
                ready_timeout_s,
                f"replica on port {replica.port} to be ready",
            )
            assert replica.process.poll() is None, f"replica exited: {replica.log.read_text(errors='replace')}"
        yield replicas
    finally:
        for replica in replicas:
            stop_process(replica.process)
        for handle in logs:
            handle.close()


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``grace_s``; always reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
