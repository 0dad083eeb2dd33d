"""GPU ingest benchmark, ready to run on a CUDA host: ViT-B/14-reg4 throughput, decode cost, a full ingest.

    python bench/gpu_ingest.py                      # CUDA: paper (2352 x 1176) and 518 x 518, batch sweep
    python bench/gpu_ingest.py --compile            # the same with torch.compile
    python bench/gpu_ingest.py --full-ingest        # plus `vec ingest` of simulated full-size files
    python bench/gpu_ingest.py --tiny [--full-ingest]   # CPU smoke: a 64-d, 2-block ViT at 112 x 56, batch 2

1. **Model**: timm ``vit_base_patch14_reg4_dinov2`` with random weights, built as ``vec ingest`` builds it
   (:func:`ingest.embedders.vit.build_dinov2_vit`: dynamic image size, SDPA attention), the CLS read-out
   of ``dinov2_cls_embedding``, under ``torch.inference_mode()`` and bf16 autocast on CUDA (fp32 on CPU),
   optionally ``torch.compile``-d. For each size and batch: warm-up passes, then timed passes of a random
   batch already on the device (``torch.cuda.synchronize`` around them); CCDs/s on one GPU and achieved
   TFLOP/s = CCDs/s x FLOPs per CCD. A batch that runs out of memory ends that size's sweep.
2. **FLOPs per CCD**, from the token count (no profiler): T = 1 CLS + 4 registers + (H/14)(W/14) patches,
   D = 768, L = 12 blocks, MLP ratio 4. Per block, multiply-accumulates = 12 T D^2 (QKV 3 T D^2, output
   projection T D^2, MLP 8 T D^2) + 2 T^2 D (Q K^T and attention x V); FLOPs = 2 x L x MACs. ``paper``:
   T = 14,117 -> 9.74 TFLOP per CCD (the issue's figure); 518 x 518: T = 1,374 -> 0.303 TFLOP. Left out:
   the patch embedding (+0.13 % at ``paper``), softmax, LayerNorm, GELU.
3. **Decode**: read (fitsio, one HDU of an fpacked file) + preprocess to the preset, one CPU worker, on a
   simulated full-size (4094 x 2046) CCD (``--tiny``: 256 x 128); the DataLoader workers needed to feed one
   GPU = ceil(GPU CCDs/s / decode CCDs/s per worker), at the sweep's best batch.
4. **Full ingest** (``--full-ingest``): ``vec ingest`` through the CLI, in a subprocess, of simulated
   full-size exposures (random timm-layout weights saved to a file and passed with ``--weights``) at the
   best batch and the workers found above; CCDs/s from the run's summary (interpreter start excluded).

No number here has been measured on a GPU yet: the README says "unmeasured" until a GPU run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import PROJECT_ROOT, RESULTS_DIR, Report, Table, log, secs  # noqa: E402
from ingest.embedders.vit import build_dinov2_vit, dinov2_cls_embedding  # noqa: E402
from ingest.preprocess import get_preset, preprocess  # noqa: E402
from ingest.reader import read_ccd  # noqa: E402
from ingest.simulate.survey import simulate_survey  # noqa: E402
from ingest.sources import expand_sources  # noqa: E402

PATCH, REGISTERS, MLP_RATIO = 14, 4, 4.0
VITB = {"embed_dim": 768, "depth": 12, "num_heads": 12}
TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2}
# name -> (H, W, preset for decode and the full ingest)
SIZES = {"paper 2352x1176": (2352, 1176, "paper"), "518x518": (518, 518, "sky518")}
TINY_SIZES = {"tiny 112x56": (112, 56, "tiny112")}
BATCHES, TINY_BATCHES = (1, 2, 4, 8, 16, 32, 64), (2,)
FULL_CCD_SHAPE, TINY_CCD_SHAPE = (4094, 2046), (256, 128)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke: tiny ViT at 112 x 56, batch 2")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    parser.add_argument("--full-ingest", action="store_true", help="also run `vec ingest` on simulated files")
    parser.add_argument("--batches", default="", help="comma-separated batch sizes (default 1..64)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per point (default 5)")
    parser.add_argument("--exposures", type=int, default=2, help="simulated exposures for --full-ingest")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON results go")
    args = parser.parse_args(argv)
    args.quick = args.tiny  # for Report: the tiny run writes gpu_ingest.quick.json
    return args


# ------------------------------------------------------------------------------------------------ FLOPs
def tokens(height: int, width: int) -> int:
    return 1 + REGISTERS + (height // PATCH) * (width // PATCH)


def vit_flops(height: int, width: int, embed_dim: int = 768, depth: int = 12) -> float:
    """FLOPs of one forward pass of one image (see the module docstring)."""
    t, d = tokens(height, width), embed_dim
    return 2.0 * depth * (12 * t * d * d + 2 * t * t * d)


# ------------------------------------------------------------------------------------------------ model
def build_model(arch: dict, device: str, compile_model: bool) -> torch.nn.Module:
    model = build_dinov2_vit(**arch).to(device)
    return torch.compile(model) if compile_model else model


def autocast(device: str) -> contextlib.AbstractContextManager:
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(model, device: str, height: int, width: int, batch: int, seconds: float) -> float:
    """CCDs/s of the forward pass on a random batch already on ``device``."""
    x = torch.randn(batch, 3, height, width, device=device)
    with torch.inference_mode(), autocast(device):
        for _ in range(2):  # warm-up (and compilation)
            dinov2_cls_embedding(model, x)
        sync(device)
        n, start = 0, time.perf_counter()
        while True:
            dinov2_cls_embedding(model, x)
            n += 1
            sync(device)
            spent = time.perf_counter() - start
            if spent >= seconds and n >= 3:
                return n * batch / spent


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


# ------------------------------------------------------------------------------------------------ decode
def decode_rate(data: Path, preset: str, seconds: float) -> float:
    """Read + preprocess CCDs/s in this one process (one DataLoader worker's work)."""
    tasks = expand_sources([str(data)]).tasks
    n, start = 0, time.perf_counter()
    while True:
        task = tasks[n % len(tasks)]
        _, pixels = read_ccd(task)
        preprocess(pixels, get_preset(preset))
        n += 1
        spent = time.perf_counter() - start
        if spent >= seconds and n >= 2:
            return n / spent


# ------------------------------------------------------------------------------------------------ ingest
def full_ingest(
    work: Path, data: Path, arch: dict, preset: str, device: str, batch: int, workers: int
) -> dict:
    """``vec ingest`` in a subprocess with random weights saved to a file; the summary line parsed."""
    weights = work / "random-vit.pth"
    if not weights.exists():
        torch.save(build_dinov2_vit(**arch).state_dict(), weights)
    embedder = "test_vit" if arch is TINY else "dinov2_vitb14_reg"
    command = [sys.executable, "-m", "vecstore.cli", "--store", str(work / f"store-{preset}-{batch}")]
    command += ["ingest", str(data), "--release", "bench", "--embedder", embedder, "--preset", preset]
    command += ["--devices", device, "--batch-size", str(batch), "--workers", str(workers), "--all-ccds"]
    if arch is not TINY:
        command += ["--weights", str(weights)]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"vec ingest failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    summary = next((line for line in result.stdout.splitlines() if "CCDs/s" in line), result.stdout.strip())
    return {"command": " ".join(command[1:]), "summary": summary, "wall_s": wall}


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        raise SystemExit("no CUDA device: run with --tiny for the CPU smoke version")
    device = "cuda" if cuda and not args.tiny else "cpu"
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (no GPU)"
    arch = TINY if args.tiny else VITB
    sizes = TINY_SIZES if args.tiny else SIZES
    batches = (
        [int(b) for b in args.batches.split(",")]
        if args.batches
        else list(TINY_BATCHES if args.tiny else BATCHES)
    )
    seconds = args.seconds or (0.2 if args.tiny else 5.0)
    params = {"device": gpu, "arch": arch, "batches": batches, "compile": args.compile, "seconds": seconds}
    report = Report("gpu_ingest", args, params)

    log(f"building the model on {device} ({'compiled' if args.compile else 'eager'})")
    model = build_model(arch, device, args.compile)
    sweep = Table(
        f"ViT {'tiny' if args.tiny else 'B/14-reg4'} forward, random weights, {gpu}, "
        f"{'bf16 autocast' if device == 'cuda' else 'fp32'}, SDPA, {'compiled' if args.compile else 'eager'}",
        ["size", "tokens", "TFLOP/CCD", "batch", "CCDs/s per GPU", "TFLOP/s"],
    )
    best: dict[str, tuple[int, float]] = {}
    for name, (h, w, _) in sizes.items():
        flops = vit_flops(h, w, arch["embed_dim"], arch["depth"])
        for batch in batches:
            try:
                speed = throughput(model, device, h, w, batch, seconds)
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
                sweep.add(name, f"{tokens(h, w):,}", f"{flops / 1e12:.3g}", batch, "OOM", "-")
                if device == "cuda":
                    torch.cuda.empty_cache()
                break
            log(f"  {name} batch {batch}: {speed:.2f} CCDs/s")
            report.raw.setdefault("sweep", []).append({"size": name, "batch": batch, "ccds_per_s": speed})
            sweep.add(
                name,
                f"{tokens(h, w):,}",
                f"{flops / 1e12:.3g}",
                batch,
                f"{speed:.3g}",
                f"{speed * flops / 1e12:.3g}",
            )
            if speed > best.get(name, (0, 0.0))[1]:
                best[name] = (batch, speed)
    sweep.notes += [
        "FLOPs from the token count: 2 L (12 T D^2 + 2 T^2 D), T = 5 + (H/14)(W/14), D = width, L = blocks",
        "random input already on the device: the model alone, no decode, no host-to-device copy",
    ]
    report.tables.append(sweep)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "survey"
        shape = TINY_CCD_SHAPE if args.tiny else FULL_CCD_SHAPE
        n_exposures = args.exposures if args.full_ingest else 1
        ccdnames = ("S1", "S2", "S3", "S4") if args.tiny or not args.full_ingest else None
        log(f"simulating {n_exposures} exposure(s) of {shape[0]} x {shape[1]} CCDs")
        simulate_survey(data, n_exposures, ccd_shape=shape, ccdnames=ccdnames, seed=0)
        feed = Table(
            f"Decode: read + preprocess per CPU worker ({shape[0]} x {shape[1]} fpacked CCD) vs the GPU",
            ["size", "preset", "decode CCDs/s per worker", "best batch", "GPU CCDs/s", "workers to feed it"],
        )
        workers_for: dict[str, int] = {}
        for name, (_, _, preset) in sizes.items():
            per_worker = decode_rate(data, preset, seconds=max(seconds, 1.0))
            batch, speed = best.get(name, (0, 0.0))
            workers_for[name] = max(1, math.ceil(speed / per_worker)) if per_worker else 0
            feed.add(name, preset, f"{per_worker:.3g}", batch, f"{speed:.3g}", workers_for[name])
            report.raw.setdefault("decode", []).append(
                {"size": name, "preset": preset, "per_worker": per_worker}
            )
        feed.notes.append(
            f"one process on this host ({os.cpu_count()} cores); workers = ceil(GPU / per worker)"
        )
        report.tables.append(feed)

        if args.full_ingest:
            ingest_table = Table(
                f"`vec ingest` of {n_exposures} simulated exposure(s), {gpu}",
                ["size", "batch", "workers", "summary", "wall s"],
            )
            for name, (_, _, preset) in sizes.items():
                batch = best.get(name, (batches[0], 0.0))[0]
                workers = min(workers_for[name], os.cpu_count() or 1)
                log(f"vec ingest: {name}, batch {batch}, {workers} workers")
                done = full_ingest(work, data, arch, preset, device, batch, workers)
                ingest_table.add(name, batch, workers, done["summary"], secs(done["wall_s"]))
                report.raw.setdefault("ingest", []).append(done)
            ingest_table.notes.append(
                "eager model, bf16 autocast on CUDA (what `vec ingest` runs); wall s includes start-up"
            )
            report.tables.append(ingest_table)
    report.finish()


if __name__ == "__main__":
    main()
