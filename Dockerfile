# The job service's container image (docs/deployment.md).
#
#   docker build -t armada-jobservice:0.1.0 .
#   docker run -p 60003:60003 -p 9090:9090 \
#       -e ARMADA_JOBSERVICE_ARMADA_URL=armada.example.com:443 armada-jobservice:0.1.0
#
# Stage "build" builds the wheel and installs it, with the postgres extra and
# the pins of constraints.txt, into a venv; stage "runtime" copies that venv
# into a slim Python of the same tag and runs it as a non-root user. The dev
# extra (pytest, mypy, ruff, grpcio-tools for protos...) is never installed.
# Linted by hadolint in CI (scripts/check-deploy, settings in .hadolint.yaml).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
# hatchling is the build backend of pyproject.toml, pinned here so that the
# wheel is built the same way every time (its own dependencies by
# constraints.txt where that lists them).
RUN python -m pip install -c constraints.txt hatchling==1.33.0 \
    && python -m pip wheel --no-build-isolation --no-deps --wheel-dir /dist .
# One image for both databases: the postgres extra (psycopg) is a runtime
# dependency of the PostgreSQL deployment. pip compiles the bytecode here, so
# nothing is written under /opt at run time (read-only root file system).
RUN python -m venv /opt/armada-jobservice \
    && set -- /dist/armada_jobservice-*.whl \
    && /opt/armada-jobservice/bin/pip install -c constraints.txt "$1[postgres]"

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/armada-jobservice/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 jobservice \
    && useradd --system --uid 10001 --gid jobservice --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin jobservice \
    && install -d -o jobservice -g jobservice -m 0750 /data
COPY --from=build /opt/armada-jobservice /opt/armada-jobservice
# The SQLite file lives here: the default database sqlite:///jobservice.db is
# relative to the working directory. Mount a volume (or use PostgreSQL).
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
# 60003: the gRPC API (jobservice.JobService, grpc.health.v1, reflection);
# 9090: Prometheus /metrics (turned on by the CMD below).
EXPOSE 60003 9090
# `armada-jobservice health` exits 0 only when the service answers SERVING,
# 1 when it answers anything else, 5 when it cannot be asked (docs/cli.md);
# Docker reserves exit codes other than 0 and 1, hence `|| exit 1`. It speaks
# plain text: with grpc_tls_cert_file set, override this check (see
# docs/deployment.md). Kubernetes ignores it and uses its own grpc probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/bin/sh", "-c", "armada-jobservice health --target 127.0.0.1:${ARMADA_JOBSERVICE_GRPC_PORT:-60003} --call-timeout 3 || exit 1"]
ENTRYPOINT ["armada-jobservice"]
# Flags beat ARMADA_JOBSERVICE_* variables and --config files: the CMD sets
# only the metrics port, so every other setting can come from the environment.
# The Kubernetes manifests replace the CMD (deploy/kubernetes/).
CMD ["serve", "--metrics-port", "9090"]
