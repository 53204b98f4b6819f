"""One latency method for every Session: warm-up by time and count, timed by duration and count."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from edgeres.backends import Session
from edgeres.config import LatencyConfig
from edgeres.errors import ConfigError


@dataclass(frozen=True)
class LatencyStats:
    batch: int
    input_shape: list[int]
    iterations: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float  # images per second: batch / mean latency
    copies_timed: bool
    device: str
    quantiles_ms: list[float]  # every 5th percentile, 0..100: the distribution, for plots and comparisons
    window_p50_ms: list[float]  # p50 of each timing window (one per round), in the order they ran
    noise_pct: float | None  # host noise: how far the windows' p50s spread, 100 × (max / min − 1); None for one window

    def to_dict(self) -> dict:
        return asdict(self)


def stats_from_times(windows_s: list[np.ndarray], batch: int, shape: list[int], copies: bool,
                     device: str) -> LatencyStats:
    """Statistics of the pooled samples of one or more timing windows (seconds per call)."""
    ms = np.concatenate([np.asarray(w, dtype=np.float64) for w in windows_s]) * 1e3
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    mean = float(ms.mean())
    q = [float(v) for v in np.percentile(ms, np.arange(0, 101, 5))]
    win = [float(np.median(w) * 1e3) for w in windows_s]
    noise = 100 * (max(win) / min(win) - 1) if len(win) > 1 else None
    return LatencyStats(batch, shape, int(ms.size), float(p50), float(p90), float(p95), float(p99), mean,
                        float(ms.std()), float(ms.min()), float(ms.max()), batch / (mean / 1e3), copies, device, q,
                        win, noise)


def timed_runs(session: Session, x: np.ndarray, cfg: LatencyConfig) -> np.ndarray:
    """Per-iteration wall times (seconds) of ``session.infer(x)``, after warm-up."""
    cfg.validate()
    infer = session.infer
    clock = time.perf_counter
    end = clock() + cfg.warmup_s
    n = 0
    while n < cfg.warmup_iters or clock() < end:
        infer(x)
        n += 1
    times: list[float] = []
    append = times.append
    start = clock()
    stop = start + cfg.duration_s
    while True:
        t0 = clock()
        infer(x)
        t1 = clock()
        append(t1 - t0)
        if t1 >= stop and len(times) >= cfg.min_iters:
            break
    return np.asarray(times)


def fill_batch(sample: np.ndarray, batch: int) -> np.ndarray:
    """``batch`` rows made by repeating ``sample`` (a model is timed on a full batch even from few images)."""
    return _fill(sample, batch)


def _fill(sample: np.ndarray, batch: int) -> np.ndarray:
    if batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}")
    reps = -(-batch // len(sample))
    return np.ascontiguousarray(np.concatenate([sample] * reps)[:batch])


def measure_latency(session: Session, sample: np.ndarray, batch: int, cfg: LatencyConfig) -> LatencyStats:
    """Latency of ``session`` at ``batch`` images per call (``sample`` is repeated to fill the batch)."""
    x = _fill(sample, batch)
    t = timed_runs(session, x, cfg)
    return stats_from_times([t], batch, list(x.shape), session.copies_timed, session.device)


def compare_latency(sessions: dict[str, Session], sample: np.ndarray, batch: int, cfg: LatencyConfig,
                    after: Callable[[str], None] | None = None) -> dict[str, LatencyStats]:
    """Latency of several sessions, timed in ``cfg.rounds`` alternating windows (A B C, C B A, …) whose
    samples are pooled: each still gets ``duration_s`` in all, and host drift falls evenly on every one.
    ``after(name)`` is called after each window, outside the timing (the thermal watch's reading).
    """
    x = _fill(sample, batch)
    per = replace(cfg, warmup_s=cfg.warmup_s / cfg.rounds, duration_s=cfg.duration_s / cfg.rounds,
                  min_iters=-(-cfg.min_iters // cfg.rounds))
    names = list(sessions)
    times: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for r in range(cfg.rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            times[k].append(timed_runs(sessions[k], x, per))
            if after is not None:
                after(k)
    return {k: stats_from_times(times[k], batch, list(x.shape), sessions[k].copies_timed,
                                sessions[k].device) for k in names}
