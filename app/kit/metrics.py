"""Prometheus metrics exposed at ``/metrics`` (scope ``metrics:read``; README, "Operations").

Counters and histograms are updated where the events happen (the request middleware, checks,
the decision log, loads, the compiled index). Values that are a state rather than an event
(how old the index's compilations are, how old each provider's data is) are computed when
scraped: ``ScrapeTimeGauges`` asks its sources, and the data ages are read from the database
by the endpoint (``app.health.service.DataAges``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "mayhold_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)

# Buckets resolve the pre-trade range (sub-millisecond to tens of ms) as well as bulk calls.
HTTP_LATENCY = Histogram(
    "mayhold_http_request_duration_seconds",
    "Time from request received to response body sent, by route template and method.",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)

# -- checks ---------------------------------------------------------------------------------

# Labels are bounded: policy keys are the approved policies (a check naming an unknown one is a
# 404 before any decision), verdicts are four.
CHECKS = Counter(
    "mayhold_checks_total",
    "Decisions given by checks (each instrument of a batch, each issuer check), by policy "
    "key and verdict (allowed, watch, excluded, unknown); counted once logged.",
    ["policy", "verdict"],
    registry=REGISTRY,
)


def count_checks(decisions: Iterable[Mapping[str, Any]]) -> None:
    """Count logged decisions by policy and verdict (one increment per label pair: a batch of
    10,000 costs a dictionary pass, not 10,000 metric updates)."""
    tally: dict[tuple[str, str], int] = {}
    for decision in decisions:
        policy = decision.get("policy")
        # (dict first: the ABC check alone costs more than the rest of the loop.)
        key = policy.get("key") if isinstance(policy, (dict, Mapping)) else None
        pair = (str(key or "<none>"), str(decision.get("verdict") or "<none>"))
        tally[pair] = tally.get(pair, 0) + 1
    for pair, count in tally.items():
        counter = _CHECK_COUNTERS.get(pair)
        if counter is None:
            if len(_CHECK_COUNTERS) > 10_000:  # policies x verdicts are few; never unbounded
                _CHECK_COUNTERS.clear()
            counter = _CHECK_COUNTERS[pair] = CHECKS.labels(*pair)
        counter.inc(count)


# Each (policy, verdict) series once looked up: ``labels()`` with its lock and keyword
# matching is most of a single check's metric cost.
_CHECK_COUNTERS: dict[tuple[str, str], Any] = {}


# -- the decision log -----------------------------------------------------------------------

DECISION_APPEND_SECONDS = Histogram(
    "mayhold_decision_log_append_seconds",
    "Time a check waits for its decisions to be durable: queued behind the writer, then "
    "committed (group commit); the part of a check's latency the log adds.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
DECISION_QUEUE = Gauge(
    "mayhold_decision_log_queue_decisions",
    "Decisions waiting for the decision-log writer (not yet in a transaction). Growing: the "
    "database cannot keep up with the checks.",
    registry=REGISTRY,
)

DECISION_LOG_CHAIN_WAIT = Histogram(
    "mayhold_decision_log_chain_wait_seconds",
    "Time a decision-log batch waited for the chain lock (Postgres), i.e. for the appends of "
    "other processes (replicas) sharing the chain. Growing: the replicas queue behind the one "
    "chain.",
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    registry=REGISTRY,
)

DECISION_PARTITION_ROOM = Gauge(
    "mayhold_decision_partition_room_decisions",
    "Decisions the log's partitions ahead of the head can still take (Postgres), as of this "
    "process's last partition run: at 0 the writer fails closed (503) until the partition job "
    "runs. Alert well above a day's volume.",
    registry=REGISTRY,
)
DECISION_PARTITION_RUN = Gauge(
    "mayhold_decision_partition_last_success_timestamp_seconds",
    "When this process last kept decision partitions ahead successfully (Unix time, Postgres).",
    registry=REGISTRY,
)

# -- data loads -----------------------------------------------------------------------------

LOAD_SECONDS = Histogram(
    "mayhold_dataset_load_seconds",
    "Time to load one file (read, check, write; before the request's commit), by dataset kind "
    "and outcome (loaded, rejected).",
    ["kind", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
ROWS_REJECTED = Counter(
    "mayhold_dataset_rows_rejected_total",
    "Row errors of rejected loads (a rejected file loads nothing), by dataset kind; a file "
    "stops being read after 100 row errors, so its count is a lower bound.",
    ["kind"],
    registry=REGISTRY,
)

# -- the compiled index ---------------------------------------------------------------------

INDEX_BUILD_SECONDS = Histogram(
    "mayhold_index_build_seconds",
    "Time to compile one policy's verdicts for the whole universe (a rebuild follows every "
    "load, approval and midnight UTC), by policy key and account (own, client).",
    ["policy", "account"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)

# -- provider data ----------------------------------------------------------------------------

INDEX_BUILDS = Counter(
    "mayhold_index_builds_total",
    "Compilations of the verdict index, by policy key, account and mode: incremental (from "
    "the previous compilation, re-evaluating what a load touched) or full (the whole universe: "
    "the first, after an approval, at midnight UTC, or a load that cannot be bounded).",
    ["policy", "account", "mode"],
    registry=REGISTRY,
)

DATA_AGE_DAYS = Gauge(
    "mayhold_data_age_days",
    "Days from the as-of date of the oldest current dataset of a kind and provider to today "
    "(UTC): for per-portfolio, per-fund and per-policy data, the one whose newest load is the "
    "oldest. Read from the database when scraped. Alarm on it before rules' max_age_days make "
    "checks unknown.",
    ["kind", "provider"],
    registry=REGISTRY,
)


# -- values computed when scraped -------------------------------------------------------------

Sample = tuple[str, str, dict[str, str], float]  # name, help, labels, value


class ScrapeTimeSource(Protocol):
    def metric_samples(self) -> Iterable[Sample]: ...


class ScrapeTimeGauges(Collector):
    """Gauges whose value is a state read when scraped, from live objects (the compiled index).

    Sources are held weakly and their samples merged by name: a test process may hold several
    apps; a service holds one.
    """

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()

    def add(self, source: ScrapeTimeSource) -> None:
        self._sources.add(source)

    def discard(self, source: ScrapeTimeSource) -> None:
        self._sources.discard(source)

    def describe(self) -> Iterable[Any]:
        return []  # values (and label sets) are known only when collected

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for source in list(self._sources):
            for name, documentation, labels, value in source.metric_samples():
                family = families.get(name)
                if family is None:
                    family = families[name] = GaugeMetricFamily(
                        name, documentation, labels=sorted(labels)
                    )
                family.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()


SCRAPE_TIME = ScrapeTimeGauges()
REGISTRY.register(SCRAPE_TIME)
