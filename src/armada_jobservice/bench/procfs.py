"""What Linux's ``/proc`` tells about a process: CPU time and resident memory.

The one reading of ``/proc/<pid>/stat`` and ``/proc/<pid>/status`` for the
bench and the probes in ``scripts/probes/``. ``stat`` gives user + system
time of all the process's threads; ``status`` its resident set size.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by every thread of process *pid*."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parens; the fields after its last
    # closing paren are fixed: state is the first, utime the 12th, stime the 13th.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def rss_bytes(pid: int) -> int:
    """Resident memory of process *pid*, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"/proc/{pid}/status has no VmRSS line")
