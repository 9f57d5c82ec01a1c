"""Shared benchmark helpers: median wall time and peak memory of a call, and a table."""

from __future__ import annotations

import os
import statistics
import threading
import time

import torch


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def high_water() -> int:
    """The kernel's peak-RSS mark (VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM")


def reset_high_water() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak extra memory during a block: the CUDA allocator's peak on a GPU; on CPU the growth
    of the process's peak RSS (memory the allocator already holds counts as free)."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = _rss()
        self._hwm = reset_high_water()
        self._stop = threading.Event()
        self._max = self.base

        def sample():
            while not self._stop.is_set():
                self._max = max(self._max, _rss())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, _rss(), high_water() if self._hwm else 0) - self.base


def measure(fn, device, repeats: int = 3, warmup: int = 1):
    """(median seconds, peak extra MiB) of ``fn()``."""
    for _ in range(warmup):
        fn()
    times, peaks = [], []
    for _ in range(repeats):
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            fn()
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        peaks.append(mem.peak / 2 ** 20)
    return statistics.median(times), max(peaks)


def table(rows, headers):
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


class Generated(torch.utils.data.Dataset):
    """Images in [-1, 1] made on the fly from their index: no memory grows with the dataset."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return torch.rand(3, self.size, self.size, generator=g) * 2 - 1
