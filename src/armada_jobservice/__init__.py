"""armada-jobservice: answer job-status polls for Armada jobs from a cache fed by event streams."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
