"""Checking a strategy's outputs against the serial reference, frame by frame, in order.

Tolerance, and why it is not zero: float32 addition is not associative, and strategies
legitimately change the order of the sums inside a convolution or a Gemm (a different
intra-op thread count splits the work differently, `batched` runs a larger batch, `merged`
lets onnxruntime fuse across one graph, a GPU picks different cuDNN kernels). Those
differences are around 1e-6 relative. The check allows 1e-4 relative, plus 1e-4 of the
largest reference magnitude of that model as an absolute floor (outputs near zero). The
outputs of two different frames differ far more than that, so a strategy that reorders or
drops frames fails the check (tests prove it).

TF32: on Ampere and newer GPUs, onnxruntime's CUDA provider computes float32 convolutions and
GEMMs with TF32 tensor-core math unless `use_tf32=0` (its default is on). TF32 rounds the
operands to 10 mantissa bits, and every session runs its own cuDNN algorithm search, so two
sessions of one model (serial's and a strategy's) may run different kernels whose results
differ at TF32 precision, not float32's. An emulation on the CPU (operands of every Conv and
Gemm rounded to 10 mantissa bits; tests/test_equivalence.py) puts that difference at up to
about 1e-3 of the largest output on fanbench's models, ten times the float32 tolerance;
adjacent video frames still differ by more than 1e-2. Runs that may use TF32 are therefore
checked at rtol 1e-3 plus 5e-3 of the largest magnitude, which still fails a reordered frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import Outputs, Workload


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-4
    atol_fraction: float = 1e-4  # of the largest reference magnitude for the model
    precision: str = "float32"  # the arithmetic it is sized for

    def __str__(self) -> str:
        return f"{self.precision}: rtol={self.rtol:g}, atol={self.atol_fraction:g} x max|reference|"


FLOAT32 = Tolerance()
TF32 = Tolerance(rtol=1e-3, atol_fraction=5e-3, precision="tf32")


def tolerance_for(workload: Workload) -> Tolerance:
    """TF32's tolerance where onnxruntime's CUDA provider may use TF32 (its default), else float32's."""
    if workload.provider == "cuda" and workload.provider_options.get("use_tf32", "1") != "0":
        return TF32
    return FLOAT32


def _scale(frames: Sequence[Outputs]) -> float:
    return max((float(np.max(np.abs(array))) for outputs in frames for array in outputs if array.size), default=0.0)


def first_mismatch(reference: Sequence[Sequence[Outputs]], candidate: Sequence[Sequence[Outputs]],
                   names: Sequence[str], tolerance: Tolerance = Tolerance()) -> str | None:
    """A sentence describing the first difference, or None when the outputs are equivalent."""
    if len(candidate) != len(reference):
        return f"expected outputs for {len(reference)} models, got {len(candidate)}."
    for model, (ref_frames, got_frames) in enumerate(zip(reference, candidate, strict=True)):
        name = names[model]
        if len(got_frames) != len(ref_frames):
            return f"model {name!r}: expected {len(ref_frames)} frames, got {len(got_frames)}."
        atol = tolerance.atol_fraction * _scale(ref_frames)
        for frame, (ref_outputs, got_outputs) in enumerate(zip(ref_frames, got_frames, strict=True)):
            if len(got_outputs) != len(ref_outputs):
                return f"model {name!r} frame {frame}: expected {len(ref_outputs)} outputs, got {len(got_outputs)}."
            for index, (ref, got) in enumerate(zip(ref_outputs, got_outputs, strict=True)):
                got = np.asarray(got)
                if got.shape != ref.shape:
                    return f"model {name!r} frame {frame} output {index}: shape {got.shape}, expected {ref.shape}."
                if not np.allclose(got, ref, rtol=tolerance.rtol, atol=atol):
                    diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
                    return (f"model {name!r} frame {frame} output {index}: max abs difference {diff:.3g} "
                            f"exceeds the tolerance ({tolerance}).")
    return None


def assert_equivalent(reference: Sequence[Sequence[Outputs]], candidate: Sequence[Sequence[Outputs]],
                      names: Sequence[str], tolerance: Tolerance = Tolerance()) -> None:
    mismatch = first_mismatch(reference, candidate, names, tolerance)
    if mismatch is not None:
        raise AssertionError(f"outputs differ from the serial reference: {mismatch}")
