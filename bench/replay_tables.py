"""The replay benchmark's variants, targets and tables (printed and written to the docs)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bench import report
from bench.harness import Comparison

if TYPE_CHECKING:
    from bench.replay import Options
    from bench.replay_items import Payload

HTTP_FLOOR, MEMORY, REDIS, REDIS_FLOOR = "HTTP floor", "memory", "redis", "Redis floor"
TARGET_VS_HTTP_FLOOR = 0.70  # memory backend / HTTP floor, items/s
TARGET_REDIS_VS_MEMORY = 0.60  # Redis backend / memory backend, items/s
TARGET_VS_REDIS_FLOOR = 0.50  # Redis backend / Redis floor, MB/s, 64 KB items
TARGET_BYTES_MEMORY = 1.3  # stored bytes / raw payload bytes
TARGET_BYTES_REDIS = 2.0

METHOD = """\
Each scenario runs its variants in short rounds, interleaved in rotating order after one warm-up
round each; a rate is the median over rounds, a ratio the median of the per-round ratios. Load comes
from one process (uvloop) through `shared.clients.ReplayClient` (columnar insert, sample) on an
aiohttp session; each client has its own connection. MB/s counts item payload bytes (1 MB =
10^6 B). The servers are real processes: `python -m services.replay` (memory; Redis on a private
`redis-server`), and the HTTP floor `python -m bench.floors`, the same FastAPI + uvicorn stack served
the same way, whose routes read the request body (the very bytes `ReplayClient` sends) and answer
with pre-built bytes of the size of the replay's answer. The Redis floor is redis-py (hiredis)
moving the same payloads, one key per item and one command per batch: MSET (insert; a pipeline of
SETs is 8x slower for CartPole items) and MGET of random keys (sample).
Insert tables: FIFO, `max_size` 100000 (CartPole) / 512 (64 KB); sample tables: uniform, pre-filled,
`min_size` rate limiter; every table and the Redis floor's keys are filled before the rounds, so inserts
measure the steady state (each evicts as many items). "Serial floor": both floors in series, 1 / (1/HTTP floor + 1/Redis
floor), per round; what a Redis-backed service that first receives a request, then moves its bytes
to Redis, could reach without overlapping the two. Bytes per item: a table of N CartPole transitions (44 payload bytes each),
filled; Redis `used_memory` and replay process RSS before the table was created and after. CPU per
request: user + system time of each process over the timed rounds (from /proc), divided by the
requests; it is less sensitive to other load on the machine than the rates. For where a request's
CPU time goes stage by stage (client, decode, table and store, Lua, encode, framework), run
`python -m bench.replay_stages`."""


def _rate(comparison: Comparison, variant: str, item_bytes: int) -> str:
    if variant not in comparison.rates:
        return "n/a"
    items = comparison.median(variant)
    mb = items * item_bytes / 1e6
    return (
        f"{report.si(items)} ({mb:.0f} MB/s)"
        if mb >= 100
        else f"{report.si(items)} ({mb:.3g} MB/s)"
    )


def _cpu(comparison: Comparison, variant: str, batch: int) -> str:
    if variant not in comparison.rates:
        return "n/a"
    client, servers = comparison.cpu_per_item(variant)
    return f"{client * batch * 1e3:.2f} / " + " + ".join(f"{s * batch * 1e3:.2f}" for s in servers)


def _ratio(comparison: Comparison, a: str, b: str, threshold: float | None) -> str:
    if a not in comparison.rates or b not in comparison.rates:
        return "n/a"
    value = comparison.ratio(a, b)
    return f"{value:.2f}" if threshold is None else report.verdict(value, threshold)


def _serial_ratio(comparison: Comparison) -> str:
    """Redis backend against the two floors in series: 1 / (1/HTTP floor + 1/Redis floor)."""
    rates = comparison.rates
    if not {REDIS, HTTP_FLOOR, REDIS_FLOOR} <= set(rates):
        return "n/a"
    series = zip(rates[REDIS], rates[HTTP_FLOOR], rates[REDIS_FLOOR], strict=True)
    return f"{statistics.median(r * (1 / h + 1 / f) for r, h, f in series):.2f}"


def build_sections(
    payloads: Sequence[Payload],
    results: Mapping[tuple[str, str, int], Comparison],
    memory: Mapping[str, float],
    transport: Mapping[int, Comparison],
    options: Options,
) -> list[report.Section]:
    rates = report.Section(
        "Throughput: median items/s (payload MB/s)",
        ["scenario", HTTP_FLOOR, "memory", REDIS_FLOOR, "Redis"],
    )
    targets = report.Section(
        "Targets: ratio of rates measured in the same rounds (median of per-round ratios)",
        [
            "scenario",
            f"memory / HTTP floor ≥ {TARGET_VS_HTTP_FLOOR}",
            f"Redis / memory ≥ {TARGET_REDIS_VS_MEMORY}",
            f"Redis / Redis floor ≥ {TARGET_VS_REDIS_FLOOR} (64 KB)",
            "HTTP floor / Redis floor",
            "Redis / serial floor",
        ],
    )
    cpu = report.Section(
        "CPU per request, ms: load generator / server (Redis: replay + redis-server)",
        ["scenario", HTTP_FLOOR, "memory", REDIS_FLOOR, "Redis"],
    )
    for (key, direction, clients), c in results.items():
        p = next(p for p in payloads if p.key == key)
        scenario = f"{direction} {p.label}, {clients} client{'s' if clients > 1 else ''}"
        cpu.rows.append(
            [scenario, *(_cpu(c, v, p.batch) for v in (HTTP_FLOOR, MEMORY, REDIS_FLOOR, REDIS))]
        )
        rates.rows.append(
            [
                scenario,
                *(_rate(c, v, p.item_bytes) for v in (HTTP_FLOOR, MEMORY, REDIS_FLOOR, REDIS)),
            ]
        )
        big = p.item_bytes >= 65536
        targets.rows.append(
            [
                scenario,
                _ratio(c, MEMORY, HTTP_FLOOR, TARGET_VS_HTTP_FLOOR),
                _ratio(c, REDIS, MEMORY, TARGET_REDIS_VS_MEMORY),
                _ratio(c, REDIS, REDIS_FLOOR, TARGET_VS_REDIS_FLOOR if big else None),
                _ratio(c, HTTP_FLOOR, REDIS_FLOOR, None),
                _serial_ratio(c),
            ]
        )
    raw = next(p for p in payloads if p.key == "cartpole").item_bytes
    stored = report.Section(
        f"Bytes per stored CartPole transition ({options.memory_items} items, {raw} payload bytes each)",
        ["backend", "measured as", "bytes / item", "stored / payload (target)"],
    )
    for backend, what, target in (
        (MEMORY, "replay process RSS delta", TARGET_BYTES_MEMORY),
        (REDIS, "Redis INFO used_memory delta", TARGET_BYTES_REDIS),
    ):
        if backend in memory:
            stored.rows.append(
                [
                    backend,
                    what,
                    f"{memory[backend]:.1f}",
                    f"≤ {target}: " + report.verdict(memory[backend] / raw, target, at_most=True),
                ]
            )
    transports = report.Section(
        "Client transport: small POST to the HTTP floor's /echo (median requests/s)",
        ["clients", "httpx", "aiohttp (make_http_client)", "aiohttp / httpx"],
    )
    for clients, c in transport.items():
        transports.rows.append(
            [
                str(clients),
                f"{report.si(c.median('httpx'))}/s",
                f"{report.si(c.median('aiohttp'))}/s",
                f"{c.ratio('aiohttp', 'httpx'):.2f}",
            ]
        )
    return [rates, targets, cpu, *([stored] if memory else []), transports]


def transport_verdict(transport: Mapping[int, Comparison]) -> str:
    ratios = [c.ratio("aiohttp", "httpx") for c in transport.values()]
    if all(r > 1.0 for r in ratios):
        return (
            "aiohttp is faster at every concurrency measured: the typed clients stay on"
            " `shared.clients.make_http_client`'s aiohttp session."
        )
    if all(r < 1.0 for r in ratios):
        return (
            "httpx is faster at every concurrency measured: the typed clients should move back"
            " to it."
        )
    return "Neither client wins at every concurrency measured; see the ratios."


def docs_body(
    sections: list[report.Section], options: Options, transport: Mapping[int, Comparison]
) -> str:
    return "\n".join(
        [
            "## Replay\n",
            f"`{options.command}` (`make bench`), {report.now()}.",
            f"Machine: {options.machine}.",
            f"{options.rounds} rounds of {options.duration_s} s per variant and scenario.\n",
            METHOD + "\n",
            report.markdown(sections),
            transport_verdict(transport) + "\n",
        ]
    )
