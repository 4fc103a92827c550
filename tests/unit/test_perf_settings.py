"""The settings issue 14 added: API processes, caches, poll limit, polling intervals, and the
CPU threads a worker uses by default."""

from __future__ import annotations

import os

import pytest

from core.errors import ConfigError
from core.queues import broker_options
from core.settings import load_settings, usable_cores


def test_defaults_follow_the_cores_this_process_may_use() -> None:
    cores = len(os.sched_getaffinity(0))
    assert usable_cores() == cores
    s = load_settings({})
    assert s.api.workers == min(cores, 4)
    assert load_settings({"STT_API_WORKERS": "auto"}).api.workers == min(cores, 4)
    assert load_settings({"STT_API_WORKERS": "0"}).api.workers == 1
    assert s.api.shutdown_grace_s == 30
    assert s.engine.cpu_threads == cores
    assert load_settings({"STT_WORKER_CONCURRENCY": str(cores * 2)}).engine.cpu_threads == 1
    assert load_settings({"STT_CPU_THREADS": "3"}).engine.cpu_threads == 3
    assert (s.api.key_cache_s, s.api.job_cache_s, s.limits.poll_limit_per_minute) == (5.0, 5.0, 120)


def test_perf_settings_are_read() -> None:
    s = load_settings(
        {
            "STT_API_WORKERS": "3",
            "STT_KEY_CACHE_S": "0",
            "STT_JOB_CACHE_S": "1.5",
            "STT_POLL_LIMIT_PER_MINUTE": "0",
            "STT_WAITER_POLL_S": "0.2",
            "STT_BROKER_POLL_S": "0.1",
        }
    )
    assert (
        s.api.workers,
        s.api.key_cache_s,
        s.api.job_cache_s,
        s.limits.poll_limit_per_minute,
    ) == (3, 0, 1.5, 0)
    assert (s.broker.waiter_poll_s, s.broker.poll_s) == (0.2, 0.1)
    assert broker_options(s)["polling_interval"] == 0.1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STT_API_WORKERS", "-1"),
        ("STT_API_WORKERS", "many"),
        ("STT_SHUTDOWN_GRACE_S", "-1"),
        ("STT_KEY_CACHE_S", "soon"),
        ("STT_WAITER_POLL_S", "0"),
        ("STT_BROKER_POLL_S", "-0.5"),
        ("STT_POLL_LIMIT_PER_MINUTE", "-3"),
    ],
)
def test_bad_perf_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})
