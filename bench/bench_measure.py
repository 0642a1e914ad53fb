"""Measurement for the benchmark: wall time, peak memory and UNet calls/rows of one phase."""
import gc
import threading
import time

import psutil
import torch

PROC = psutil.Process()
ROWS = []          # every recorded phase: (section, name, values dict)


def rss():
    return PROC.memory_info().rss


def free(device="cpu"):
    """Collect garbage and hand freed heap back to the OS, so the next phase starts from its weights."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class Meter:
    """Wall time, peak RSS (sampled every 5 ms) or CUDA peak, and UNet calls/rows (forward pre-hooks)
    of the code inside `with`. `act` = peak minus the memory before the phase (above the weights)."""

    def __init__(self, unet_modules, device="cpu"):
        self.unets = unet_modules
        self.device = device
        self.calls = self.rows = 0

    def _hook(self, module, args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()))
        self.calls += 1
        self.rows += int(x.shape[0])

    def __enter__(self):
        free(self.device)
        self.handles = [u.register_forward_pre_hook(self._hook, with_kwargs=True) for u in self.unets]
        self.start_rss = self.peak = rss()
        self.stop = False
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start_cuda = torch.cuda.memory_allocated()

        def sample():
            while not self.stop:
                self.peak = max(self.peak, rss())
                time.sleep(0.005)
        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, rss())
        for h in self.handles:
            h.remove()
        if self.device == "cuda":
            self.peak_mem = torch.cuda.max_memory_allocated()
            self.act = self.peak_mem - self.start_cuda
        else:
            self.peak_mem = self.peak
            self.act = self.peak - self.start_rss
        return False

    def values(self):
        return {"s": self.seconds, "peak_gib": self.peak_mem / 2**30, "act_gib": self.act / 2**30,
                "calls": self.calls, "rows": self.rows}


def record(section, name, meter, **extra):
    """Keep one phase's numbers in ROWS and print them as they come."""
    values = dict(meter.values(), **extra)
    ROWS.append((section, name, values))
    print(f"  [{section}] {name}: {values['s']:.2f} s, peak {values['peak_gib']:.2f} GiB "
          f"(+{values['act_gib']:.2f}), UNet {values['calls']} calls / {values['rows']} rows", flush=True)
    return values
