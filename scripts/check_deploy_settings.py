"""Check rendered Kubernetes manifests and the Dockerfile against the service's own code.

Schemas say a manifest is well formed; this says it fits *this* service. For
each rendered overlay (a multi-document YAML file) it loads the ConfigMap's
``config.yaml`` together with the container's ``ARMADA_JOBSERVICE_*``
variables (values and Secret references resolved) and its arguments, through
the same parser and ``config.load`` that ``armada-jobservice serve`` uses, so
an unknown setting or a value that cannot work fails here as it would at
start-up. Then it checks that the ports of the container, its probes, the
Prometheus annotations and the Services agree with the settings; that every
file a setting names is mounted; that the SQLite file is on a writable
volume of a single-replica StatefulSet and PostgreSQL runs several replicas
with no password in its URL (the service logs the URL at start);
and that the pod runs as non-root on a read-only root file system. For the
Dockerfile: the exposed ports, the CMD's metrics port and the entrypoint.
For the files given with ``--metrics-in`` (the alert rules, the docs): every
``armada_jobservice_*`` name is a sample the service exports.

Usage: python scripts/check_deploy_settings.py [--dockerfile FILE] [--metrics-in FILE]...
           RENDERED.yaml...
Exit code 0 when everything holds, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import base64
import posixpath
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from armada_jobservice._wire import DEFAULT_PORT
from armada_jobservice.cli import build_parser
from armada_jobservice.server import config
from armada_jobservice.server.app import LIVENESS_SERVICE
from armada_jobservice.server.errors import ConfigError

CONTAINER = "jobservice"
#: Settings that name a file the service reads.
FILE_SETTINGS = (
    "armada_ca_file",
    "armada_token_file",
    "armada_oidc_client_secret_file",
    "armada_oidc_password_file",
    "grpc_tls_cert_file",
    "grpc_tls_key_file",
    "client_tokens_file",
    "grpc_tls_client_ca_file",
    "client_cert_scopes_file",
)


class Problems:
    """Collects one line per problem, prefixed with where it was found."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def check(self, ok: bool, where: str, message: str) -> None:
        if not ok:
            self.lines.append(f"{where}: {message}")


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def secret_value(docs: list[dict[str, Any]], name: str, key: str) -> str | None:
    for secret in by_kind(docs, "Secret"):
        if secret["metadata"]["name"] != name:
            continue
        if key in secret.get("stringData", {}):
            return str(secret["stringData"][key])
        if key in secret.get("data", {}):
            return base64.b64decode(secret["data"][key]).decode()
    return None


def container_env(
    docs: list[dict[str, Any]], container: dict[str, Any], problems: Problems, where: str
) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = str(var["value"])
            continue
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        problems.check(ref is not None, where, f"env {name}: only values and Secret keys are read")
        if ref is None:
            continue
        value = secret_value(docs, ref["name"], ref["key"])
        problems.check(
            value is not None, where, f"env {name}: Secret {ref['name']} has no key {ref['key']}"
        )
        if value is not None:
            env[name] = value
    problems.check(
        not container.get("envFrom"), where, "envFrom hides which settings are set; use env"
    )
    return env


def mounted(
    path: str, pod: dict[str, Any], container: dict[str, Any], extra_volumes: list[str]
) -> dict[str, Any] | None:
    """The volume mount that holds *path*, if any (with its volume under ``volume``)."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/")
        if not path.startswith(root + "/"):
            continue
        volume = volumes.get(mount["name"])
        if volume is None and mount["name"] not in extra_volumes:
            continue
        rel = path[len(root) + 1 :]
        items = (volume or {}).get("secret", (volume or {}).get("configMap", {})).get("items")
        if items is not None and rel not in {i["path"] for i in items}:
            continue
        return {**mount, "volume": volume}
    return None


def check_overlay(path: Path, problems: Problems) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    where = path.name
    workloads = by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")
    problems.check(len(workloads) == 1, where, f"expected one workload, found {len(workloads)}")
    if len(workloads) != 1:
        return
    workload = workloads[0]
    kind = workload["kind"]
    where = f"{path.name} {kind}"
    pod = workload["spec"]["template"]["spec"]
    containers = [c for c in pod["containers"] if c["name"] == CONTAINER]
    problems.check(len(containers) == 1, where, f"no container named {CONTAINER}")
    if not containers:
        return
    container = containers[0]

    # The settings, as serve reads them: the file, the variables, the flags.
    args = container.get("args", [])
    problems.check(args[:1] == ["serve"], where, f"args must start with serve, got {args}")
    parsed = build_parser().parse_args(args)
    flags = {
        name: config.coerce(name, getattr(parsed, name))
        for name in config.field_names()
        if getattr(parsed, name, None) is not None
    }
    config_file = parsed.config or ""
    config_mount = next(
        (
            m
            for m in container.get("volumeMounts", [])
            if config_file.startswith(m["mountPath"].rstrip("/") + "/")
        ),
        None,
    )
    problems.check(config_mount is not None, where, f"--config {parsed.config} is not mounted")
    if config_mount is None:
        return
    volume = next(v for v in pod["volumes"] if v["name"] == config_mount["name"])
    cm_name = volume.get("configMap", {}).get("name")
    cms = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == cm_name]
    key = posixpath.relpath(parsed.config, config_mount["mountPath"])
    problems.check(
        len(cms) == 1 and key in cms[0].get("data", {}),
        where,
        f"ConfigMap {cm_name} has no {key}",
    )
    if len(cms) != 1 or key not in cms[0].get("data", {}):
        return
    env = container_env(docs, container, problems, where)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(cms[0]["data"][key])
        fh.flush()
        try:
            settings = config.load(fh.name, environ=env, overrides=flags)
        except ConfigError as exc:
            problems.check(False, where, f"serve would refuse to start: bad setting {exc}")
            return

    # Ports: the container, its probes, the annotations and the Services.
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    problems.check(
        ports.get("grpc") == settings.grpc_port,
        where,
        f"container port grpc {ports.get('grpc')} != grpc_port {settings.grpc_port}",
    )
    problems.check(
        settings.metrics_port is not None and ports.get("metrics") == settings.metrics_port,
        where,
        f"container port metrics {ports.get('metrics')} != metrics_port {settings.metrics_port}",
    )
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container.get(probe)
        problems.check(spec is not None and "grpc" in spec, where, f"{probe} must be a grpc probe")
        if spec and "grpc" in spec:
            problems.check(
                spec["grpc"]["port"] == settings.grpc_port,
                where,
                f"{probe} asks port {spec['grpc']['port']}, grpc_port is {settings.grpc_port}",
            )
            # Liveness asks the process; the others ask whether it can serve.
            wanted = LIVENESS_SERVICE if probe == "livenessProbe" else ""
            asked = spec["grpc"].get("service", "")
            problems.check(
                asked == wanted, where, f"{probe} asks health service {asked!r}, not {wanted!r}"
            )
    problems.check(
        settings.grpc_tls_cert_file is None,
        where,
        "grpc probes speak plain text: with grpc_tls_cert_file use exec probes",
    )
    annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
    problems.check(
        annotations.get("prometheus.io/scrape") == "true"
        and annotations.get("prometheus.io/port") == str(settings.metrics_port),
        where,
        f"prometheus.io annotations must name metrics_port {settings.metrics_port}",
    )
    for service in by_kind(docs, "Service"):
        for port in service["spec"]["ports"]:
            target = port.get("targetPort")
            problems.check(
                target in ports or target in ports.values(),
                f"{path.name} Service {service['metadata']['name']}",
                f"targetPort {target} is no port of the container",
            )

    # Files named by settings are mounted (and Secret items include them).
    for name in FILE_SETTINGS:
        value = getattr(settings, name)
        if value is not None:
            problems.check(
                mounted(value, pod, container, []) is not None,
                where,
                f"{name} {value} is not on a mounted volume",
            )

    # The database fits the workload.
    replicas = workload["spec"].get("replicas", 1)
    claims = [c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])]
    if settings.database.startswith("sqlite:"):
        db_file = settings.database[len("sqlite:///") :]
        problems.check(db_file.startswith("/"), where, "use an absolute SQLite path")
        mount = mounted(db_file, pod, container, claims)
        problems.check(
            mount is not None and mount["name"] in claims and not mount.get("readOnly"),
            where,
            f"SQLite file {db_file} must be on a writable PersistentVolumeClaim",
        )
        problems.check(
            kind == "StatefulSet" and replicas == 1,
            where,
            f"SQLite is one process's file: one replica of a StatefulSet, not {replicas}",
        )
    else:
        problems.check(
            urlsplit(settings.database).password is None,
            where,
            "no password in the database URL (the service logs the URL): use PGPASSWORD",
        )
        problems.check(
            kind == "Deployment" and replicas >= 2,
            where,
            "PostgreSQL is the several-replica variant: a Deployment of two or more",
        )

    # Non-root, read-only root file system, resources set.
    pod_sc = pod.get("securityContext", {})
    sc = container.get("securityContext", {})
    problems.check(pod_sc.get("runAsNonRoot") is True, where, "runAsNonRoot must be true")
    problems.check(sc.get("readOnlyRootFilesystem") is True, where, "root fs must be read-only")
    problems.check(sc.get("allowPrivilegeEscalation") is False, where, "no privilege escalation")
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        for what in ("cpu", "memory"):
            problems.check(
                what in resources.get(part, {}), where, f"resources.{part}.{what} missing"
            )


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each line, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            yield word.upper(), rest.strip()


def check_dockerfile(path: Path, problems: Problems) -> None:
    where = path.name
    instructions = list(dockerfile_instructions(path.read_text()))
    exposed = {
        int(p.split("/")[0])
        for word, rest in instructions
        if word == "EXPOSE"
        for p in rest.split()
    }
    entrypoint = [yaml.safe_load(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    cmd = [yaml.safe_load(rest) for word, rest in instructions if word == "CMD"]
    problems.check(
        entrypoint[-1:] == [["armada-jobservice"]], where, "ENTRYPOINT must be armada-jobservice"
    )
    problems.check(bool(cmd) and cmd[-1][:1] == ["serve"], where, "CMD must start with serve")
    if cmd:
        args = build_parser().parse_args(cmd[-1])
        metrics_port = config.coerce("metrics_port", args.metrics_port)
        problems.check(metrics_port is not None, where, "CMD must turn on --metrics-port")
        grpc_port = config.coerce("grpc_port", args.grpc_port) or DEFAULT_PORT
        problems.check(
            {grpc_port, metrics_port} <= exposed,
            where,
            f"EXPOSE {sorted(exposed)} must list the gRPC port {grpc_port} and {metrics_port}",
        )
    healthchecks = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    problems.check(
        bool(healthchecks) and "armada-jobservice health" in healthchecks[-1],
        where,
        "HEALTHCHECK must run `armada-jobservice health`",
    )
    users = [rest for word, rest in instructions if word == "USER"]
    problems.check(
        bool(users) and users[-1].split(":")[0] not in ("0", "root"), where, "USER must be non-root"
    )


#: The sample names Prometheus sees for each kind of metric family.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    # A histogram is also named by its family name in prose.
    "histogram": ("", "_bucket", "_sum", "_count", "_created"),
}
METRIC_NAME = re.compile(r"\barmada_jobservice_[a-z_]+")


def exported_samples() -> set[str]:
    """Every sample name the service's registry exports (the app built, never started).

    Built once per kind of database: with PostgreSQL the fleet's metrics are
    exported too. Building connects to nothing.
    """
    from armada_jobservice.server.app import JobServiceApp

    families = []
    with tempfile.TemporaryDirectory() as tmp:
        for database in (f"sqlite:///{tmp}/unused.db", "postgresql://unused@127.0.0.1:1/unused"):
            app = JobServiceApp(config.Settings(database=database))
            families += list(app.metrics.registry.collect())
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def check_metric_names(paths: list[Path], problems: Problems) -> None:
    exported = exported_samples()
    for path in paths:
        for name in sorted(set(METRIC_NAME.findall(path.read_text()))):
            problems.check(
                name in exported, path.name, f"{name} is not a metric the service exports"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dockerfile", type=Path)
    parser.add_argument("--metrics-in", type=Path, action="append", default=[])
    parser.add_argument("rendered", nargs="+", type=Path)
    args = parser.parse_args(argv)
    problems = Problems()
    for path in args.rendered:
        check_overlay(path, problems)
    if args.dockerfile is not None:
        check_dockerfile(args.dockerfile, problems)
    check_metric_names(args.metrics_in, problems)
    for line in problems.lines:
        print(f"check_deploy_settings: {line}", file=sys.stderr)
    checked = [p.name for p in args.rendered] + ([args.dockerfile.name] if args.dockerfile else [])
    checked += [p.name for p in args.metrics_in]
    if not problems.lines:
        print(
            f"check_deploy_settings: {', '.join(checked)}: settings, ports, mounts, metrics agree"
        )
    return 1 if problems.lines else 0


if __name__ == "__main__":
    sys.exit(main())
