"""The gRPC API's TLS: the server's certificate and, for mutual TLS, the callers' CA bundle.

The certificate and key are read once at start. The client CA bundle
(``grpc_tls_client_ca_file``) is watched like the scope files: gRPC asks for
the TLS configuration at each new connection, and gets a new one when the
bundle changed (looked at most once a second), so a CA can be added or
retired without a restart. Connections already open keep the CA they were
checked against. A bundle that holds no certificate on a re-read is one
warning and the previous bundle stays.

gRPC's Python server can either demand a client certificate at the
handshake or not ask for one; it cannot ask and let a caller without one
through. So with a client CA every connection needs a certificate.
"""

from __future__ import annotations

import logging

import grpc

from armada_jobservice.server.config import Settings
from armada_jobservice.server.errors import ConfigError
from armada_jobservice.server.watched_file import WatchedFile

log = logging.getLogger(__name__)

RECHECK_S = 1.0
_PEM_CERT = "-----BEGIN CERTIFICATE-----"


def parse_ca_bundle(text: str) -> bytes:
    """A PEM bundle's bytes; ValueError when it holds no certificate."""
    if _PEM_CERT not in text:
        raise ValueError("no PEM certificate in it")
    return text.encode()


class ServerTls:
    """The server credentials of the gRPC API, and the client CA bundle they follow."""

    def __init__(self, settings: Settings) -> None:
        pair = []
        for name in ("grpc_tls_key_file", "grpc_tls_cert_file"):
            path = getattr(settings, name)
            try:
                with open(path, "rb") as fh:
                    pair.append(fh.read())
            except OSError as exc:
                raise ConfigError(name, f"cannot read {path}: {exc.strerror}") from exc
        self._pair = [(pair[0], pair[1])]
        self.client_ca: WatchedFile[bytes] | None = None
        if settings.grpc_tls_client_ca_file is not None:
            self.client_ca = WatchedFile(
                settings.grpc_tls_client_ca_file,
                parse_ca_bundle,
                setting="grpc_tls_client_ca_file",
                recheck_s=RECHECK_S,
            )
        self._served: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``add_secure_port``: plain TLS, or mutual TLS following the CA."""
        if self.client_ca is None:
            return grpc.ssl_server_credentials(self._pair)
        self._served = self.client_ca.get()
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._served),
            self._fetch,
            require_client_authentication=True,
        )

    def _configuration(self, ca: bytes) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(self._pair, root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC in its own thread at each handshake; None keeps the current one.
        assert self.client_ca is not None
        try:
            ca = self.client_ca.get()
            if ca is self._served:
                return None
            self._served = ca
            log.info("client CA bundle changed; new connections are checked against it")
            return self._configuration(ca)
        except Exception:  # an exception here would fail the handshake
            log.exception("cannot use the new client CA bundle; keeping the previous one")
            return None

    def refresh(self) -> None:
        """Look at the client CA bundle now rather than within ``RECHECK_S``."""
        if self.client_ca is not None:
            self.client_ca.refresh()
