"""Adders checked against values written out by hand and a per-env reference."""

from __future__ import annotations

import numpy as np
import pytest

from shared.adders import EpisodeAdder, NStepTransitionAdder, SequenceAdder

GAMMA = 0.9


class Requests(list):
    """The sink: every insert request an adder hands over."""

    def __call__(self, columns: dict[str, np.ndarray]) -> None:
        self.append(columns)

    def items(self) -> list[dict[str, np.ndarray]]:
        return [
            {k: v[i] for k, v in request.items()}
            for request in self
            for i in range(len(next(iter(request.values()))))
        ]


def obs(t: float, num_envs: int = 1) -> np.ndarray:
    """Observation t of every env: [t, env]."""
    return np.array([[t, b] for b in range(num_envs)], np.float32)


def run_episode(adder, rewards: list[float], *, terminated: bool) -> None:
    """One env: observations [t, 0] for t = 0..len(rewards), ending as told."""
    adder.add_first(obs(0))
    for t, r in enumerate(rewards):
        last = t == len(rewards) - 1
        adder.add(
            np.array([t]),
            np.array([r], np.float32),
            obs(t + 1),
            terminated=np.array([last and terminated]),
            truncated=np.array([last and not terminated]),
        )


def as_tuples(items):
    return sorted(
        (
            float(i["observation"][0]),
            float(i["observation"][1]),
            int(i["action"]),
            round(float(i["reward"]), 5),
            round(float(i["discount"]), 5),
            float(i["next_observation"][0]),
        )
        for i in items
    )


def test_n_step_termination_by_hand():
    sink = Requests()
    adder = NStepTransitionAdder(sink, num_envs=1, n_step=3, discount=GAMMA, batch_size=100)
    run_episode(adder, [1, 2, 3, 4, 5], terminated=True)
    adder.flush()
    assert as_tuples(sink.items()) == [
        (0, 0, 0, round(1 + 0.9 * 2 + 0.81 * 3, 5), round(0.729, 5), 3),
        (1, 0, 1, round(2 + 0.9 * 3 + 0.81 * 4, 5), round(0.729, 5), 4),
        (2, 0, 2, round(3 + 0.9 * 4 + 0.81 * 5, 5), 0.0, 5),
        (3, 0, 3, round(4 + 0.9 * 5, 5), 0.0, 5),
        (4, 0, 4, 5.0, 0.0, 5),
    ]


def test_n_step_truncation_bootstraps_from_the_final_observation():
    sink = Requests()
    adder = NStepTransitionAdder(sink, num_envs=1, n_step=3, discount=GAMMA, batch_size=100)
    run_episode(adder, [1, 2, 3, 4, 5], terminated=False)
    adder.flush()
    assert as_tuples(sink.items())[2:] == [
        (2, 0, 2, round(3 + 0.9 * 4 + 0.81 * 5, 5), round(0.729, 5), 5),
        (3, 0, 3, round(4 + 0.9 * 5, 5), round(0.81, 5), 5),
        (4, 0, 4, 5.0, round(0.9, 5), 5),
    ]


def test_n_step_longer_than_the_episode():
    sink = Requests()
    adder = NStepTransitionAdder(sink, num_envs=1, n_step=5, discount=GAMMA, batch_size=100)
    run_episode(adder, [1, 10], terminated=True)
    run_episode(adder, [3], terminated=False)
    adder.flush()
    assert as_tuples(sink.items()) == [
        (0, 0, 0, 3.0, 0.9, 1),
        (0, 0, 0, 1 + 0.9 * 10, 0.0, 2),
        (1, 0, 1, 10.0, 0.0, 2),
    ]


def test_one_step_transitions():
    sink = Requests()
    adder = NStepTransitionAdder(sink, num_envs=1, n_step=1, discount=GAMMA, batch_size=100)
    run_episode(adder, [1, 2], terminated=True)
    adder.flush()
    assert as_tuples(sink.items()) == [(0, 0, 0, 1.0, 0.9, 1), (1, 0, 1, 2.0, 0.0, 2)]


def reference_transitions(episode, n: int, gamma: float) -> list[tuple]:
    """Transitions of one finished episode, written the plain way."""
    observations, actions, rewards, terminated = episode
    steps = len(rewards)
    out = []
    for t in range(steps):
        m = min(n, steps - t)
        reward = sum(gamma**k * rewards[t + k] for k in range(m))
        discount = 0.0 if (terminated and t + m == steps) else gamma**m
        o, nxt = observations[t], observations[t + m]
        out.append(
            (
                float(o[0]),
                float(o[1]),
                actions[t],
                round(reward, 4),
                round(discount, 4),
                float(nxt[0]),
            )
        )
    return out


@pytest.mark.parametrize("n_step", [1, 2, 3, 7])
def test_vectorized_envs_ending_at_different_steps_match_the_reference(n_step):
    rng = np.random.default_rng(n_step)
    num_envs, num_steps = 4, 60
    sink = Requests()
    adder = NStepTransitionAdder(
        sink, num_envs=num_envs, n_step=n_step, discount=GAMMA, batch_size=7
    )
    clock = 0  # observation ids are unique: [clock, env]
    current = obs(clock, num_envs)
    adder.add_first(current)
    episodes = [([current[b]], [], [], None) for b in range(num_envs)]
    finished = []
    for _ in range(num_steps):
        clock += 1
        action = rng.integers(0, 5, num_envs, dtype=np.int32)  # as the policy gives them
        reward = rng.normal(size=num_envs).astype(np.float32)
        terminated = rng.random(num_envs) < 0.1
        truncated = ~terminated & (rng.random(num_envs) < 0.05)
        final = obs(clock, num_envs)
        adder.add(
            action,
            reward,
            final,
            terminated=terminated,
            truncated=truncated,
        )
        for b in range(num_envs):
            o, a, r, _ = episodes[b]
            o.append(final[b])
            a.append(int(action[b]))
            r.append(float(reward[b]))
            if terminated[b] or truncated[b]:
                finished.append((o, a, r, bool(terminated[b])))
        done = terminated | truncated
        if done.any():
            clock += 1
            reset = obs(clock, num_envs)
            adder.add_first(reset, envs=done)
            for b in np.flatnonzero(done):
                episodes[b] = ([reset[b]], [], [], None)
    adder.flush()
    expected = sorted(t for e in finished for t in reference_transitions(e, n_step, GAMMA))
    # Open episodes: only their complete n-step windows are written so far.
    for o, a, r, _ in episodes:
        for t in range(len(r) - n_step + 1):
            reward = sum(GAMMA**k * r[t + k] for k in range(n_step))
            expected.append(
                (
                    float(o[t][0]),
                    float(o[t][1]),
                    a[t],
                    round(reward, 4),
                    round(GAMMA**n_step, 4),
                    float(o[t + n_step][0]),
                )
            )
    got = as_tuples(sink.items())
    expected.sort()
    assert [(t[:3], t[5]) for t in got] == [(t[:3], t[5]) for t in expected]
    np.testing.assert_allclose([t[3:5] for t in got], [t[3:5] for t in expected], atol=1e-3)
    assert all(len(req["action"]) == 7 for req in sink[:-1])
    for request in sink:
        assert request["observation"].dtype == np.float32
        assert request["action"].dtype == np.int32
        assert request["reward"].dtype == np.float32 and request["reward"].shape[1:] == ()
        assert request["discount"].dtype == np.float32


def test_batches_and_flush():
    sink = Requests()
    adder = NStepTransitionAdder(sink, num_envs=2, n_step=1, discount=GAMMA, batch_size=3)
    adder.add_first(obs(0, 2))
    for t in range(4):
        adder.add(
            np.zeros(2),
            np.ones(2),
            obs(t + 1, 2),
            terminated=np.zeros(2, bool),
            truncated=np.zeros(2, bool),
        )
    assert [len(r["action"]) for r in sink] == [3, 3]
    assert adder.pending == 2
    adder.flush()
    assert [len(r["action"]) for r in sink] == [3, 3, 2]
    assert adder.pending == 0


def test_add_before_add_first_is_an_error():
    adder = NStepTransitionAdder(Requests(), num_envs=2, n_step=3, discount=GAMMA, batch_size=4)
    with pytest.raises(RuntimeError, match="add_first"):
        adder.add(
            np.zeros(2),
            np.ones(2),
            obs(1, 2),
            terminated=np.zeros(2, bool),
            truncated=np.zeros(2, bool),
        )


def step_ids(item) -> list[float]:
    """The observation clock of each real step of a sequence item; -1 for padding."""
    return [
        float(o[0]) if m else -1.0 for o, m in zip(item["observation"], item["mask"], strict=True)
    ]


@pytest.mark.parametrize(
    ("actions", "length", "period", "end", "expected"),
    [
        # 5 steps (0..4, 4 final): sequences at 0 and 2 cover everything.
        (4, 3, 2, "pad", [[0, 1, 2], [2, 3, 4]]),
        # 6 steps: 0-2, 2-4, then 4-5 padded.
        (5, 3, 2, "pad", [[0, 1, 2], [2, 3, 4], [4, 5, -1]]),
        (5, 3, 2, "drop", [[0, 1, 2], [2, 3, 4]]),
        # shorter than one sequence
        (1, 4, 1, "pad", [[0, 1, -1, -1]]),
        (1, 4, 1, "drop", []),
        # no overlap
        (5, 2, 2, "pad", [[0, 1], [2, 3], [4, 5]]),
        # period > length leaves gaps
        (6, 2, 3, "drop", [[0, 1], [3, 4]]),
        (7, 2, 3, "pad", [[0, 1], [3, 4], [6, 7]]),
        # overlap by 3
        (4, 4, 1, "pad", [[0, 1, 2, 3], [1, 2, 3, 4]]),
    ],
)
def test_sequences(actions, length, period, end, expected):
    sink = Requests()
    adder = SequenceAdder(
        sink, num_envs=1, sequence_length=length, period=period, batch_size=1, end_of_episode=end
    )
    run_episode(adder, [float(t) for t in range(actions)], terminated=True)
    items = sink.items()
    assert [step_ids(i) for i in items] == expected
    for item in items:
        real = item["mask"]
        ids = item["observation"][:, 0]
        # reward of step t is t; the final step and the padding hold zeros
        np.testing.assert_array_equal(
            item["reward"][real], np.where(ids[real] < actions, ids[real], 0)
        )
        assert item["start_of_episode"][0] == (ids[0] == 0)
        assert not item["start_of_episode"][1:].any()
        assert item["observation"].shape == (length, 2)


def test_sequences_of_vectorized_envs_keep_episodes_apart():
    sink = Requests()
    adder = SequenceAdder(sink, num_envs=2, sequence_length=2, period=2, batch_size=1)
    adder.add_first(obs(0, 2))
    # env 1 truncates after one action, env 0 keeps going
    adder.add(
        np.zeros(2),
        np.ones(2),
        obs(1, 2),
        terminated=np.array([False, False]),
        truncated=np.array([False, True]),
    )
    adder.add_first(obs(10, 2), envs=np.array([False, True]))
    adder.add(
        np.zeros(2),
        np.ones(2),
        obs(2, 2),
        terminated=np.array([False, False]),
        truncated=np.array([False, False]),
    )
    got = sorted((float(i["observation"][0][1]), step_ids(i)) for i in sink.items())
    assert got == [(0.0, [0.0, 1.0]), (1.0, [0.0, 1.0])]
    assert [bool(i["discount"][0]) for i in sink.items()] == [True, True]


def test_episode_adder_pads_whole_episodes():
    sink = Requests()
    adder = EpisodeAdder(sink, num_envs=1, max_length=6, batch_size=2)
    run_episode(adder, [1.0, 2.0, 3.0], terminated=True)
    run_episode(adder, [4.0], terminated=False)
    (first, second) = sink.items()
    assert step_ids(first) == [0, 1, 2, 3, -1, -1]
    np.testing.assert_array_equal(first["reward"], [1, 2, 3, 0, 0, 0])
    np.testing.assert_array_equal(first["discount"], [1, 1, 0, 0, 0, 0])
    assert step_ids(second) == [0, 1, -1, -1, -1, -1]
    np.testing.assert_array_equal(second["discount"][:1], [1])


def test_episode_longer_than_max_length_is_an_error():
    adder = EpisodeAdder(Requests(), num_envs=1, max_length=3, batch_size=1)
    with pytest.raises(ValueError, match="max_length"):
        run_episode(adder, [1.0, 2.0, 3.0], terminated=True)


def test_float64_observations_become_float32_items_and_actions_keep_the_policys_dtype():
    sink = Requests()
    adder = NStepTransitionAdder(sink, num_envs=2, n_step=2, discount=GAMMA, batch_size=2)
    adder.add_first(obs(0, 2).astype(np.float64))
    for t in range(3):
        adder.add(
            np.ones(2, np.int64),
            np.ones(2, np.float64),
            obs(t + 1, 2).astype(np.float64),
            terminated=np.array([False, t == 2]),
            truncated=np.zeros(2, bool),
        )
    for request in sink:
        assert {k: v.dtype for k, v in request.items()} == {
            "observation": np.float32,
            "action": np.int64,
            "reward": np.float32,
            "discount": np.float32,
            "next_observation": np.float32,
        }


def test_no_item_waits_longer_than_max_delay():
    """A request goes out once the oldest recorded step is max_delay_s old, however small."""
    now = [0.0]
    sink = Requests()
    adder = NStepTransitionAdder(
        sink,
        num_envs=2,
        n_step=1,
        discount=GAMMA,
        batch_size=1000,
        max_delay_s=0.01,
        clock=lambda: now[0],
    )
    adder.add_first(obs(0, 2))
    still = dict(terminated=np.zeros(2, bool), truncated=np.zeros(2, bool))
    for t in range(3):  # within 10 ms: nothing sent yet
        now[0] = t * 0.004
        adder.add(np.zeros(2), np.ones(2), obs(t + 1, 2), **still)
    assert sink == [] and adder.pending == 6
    now[0] = 0.0105
    adder.add(np.zeros(2), np.ones(2), obs(4, 2), **still)
    assert [len(r["action"]) for r in sink] == [8] and adder.pending == 0
    now[0] = 0.015  # the clock starts again at the next step
    adder.add(np.zeros(2), np.ones(2), obs(5, 2), **still)
    assert len(sink) == 1 and adder.pending == 2


def test_extras_are_stored_with_the_step_that_chose_the_action():
    """An n-step item from step t carries the policy's extras of step t (e.g. a log-prob)."""
    sink = Requests()
    adder = NStepTransitionAdder(sink, num_envs=2, n_step=3, discount=GAMMA, batch_size=1000)
    adder.add_first(obs(0, 2))
    for t in range(5):
        adder.add(
            np.array([t, 10 + t], np.int32),
            np.ones(2, np.float32),
            obs(t + 1, 2),
            terminated=np.array([False, t == 4]),
            truncated=np.zeros(2, bool),
            extras={"log_prob": np.array([-t, -10 - t], np.float32), "h": np.full((2, 3), t)},
        )
    adder.flush()
    items = {k: np.concatenate([r[k] for r in sink]) for k in sink[0]}
    np.testing.assert_array_equal(items["log_prob"], -items["action"].astype(np.float32))
    assert items["h"].shape == (len(items["action"]), 3)
    np.testing.assert_array_equal(items["h"][:, 0], items["action"] % 10)


def test_sequences_carry_extras_and_continuous_actions():
    sink = Requests()
    adder = SequenceAdder(sink, num_envs=1, sequence_length=3, period=3, batch_size=10)
    adder.add_first(obs(0, 1))
    for t in range(3):
        adder.add(
            np.array([[0.5 * t, -0.5]], np.float32),  # (num_envs, 2): a Box action
            np.ones(1, np.float32),
            obs(t + 1, 1),
            terminated=np.zeros(1, bool),
            truncated=np.zeros(1, bool),
            extras={"log_prob": np.array([-float(t)], np.float32)},
        )
    adder.flush()
    (request,) = sink
    assert request["action"].shape == (1, 3, 2) and request["action"].dtype == np.float32
    np.testing.assert_array_equal(request["log_prob"][0], [0.0, -1.0, -2.0])


def test_no_linger_hands_every_step_over_at_once():
    """max_delay_s=0 (the in-process runner's clock) hands the completed items over every step."""
    sink = Requests()
    adder = NStepTransitionAdder(
        sink, num_envs=2, n_step=1, discount=GAMMA, batch_size=1024, max_delay_s=0.0,
        clock=lambda: 0.0,
    )  # fmt: skip
    adder.add_first(obs(0, 2))
    for t in range(3):
        adder.add(
            np.zeros(2, np.int32),
            np.ones(2, np.float32),
            obs(t + 1, 2),
            terminated=np.zeros(2, bool),
            truncated=np.zeros(2, bool),
        )
        assert len(sink) == t + 1 and len(sink[-1]["action"]) == 2
