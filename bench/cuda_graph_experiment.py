"""Why `cuda_graph` did not overlap its lanes: `python -m bench.cuda_graph_experiment [--out DIR]`.

A prepared experiment for a CUDA host (docs/gpu.md, *cuda_graph*): four write-up-sized models, a
lane (thread) per model, each variant timed over `--rounds` passes after a warm-up pass. `serial`
(one thread; the reference outputs) and `threads` call `session.run`; `iobinding_sync`/`_nosync`
bind IO, with or without `synchronize_outputs()` (the CUDA provider's `cudaDeviceSynchronize`: each
lane waits for all others). `graph_asis` is `cuda_graph` as run on the H100: `update_inplace` (a
synchronous `cudaMemcpy` on the legacy default stream), replay, `synchronize_outputs()`,
`.numpy()`; `graph_nosync` drops the sync (`OnRunEnd` already syncs the run's stream).
`graph_stream` gives each session its own `user_compute_stream`: the frame copied in with
`cudaMemcpyAsync` from page-locked memory, the run not synchronised
(`disable_synchronize_execution_providers`), the outputs copied back on that stream into
page-locked buffers, then that stream alone synchronised. Writes OUT/cuda_graph_experiment.json
and .md (per variant: wall per pass, per-call median and p90, largest difference from `serial`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fixtures.models import SIZES, model_set, write_model
from strategies import ThreadSettings
from strategies.runtime import CudaRuntimeError, cuda_runtime, io_names, make_session, onnxruntime

CPU_SETTINGS = ThreadSettings(intra_op=4, inter_op=1, spinning=False)


class Lane:
    """One model's sessions and buffers for one variant, built and used on the lane's own thread."""

    def __init__(self, variant: str, path: Path, frames: np.ndarray, provider: str) -> None:
        self.variant, self.path, self.frames, self.provider = variant, path, frames, provider
        self.ort = onnxruntime()
        self.stream = 0

    def set_up(self) -> None:
        variant, ort = self.variant, self.ort
        graph = variant.startswith("graph")
        options = {"enable_cuda_graph": "1"} if graph else {}
        self.run_options = ort.RunOptions()
        if variant == "graph_stream":
            self.cudart = cuda_runtime()
            self.stream = self.cudart.create_stream()
            options["user_compute_stream"] = str(self.stream)
            self.run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self.session = make_session(self.path, CPU_SETTINGS, self.provider, options if self.provider == "cuda" else None)
        self.input_name, self.output_names = io_names(self.session)
        if graph or variant.startswith("iobinding"):
            self.binding = self.session.io_binding()
        if graph:
            sample = self.frames[0]
            self.input = ort.OrtValue.ortvalue_from_shape_and_type(sample.shape, sample.dtype, self.provider, 0)
            self.input.update_inplace(sample)
            self.binding.bind_ortvalue_input(self.input_name, self.input)
            probe = make_session(self.path, CPU_SETTINGS, "cpu").run(None, {self.input_name: sample})
            self.outputs = [ort.OrtValue.ortvalue_from_shape_and_type(a.shape, a.dtype, self.provider, 0) for a in probe]
            self.staging = [np.empty_like(a) for a in probe]
            for name, value in zip(self.output_names, self.outputs, strict=True):
                self.binding.bind_ortvalue_output(name, value)
            if variant == "graph_stream":
                for buffer in self.staging:
                    self.cudart.pin(buffer)
            for _ in range(3):  # regular runs, then the capture, then a replay
                self.session.run_with_iobinding(self.binding, self.run_options)
                if self.stream:
                    self.cudart.synchronize(self.stream)
            self.binding.synchronize_outputs()
        elif variant.startswith("iobinding"):
            for name in self.output_names:
                self.binding.bind_output(name, self.provider, 0)

    def step(self, frame: int) -> tuple[np.ndarray, ...]:
        variant, x = self.variant, self.frames[frame]
        if variant in ("serial", "threads"):
            return tuple(self.session.run(None, {self.input_name: x}))
        if variant.startswith("iobinding"):
            value = self.ort.OrtValue.ortvalue_from_numpy(x, self.provider, 0)
            self.binding.bind_ortvalue_input(self.input_name, value)
            self.session.run_with_iobinding(self.binding)
            if variant == "iobinding_sync":
                self.binding.synchronize_outputs()
            return tuple(self.binding.copy_outputs_to_cpu())
        if variant == "graph_stream":
            self.cudart.copy_to_device(self.input.data_ptr(), x, self.stream)
            self.session.run_with_iobinding(self.binding, self.run_options)
            for buffer, value in zip(self.staging, self.outputs, strict=True):
                self.cudart.copy_to_host(buffer, value.data_ptr(), self.stream)
            self.cudart.synchronize(self.stream)
            return tuple(buffer.copy() for buffer in self.staging)
        self.input.update_inplace(x)
        self.session.run_with_iobinding(self.binding, self.run_options)
        if variant == "graph_asis":
            self.binding.synchronize_outputs()
        return tuple(np.array(value.numpy(), copy=True) for value in self.outputs)

    def close(self) -> None:
        if self.variant == "graph_stream":
            for buffer in getattr(self, "staging", []):
                self.cudart.unpin(buffer)
        self.binding = self.session = self.input = self.outputs = None  # type: ignore[assignment]
        if self.stream:
            self.cudart.synchronize(self.stream)
            self.cudart.destroy_stream(self.stream)
            self.stream = 0


Outputs = list[list[tuple[np.ndarray, ...]]]  # per model, per frame


def run_pass(lanes: Sequence[Lane], frames: int, durations: list[float]) -> Outputs:
    """Every frame through every lane, in order; each call's duration appended to `durations`."""
    outputs: Outputs = [[] for _ in lanes]
    for frame in range(frames):
        for per_frame, lane in zip(outputs, lanes, strict=True):
            start = time.perf_counter()
            per_frame.append(lane.step(frame))
            durations.append(time.perf_counter() - start)
    return outputs


def run_variant(variant: str, paths: Sequence[Path], frames: np.ndarray, provider: str, rounds: int,
                pinned: bool) -> dict[str, Any]:
    """Warm-up pass, then `rounds` timed passes; per pass the wall, per call the duration."""
    lanes = [Lane(variant, path, frames, provider) for path in paths]
    groups = [lanes] if variant == "serial" else [[lane] for lane in lanes]  # the lanes of each thread
    pools = [ThreadPoolExecutor(max_workers=1) for _ in groups]
    capture_lock = threading.Lock()

    def set_up(lane: Lane) -> None:
        with capture_lock:  # one capture at a time: CUDA forbids other work's syncs while a stream captures
            lane.set_up()

    def on_own_thread(work: Callable[[Lane], None]) -> None:
        for pool, group in zip(pools, groups, strict=True):
            for lane in group:
                pool.submit(work, lane).result()

    try:
        on_own_thread(set_up)
        walls, calls, outputs = [], [], None
        for round_index in range(rounds + 1):
            durations: list[float] = []
            start = time.perf_counter()
            futures = [pool.submit(run_pass, group, len(frames), durations) for pool, group in zip(pools, groups, strict=True)]
            result = [per_model for future in futures for per_model in future.result()]
            wall = time.perf_counter() - start
            if round_index > 0:  # the first pass is the warm-up
                walls.append(wall)
                calls += durations
                outputs = result
        return {"variant": variant, "walls_s": walls, "wall_s": statistics.median(walls),
                "call_ms_median": 1e3 * statistics.median(calls),
                "call_ms_p90": 1e3 * float(np.percentile(calls, 90)), "outputs": outputs, "pinned_frames": pinned}
    finally:
        on_own_thread(Lane.close)
        for pool in pools:
            pool.shutdown()


def max_difference(outputs: Outputs, reference: Outputs) -> float:
    return max(float(np.max(np.abs(a - b))) for got, want in zip(outputs, reference, strict=True)
               for frame_got, frame_want in zip(got, want, strict=True)
               for a, b in zip(frame_got, frame_want, strict=True))


VARIANTS = ("serial", "threads", "iobinding_sync", "iobinding_nosync", "graph_asis", "graph_nosync", "graph_stream")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cuda_graph_experiment", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/cuda-graph-experiment"))
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--model-size", choices=sorted(SIZES), default="resnet18")
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a dry run of the variants that do not need CUDA (the graph ones are skipped)")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="only these (default all)")
    args = parser.parse_args(argv)
    if min(args.frames, args.rounds, args.models) < 1:
        parser.exit(4, "error: --frames, --rounds and --models must be at least 1.\n")
    args.out.mkdir(parents=True, exist_ok=True)
    ort = onnxruntime()
    paths = [write_model(spec, args.out / "models") for spec in model_set(SIZES[args.model_size], args.models)]
    frames = np.random.default_rng(0).random((args.frames, 4, 3, 256, 256), dtype=np.float32)
    pinned = False
    chosen = [variant for variant in VARIANTS if args.variant is None or variant in args.variant or variant == "serial"]
    rows, reference, skipped = [], None, {}
    for variant in chosen:
        if args.provider != "cuda" and (variant.startswith("graph") or variant == "iobinding_sync"):
            skipped[variant] = "needs CUDA"
            continue
        if variant == "graph_stream" and not pinned:
            try:
                cuda_runtime().pin(frames)  # page-locked: cudaMemcpyAsync from it is a DMA, not a staged copy
                pinned = True
            except CudaRuntimeError as error:
                print(f"frames not page-locked ({error}); graph_stream copies from pageable memory", flush=True)
        try:
            row = run_variant(variant, paths, frames, args.provider, args.rounds, pinned)
        except Exception as error:  # one variant failing must not hide the others' figures
            skipped[variant] = f"{type(error).__name__}: {error}"
            print(f"{variant}: FAILED {skipped[variant]}", flush=True)
            continue
        outputs = row.pop("outputs")
        if reference is None:
            reference = outputs
        row["max_abs_diff_vs_serial"] = max_difference(outputs, reference)
        rows.append(row)
        print(f"{variant:17s} wall {row['wall_s']:.3f} s  call median {row['call_ms_median']:.2f} ms "
              f"p90 {row['call_ms_p90']:.2f} ms  max |diff| {row['max_abs_diff_vs_serial']:.2e}", flush=True)
    if pinned:
        cuda_runtime().unpin(frames)
    serial_wall = next((row["wall_s"] for row in rows if row["variant"] == "serial"), None)
    lines = [f"# cuda_graph experiment: {args.models} x {args.model_size}, {args.frames} frames, batch 4, 256x256, "
             f"median of {args.rounds} passes after one warm-up pass", "",
             f"onnxruntime {ort.__version__}, provider {args.provider}", "",
             "| variant | wall (s) | passes (s) | x serial | call median (ms) | call p90 (ms) | max abs diff vs serial |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = f"{serial_wall / row['wall_s']:.2f}" if serial_wall else "-"
        lines.append(f"| {row['variant']} | {row['wall_s']:.3f} | {' / '.join(f'{w:.3f}' for w in row['walls_s'])} | "
                     f"{ratio} | {row['call_ms_median']:.2f} | {row['call_ms_p90']:.2f} | "
                     f"{row['max_abs_diff_vs_serial']:.2e} |")
    lines += [f"- {variant}: not run: {why}" for variant, why in skipped.items()]
    text = "\n".join(lines) + "\n"
    (args.out / "cuda_graph_experiment.md").write_text(text)
    (args.out / "cuda_graph_experiment.json").write_text(json.dumps(
        {"onnxruntime": ort.__version__, "provider": args.provider, "frames": args.frames, "rounds": args.rounds,
         "models": args.models, "model_size": args.model_size, "rows": rows, "not_run": skipped}, indent=1))
    print(text, flush=True)
    return 1 if any(why != "needs CUDA" for why in skipped.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
