"""Serve benchmark: page and API latencies of ``vec serve`` on a large store.

The store is the scale benchmark's (``bench/scale_bench.py``: synthetic ``--dim``-d vectors in parts of 62
CCDs, a trained calibrated model; no image files, so every thumbnail is the "no image" picture), plus one
``classify --all`` run so the survey has verdicts. ``vec serve`` runs as the user runs it, in its own
process (``python -m vecstore.cli --store S serve --port P``), and this process sends it HTTP requests over
127.0.0.1 with httpx, one at a time.

First the cold costs, each the first request after the server started: the survey's 2-D map (t-SNE of
``--map-sample`` CCDs, then kept under ``<store>/web-cache/``) and the review queue (every unlabelled exposure
classified live, as ``vec review`` does). Then ``--requests`` requests per page or API, each on another
target (another survey page or filter, another exposure, another CCD) so that per-exposure caches do not
answer: the median and 95th percentile of each. The label write is ``POST /api/labels`` (a store opened for
writing per call, as ``vec labels add`` does).

    python bench/serve_bench.py [--quick] [--ccds 100000] [--requests 20] [--dim 64]
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import PROJECT_ROOT, RESULTS_DIR, Report, Table, log, ms, timed  # noqa: E402
from bench.scale_bench import CCDS_PER_EXPOSURE, FIRST_EXPNUM, build_store, training_block  # noqa: E402
from query.classify import classify_all  # noqa: E402
from vecstore.models import Model  # noqa: E402
from vecstore.store import Store  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 CCDs, 5 requests each; seconds")
    parser.add_argument("--ccds", type=int, default=None, help="store size in CCDs (default 100,000)")
    parser.add_argument("--requests", type=int, default=None, help="requests per page (default 20)")
    parser.add_argument("--dim", type=int, default=64, help="vector dimension (default 64, stored float16)")
    parser.add_argument("--map-sample", type=int, default=None, help="CCDs in the map (default 1000)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON results go")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where the store is built (default: temp)"
    )
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``vec serve`` in a child process."""

    def __init__(self, store: Path, map_sample: int):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "vecstore.cli",
            "--store",
            str(store),
            "serve",
            "--port",
            str(self.port),
            "--map-sample",
            str(map_sample),
        ]
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def wait(self, client, timeout: float = 120.0) -> float:
        """Seconds from the start until it answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"vec serve exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if client.get(self.base + "/static/vec.css").status_code == 200:
                    return time.perf_counter() - self.started
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        raise SystemExit("vec serve did not answer within 2 minutes")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(
    client, base: str, paths: list[str], method: str = "GET", bodies: list | None = None
) -> list[float]:
    seconds = []
    for i, path in enumerate(paths):
        start = time.perf_counter()
        get = method == "GET"
        response = client.get(base + path) if get else client.post(base + path, json=bodies[i])
        seconds.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise SystemExit(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
    return seconds


def targets(n_exposures: int, count: int, seed: int = 1) -> list[tuple[int, str]]:
    """``count`` different (expnum, ccdname) spread over the store, unlabelled exposures first."""
    rng = np.random.default_rng(seed)
    first = min(training_block(n_exposures), n_exposures - 1)
    exposures = np.linspace(first, n_exposures - 1, count).astype(int)
    return [(FIRST_EXPNUM + int(e), f"S{int(rng.integers(1, 31))}") for e in exposures]


def main(argv: list[str] | None = None) -> None:
    import httpx

    args = parse(argv)
    n_ccds = args.ccds or (2_000 if args.quick else 100_000)
    n_requests = args.requests or (5 if args.quick else 20)
    map_sample = args.map_sample or (200 if args.quick else 1000)
    dim = 16 if args.quick and args.dim == 64 else args.dim
    report = Report(
        "serve_bench", args, {"ccds": n_ccds, "requests": n_requests, "dim": dim, "map_sample": map_sample}
    )
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        path = Path(tmp) / "store"
        log(f"building a store of {n_ccds:,} CCDs ({dim}-d), training")
        built = build_store(path, n_ccds, dim)
        log(f"  built in {built['build_s']:.0f} s, trained in {built['train_s']:.0f} s; classify --all")
        with Store.open(path, writable=True) as store:
            summary, all_s = timed(lambda: classify_all(store, Model.current(store), store.config.classify))
        log(f"  {summary.n_exposures:,} exposures classified in {all_s:.0f} s; starting vec serve")
        n_exposures = math.ceil(n_ccds / CCDS_PER_EXPOSURE)
        server = Server(path, map_sample)
        rows: dict[str, list[float]] = {}
        with httpx.Client(timeout=600) as client:
            try:
                start_s = server.wait(client)
                cold = {
                    "/api/map (first: t-SNE)": measure(client, server.base, ["/api/map"])[0],
                    "/review (first: ranks every unlabelled exposure)": measure(
                        client, server.base, ["/review"]
                    )[0],
                }
                log(f"  up in {start_s:.1f} s; cold map {cold['/api/map (first: t-SNE)']:.1f} s; measuring")
                picks = targets(n_exposures, n_requests)
                verdicts = ["any", "bad", "good", "unclassified", "labelled", "unlabelled"]
                pages = [
                    f"/?page={1 + i % 20}&verdict={verdicts[i % len(verdicts)]}&sort=date"
                    for i in range(n_requests)
                ]
                other = targets(n_exposures, n_requests, seed=2)
                plan = {
                    "/ (survey: another page or filter each time)": pages,
                    "/api/survey": [p.replace("/?", "/api/survey?") for p in pages],
                    "/exposure/EXPNUM (another exposure each time)": [f"/exposure/{e}" for e, _ in picks],
                    "/api/exposure/EXPNUM": [f"/api/exposure/{e}" for e, _ in other],
                    "/ccd/EXPNUM/CCDNAME": [f"/ccd/{e}/{n}" for e, n in picks],
                    "/api/ccd/EXPNUM/CCDNAME": [
                        f"/api/ccd/{e}/{n}" for e, n in targets(n_exposures, n_requests, seed=3)
                    ],
                    "/api/similar?ccd=EXPNUM/CCDNAME&k=20": [
                        f"/api/similar?ccd={e}/{n}&k=20" for e, n in other
                    ],
                    "/api/similar ... &where=filter='r'": [
                        f"/api/similar?ccd={e}/{n}&k=20&where=filter%20%3D%20%27r%27" for e, n in picks
                    ],
                    "/review (ranked queue kept)": ["/review"] * n_requests,
                    "/api/review": ["/api/review"] * n_requests,
                    "/api/map (kept)": ["/api/map"] * n_requests,
                    "/thumb/EXPNUM/CCDNAME.png (no image file)": [f"/thumb/{e}/{n}.png" for e, n in other],
                }
                for name, paths in plan.items():
                    rows[name] = measure(client, server.base, paths)
                    log(f"  {name}: median {np.median(rows[name]) * 1000:.0f} ms")
                bodies = [
                    {"target": str(e), "category": "good", "analyst": f"bench{i}"}
                    for i, (e, _) in enumerate(picks)
                ]
                rows["POST /api/labels (the one write)"] = measure(
                    client, server.base, ["/api/labels"] * n_requests, "POST", bodies
                )
            finally:
                server.stop()
    table = Table(
        f"vec serve on a store of {n_ccds:,} CCDs ({n_exposures:,} exposures, {dim}-d vectors), "
        f"{n_requests} requests each over 127.0.0.1",
        ["page or API", "requests", "median ms", "p95 ms", "max ms"],
    )
    for name, seconds in rows.items():
        table.add(
            name,
            len(seconds),
            ms(float(np.median(seconds))),
            ms(float(np.percentile(seconds, 95))),
            ms(max(seconds)),
        )
    for name, seconds in cold.items():
        table.add(name, 1, ms(seconds), "-", "-")
    table.notes += [
        f"server: `vec serve` in its own process; up (answering) {start_s:.1f} s after start; the first "
        "map and review requests come right after, and the server also draws both in a thread at start",
        f"store built like bench/scale_bench.py (synthetic vectors, no image files); {summary.n_exposures:,} "
        f"exposures in one classify --all run ({all_s:.0f} s)",
        "one request at a time (httpx, keep-alive); each timing is the full HTTP round trip",
    ]
    report.tables.append(table)
    report.raw = {
        "seconds": rows,
        "cold": cold,
        "built": built,
        "classify_all_s": all_s,
        "start_s": start_s,
        "load": os.getloadavg(),
    }
    report.finish()


if __name__ == "__main__":
    main()
