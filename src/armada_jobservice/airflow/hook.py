"""Where Armada and the job service are, from an Airflow connection or operator arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from armada_jobservice._channel import channel_credentials
from armada_jobservice._wire import DEFAULT_PORT
from armada_jobservice.airflow._compat import AirflowException, AirflowNotFoundException, BaseHook

DEFAULT_CONN_ID = "armada_jobservice_default"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The two gRPC addresses an operator talks to, and how it authenticates."""

    armada_url: str
    """Armada's gRPC API, ``host:port``: where jobs are submitted and cancelled."""
    jobservice_url: str
    """The job service, ``host:port``: where jobs are followed."""
    tls: bool = False
    """Whether both channels use TLS (system CAs)."""
    token: str | None = None
    """A bearer token sent to both, or ``None``."""

    def call_credentials(self) -> grpc.CallCredentials | None:
        """The token as gRPC call credentials, or ``None`` without a token."""
        return grpc.access_token_call_credentials(self.token) if self.token else None

    def armada_channel(self) -> grpc.Channel:
        """Open a blocking channel to Armada (no retry policy: submitting is not idempotent)."""
        creds = channel_credentials(self.tls, self.call_credentials())
        if creds is None:
            return grpc.insecure_channel(self.armada_url)
        return grpc.secure_channel(self.armada_url, creds)


class ArmadaJobServiceHook(BaseHook):  # type: ignore[misc]
    """Read an ``armada_jobservice`` connection; operator arguments override its fields.

    Connection fields: host and port are the job service; ``extra`` holds
    ``{"armada_url": "host:port", "tls": false}``; the password, if set, is a
    bearer token sent to both services.
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "armada_jobservice"
    hook_name = "Armada job service"

    def __init__(
        self,
        conn_id: str | None = DEFAULT_CONN_ID,
        *,
        armada_url: str | None = None,
        jobservice_url: str | None = None,
        tls: bool | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.armada_url = armada_url
        self.jobservice_url = jobservice_url
        self.tls = tls

    def endpoints(self, required: tuple[str, ...] = ("armada_url", "jobservice_url")) -> Endpoints:
        """Resolve the addresses: arguments first, then the connection (read only if needed).

        Raises when an address named in ``required`` is found nowhere; the others
        may then be empty (an operator handed a ready client needs no address).
        """
        fields: dict[str, Any] = {"armada_url": "", "jobservice_url": ""}
        needed = any(getattr(self, n) is None for n in required)
        conn = None
        if self.conn_id and (self.armada_url is None or self.jobservice_url is None):
            # Read even when only the other address is missing: its token and
            # TLS setting apply to both services.
            try:
                conn = self.get_connection(self.conn_id)
            except AirflowNotFoundException:
                if needed:
                    raise
        if conn is not None:
            extra = conn.extra_dejson
            if conn.host:
                fields["jobservice_url"] = f"{conn.host}:{conn.port or DEFAULT_PORT}"
            fields["armada_url"] = extra.get("armada_url") or ""
            fields["tls"] = bool(extra.get("tls", False))
            fields["token"] = conn.password or None
        for name in ("armada_url", "jobservice_url", "tls"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        missing = [n for n in required if not fields.get(n)]
        if missing:
            raise AirflowException(
                f"no {' or '.join(missing)}: set it on the operator or in connection "
                f"{self.conn_id!r}"
            )
        return Endpoints(**fields)
