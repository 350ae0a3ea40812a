"""How the service proves its identity to Armada: every non-interactive armadactl method.

- ``credentials``: the ``authorization`` header, from whichever method is set;
- ``rules``: which method the settings choose, and whether it can work;
- ``oidc``: the OpenID Connect flows (client credentials, password, kubernetes);
- ``exec``: a command that prints the token;
- ``refresher`` and ``schedule``: renewing a token in the background, and when.

``server/upstream.py`` owns the channel to Armada and uses ``Credentials``.
"""

from __future__ import annotations

from armada_jobservice.server.armada_auth.base import ArmadaAuthError, Token
from armada_jobservice.server.armada_auth.credentials import Credentials, Metadata
from armada_jobservice.server.armada_auth.schedule import RefreshPolicy, RefreshSchedule

__all__ = [
    "ArmadaAuthError",
    "Credentials",
    "Metadata",
    "RefreshPolicy",
    "RefreshSchedule",
    "Token",
]
