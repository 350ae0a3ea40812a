"""The simulator of a chaos run, telling the checker about every event stream it serves.

Streams are judged as they open and close (reopened from the start after a
flush, two at once for one job set), from inside the simulator's own
bookkeeping, so the open and close times are exact and nothing is sampled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from armada_client.armada import event_pb2

from armada_jobservice.chaos.truth import Checker
from armada_jobservice.sim import ArmadaSimulator, StreamHandle
from armada_jobservice.sim.eventlog import JobSetLog


class RecordingSimulator(ArmadaSimulator):
    """An ``ArmadaSimulator`` on 127.0.0.1 whose streams the checker judges."""

    def __init__(self, checker: Checker, now_s: Callable[[], float], **kwargs: Any) -> None:
        """Serve on a free port; *now_s* stamps what the checker finds."""
        super().__init__("127.0.0.1", 0, **kwargs)
        self.checker = checker
        self.now_s = now_s
        self.streams_opened = 0

    def open_stream(self, request: event_pb2.JobSetRequest, log: JobSetLog) -> StreamHandle:
        """Register the stream and have it judged."""
        self.streams_opened += 1
        self.checker.stream_opened(
            (request.queue, request.id), request.from_message_id, self.now_s()
        )
        return super().open_stream(request, log)

    def close_stream(self, handle: StreamHandle) -> None:
        """Forget the stream, for the checker too."""
        if handle in self._streams:
            self.checker.stream_closed((handle.request.queue, handle.request.id))
        super().close_stream(handle)
