"""The job service itself: settings, cache, event streams, writer, store and gRPC API.

``JobServiceApp`` wires the parts; ``Settings`` configures it. Everything else
in this package is internal to the service.
"""

from __future__ import annotations

from armada_jobservice.server.app import JobServiceApp
from armada_jobservice.server.config import Settings

__all__ = ["JobServiceApp", "Settings"]
