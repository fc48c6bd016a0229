"""Measurement helpers shared by the benchmark scripts: peak resident memory while a block runs, a
timed call with its memory, and two timings taken side by side."""
import os
import resource
import threading
import time

import torch

PAGE = os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak RSS (MiB) while the ``with`` block runs, sampled from /proc/self/statm in a thread."""

    def __init__(self, interval=0.005):
        self.interval, self.peak, self.start = interval, 0.0, 0.0
        self._stop = threading.Event()

    @staticmethod
    def rss_mib():
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * PAGE / 2**20
        except OSError:                                   # not Linux: fall back to the process peak
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss_mib())
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.peak = self.rss_mib()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss_mib())


def timed(fn, *args, **kwargs):
    load_before = os.getloadavg()[0]
    with PeakRSS() as mem:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    info = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_rss_mib": round(mem.peak, 1),
            "peak_rss_increase_mib": round(mem.peak - mem.start, 1),
            "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    return out, info


def _alternate(f, g, repeats):
    """[(t_f, t_g), ...]: ``repeats`` pairs of runs of f then g, after a warm-up of each."""
    f(), g()
    pairs = []
    for _ in range(repeats):
        pair = []
        for fn in (f, g):
            t0 = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            pair.append(time.perf_counter() - t0)
        pairs.append(pair)
    return pairs


def timed_pair(f, g, repeats=3):
    """Fastest of ``repeats`` runs of f and of g, run alternately (f, g, f, g, ...) after a warm-up of
    each, so both see the same machine load."""
    pairs = _alternate(f, g, repeats)
    return [min(p[i] for p in pairs) for i in (0, 1)]


def paired_ratio(f, g, repeats=5):
    """(fastest f, fastest g, median of t_f / t_g over the pairs run back to back): each pair sees about
    the same machine, so the median of the pairs' ratios is steadier than the ratio of the two fastest
    runs on a machine shared with others."""
    pairs = _alternate(f, g, repeats)
    ratios = sorted(a / b for a, b in pairs)
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    return min(p[0] for p in pairs), min(p[1] for p in pairs), median
