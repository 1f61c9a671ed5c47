"""The journal of episode reports: what the learner acknowledged since its last checkpoint.

A ``POST /episodes`` that answered 200 must count after a ``kill -9`` of the learner, but the
counters are checkpointed only every ``CHECKPOINT_EVERY_S``. So each report is appended to
``CHECKPOINT_DIR/reports.journal`` and fsync'd *before* it is counted and answered; a checkpoint
records the sequence number of the last report it counts (``journal_seq`` in its counters), and a
restart counts again the journal's reports past it. bench.chaos found the loss: before the journal,
a learner killed 20 s after its checkpoint forgot every step the actors had reported meanwhile.

One JSON object per line: ``{"seq": n, "actor_id": ..., "steps": ..., "returns": [...],
"evaluation": bool}``. A line cut short by a crash was never acknowledged (the fsync had not
returned) and is dropped on reading. After each checkpoint the journal is rewritten with only the
reports that checkpoint does not count, so it holds at most a checkpoint interval of reports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.learner.counters import EpisodeCounters

log = logging.getLogger("rlfleet.learner")

JOURNAL_FILE = "reports.journal"


class ReportJournal:
    """Append-only, fsync'd lines in one file; blocking I/O (call it off the event loop)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / JOURNAL_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 (closed in close())

    def entries(self, *, after_seq: int) -> Iterator[dict[str, Any]]:
        """The journaled reports with ``seq > after_seq``, in order; a torn last line is skipped."""
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    entry = json.loads(line)
                    seq = int(entry["seq"])
                except (ValueError, KeyError, TypeError):
                    log.warning(
                        "%s line %d is incomplete (a crash mid-write): skipped", self.path, number
                    )
                    continue
                if seq > after_seq:
                    yield entry

    def append(self, entry: dict[str, Any]) -> None:
        """Writes one report and returns once it is on disk."""
        self._file.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def compact(self, *, upto_seq: int) -> None:
        """Drops the reports a checkpoint now counts (``seq <= upto_seq``), atomically."""
        keep = [json.dumps(e, separators=(",", ":")) for e in self.entries(after_seq=upto_seq)]
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write("".join(line + "\n" for line in keep).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._file.close()
        self._file = open(self.path, "ab")  # noqa: SIM115

    def close(self) -> None:
        self._file.close()


class Reports:
    """Counts actor reports into ``counters``; with a journal, each is on disk before it counts."""

    def __init__(self, counters: EpisodeCounters, journal: ReportJournal | None) -> None:
        self.counters = counters
        self.journal = journal
        self._lock = asyncio.Lock()  # one report at a time: the journal's order is the count's

    def recover(self) -> int:
        """Counts the journal's reports past the restored checkpoint; how many (blocking)."""
        if self.journal is None:
            return 0
        counted = self.counters.journal_seq
        for entry in self.journal.entries(after_seq=counted):
            self._count(entry)
        return self.counters.journal_seq - counted

    async def record(
        self, actor_id: str, steps: int, returns: list[float], *, evaluation: bool
    ) -> None:
        """Journals (fsync'd) and counts one report; the caller answers 200 after this."""
        async with self._lock:
            entry = {
                "seq": self.counters.journal_seq + 1,
                "actor_id": actor_id,
                "steps": steps,
                "returns": returns,
                "evaluation": evaluation,
            }
            if self.journal is not None:
                await asyncio.to_thread(self.journal.append, entry)
            self._count(entry)

    def _count(self, entry: dict[str, Any]) -> None:
        self.counters.report(
            entry["actor_id"], entry["steps"], entry["returns"], evaluation=entry["evaluation"]
        )
        self.counters.journal_seq = int(entry["seq"])

    async def compact(self, *, upto_seq: int) -> None:
        """Drops what a checkpoint written with ``journal_seq == upto_seq`` now counts."""
        if self.journal is not None:
            async with self._lock:
                await asyncio.to_thread(self.journal.compact, upto_seq=upto_seq)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
