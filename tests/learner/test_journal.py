"""Episode reports the learner answered 200 survive its kill -9 (the journal, found by bench.chaos).

Before the journal, the counters came back from the last checkpoint only: a learner killed
between two checkpoints forgot every step and episode the actors had reported meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from services.learner.counters import EpisodeCounters
from services.learner.journal import JOURNAL_FILE, ReportJournal, Reports
from services.learner.settings import LearnerSettings
from tests.learner.support import serve, unreachable_replay


def _reports(directory: Path, counters: EpisodeCounters | None = None) -> Reports:
    return Reports(counters or EpisodeCounters(), ReportJournal(directory))


def test_a_restart_counts_what_the_checkpoint_missed_once(tmp_path: Path) -> None:
    async def scenario() -> tuple[EpisodeCounters, EpisodeCounters]:
        reports = _reports(tmp_path)
        await reports.record("a", 100, [10.0], evaluation=False)
        checkpoint = reports.counters.copy()  # what a checkpoint would save now
        await reports.record("b", 50, [20.0, 30.0], evaluation=False)
        await reports.compact(upto_seq=checkpoint.journal_seq)
        await reports.record("e", 7, [500.0], evaluation=True)
        reports.close()
        return checkpoint.copy(), reports.counters

    restored, before_crash = asyncio.run(scenario())
    assert restored.actor_steps == 100
    recovered = _reports(tmp_path, restored)
    assert recovered.recover() == 2
    assert (recovered.counters.actor_steps, recovered.counters.episodes) == (150, 3)
    assert recovered.counters.eval_episodes == 1
    assert recovered.counters.save()["journal_seq"] == before_crash.journal_seq == 3
    assert list(recovered.counters.returns) == [10.0, 20.0, 30.0]
    # the compaction dropped the report the checkpoint counts: no line counts twice
    lines = (tmp_path / JOURNAL_FILE).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [2, 3]


def test_a_line_torn_by_a_crash_is_skipped(tmp_path: Path) -> None:
    reports = _reports(tmp_path)
    asyncio.run(reports.record("a", 5, [], evaluation=False))
    reports.close()
    with open(tmp_path / JOURNAL_FILE, "ab") as f:
        f.write(b'{"seq":2,"actor_id":"a","ste')  # never fsync'd, never acknowledged
    recovered = _reports(tmp_path)
    assert recovered.recover() == 1
    assert recovered.counters.actor_steps == 5


def _status(url: str) -> dict:
    return httpx.get(f"{url}/status", timeout=5).json()


def test_reports_acknowledged_before_a_crash_are_counted_after_it(tmp_path: Path) -> None:
    """A second learner on the same CHECKPOINT_DIR while the first still runs is what a restart
    after kill -9 sees: no final checkpoint, only what was on disk when the 200s were sent."""
    settings = LearnerSettings(
        replay_url=unreachable_replay(),  # nothing trains: only the counters matter here
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every_s=3600,  # no checkpoint between the reports and the "crash"
        agent_config={"batch_size": 8, "hidden_sizes": [8]},
    )
    with serve(settings) as (url, _):
        for i in range(5):
            body = {
                "actor_id": f"a{i % 2}",
                "steps": 1000,
                "episodes": [{"return": i, "length": 9}],
            }
            assert httpx.post(f"{url}/episodes", json=body, timeout=5).status_code == 200
        with serve(settings) as (restarted, _):
            status = _status(restarted)
    assert (status["actor_steps"], status["episodes"], status["return_mean_100"]) == (5000, 5, 2.0)
