"""``deploy/gunicorn.conf.py`` for benchmarks, plus a record of each web process's
garbage-collector pauses: every full (generation 2) collection, and every other one that
took 5 ms or more, one line per collection in ``$ISOTOPE_BENCH_GC_DIR/gc-<pid>.log``
(``bench/vm_create.py``'s ``gc_pauses`` reads them). Nothing else differs from the
deployed web tier."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

globals().update(
    {
        name: value
        for name, value in runpy.run_path(
            str(Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py")
        ).items()
        if not name.startswith("__")
    }
)


def post_worker_init(worker) -> None:
    import gc
    import time

    folder = os.environ.get("ISOTOPE_BENCH_GC_DIR")
    if not folder:
        return
    log = open(Path(folder) / f"gc-{worker.pid}.log", "w")  # noqa: SIM115 - the process's
    started = [0.0]

    def pause(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = (time.perf_counter() - started[0]) * 1000
        if info["generation"] == 2 or took >= 5:
            log.write(f"{info['generation']} {took:.2f}\n")
            log.flush()

    gc.callbacks.append(pause)
