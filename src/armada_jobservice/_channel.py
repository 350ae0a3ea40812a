"""Channels to the job service: the retry policy, credentials, and gRPC error translation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from armada_jobservice._exceptions import (
    CallTimeout,
    RPCError,
    ServiceOverloaded,
    ServiceUnavailable,
    TransportError,
)
from armada_jobservice._wire import DEFAULT_PORT

DEFAULT_TARGET = f"127.0.0.1:{DEFAULT_PORT}"
"""Where the job service listens unless told otherwise."""

SERVICE_NAME = "jobservice.JobService"

# gRPC caps maxAttempts at 5 whatever the config says; asking for exactly 5
# keeps the documented number and the effective one the same.
RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "10s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [{"name": [{"service": SERVICE_NAME}], "retryPolicy": RETRY_POLICY}]
}

ChannelOptions = Sequence[tuple[str, Any]]


def channel_options(extra: ChannelOptions = ()) -> list[tuple[str, Any]]:
    """Return the channel options that carry the retry policy, followed by *extra*."""
    # The service config is only read as JSON from this option; without
    # enable_retries some gRPC builds ignore the retryPolicy silently.
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        *extra,
    ]


def channel_credentials(
    tls: bool | grpc.ChannelCredentials, call_credentials: grpc.CallCredentials | None
) -> grpc.ChannelCredentials | None:
    """Combine the TLS choice and call credentials; ``None`` means a plaintext channel."""
    if isinstance(tls, grpc.ChannelCredentials):
        base: grpc.ChannelCredentials | None = tls
    elif tls:
        base = grpc.ssl_channel_credentials()
    else:
        base = None
    if call_credentials is None:
        return base
    if base is None:
        # gRPC refuses to send call credentials in plaintext; local credentials
        # allow it but only towards loopback peers, so a token never leaves the
        # machine unencrypted.
        base = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    return grpc.composite_channel_credentials(base, call_credentials)


def sync_channel(
    target: str,
    *,
    tls: bool | grpc.ChannelCredentials = False,
    call_credentials: grpc.CallCredentials | None = None,
    options: ChannelOptions = (),
) -> grpc.Channel:
    """Open a blocking channel to *target* with the retry policy."""
    creds = channel_credentials(tls, call_credentials)
    opts = channel_options(options)
    if creds is None:
        return grpc.insecure_channel(target, options=opts)
    return grpc.secure_channel(target, creds, options=opts)


def aio_channel(
    target: str,
    *,
    tls: bool | grpc.ChannelCredentials = False,
    call_credentials: grpc.CallCredentials | None = None,
    options: ChannelOptions = (),
) -> grpc.aio.Channel:
    """Open an asyncio channel to *target* with the retry policy."""
    creds = channel_credentials(tls, call_credentials)
    opts = channel_options(options)
    if creds is None:
        return grpc.aio.insecure_channel(target, options=opts)
    return grpc.aio.secure_channel(target, creds, options=opts)


def translate(exc: grpc.RpcError, what: str) -> TransportError:
    """Map a gRPC error to the client's exception for it (the caller raises it ``from exc``)."""
    code_obj = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or ""
    code = code_obj.name if isinstance(code_obj, grpc.StatusCode) else "UNKNOWN"
    message = f"{what}: {code}" + (f": {details}" if details else "")
    if code_obj == grpc.StatusCode.UNAVAILABLE:
        return ServiceUnavailable(message, code=code, details=details)
    if code_obj == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CallTimeout(message, code=code, details=details)
    if code_obj == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ServiceOverloaded(message, code=code, details=details)
    return RPCError(message, code=code, details=details)
