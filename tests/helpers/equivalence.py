"""Equal to serial, in the tests: the check `pytest bench` makes (bench/measure/equivalence.py: each model
within the tolerance measured for it on the workload, frame by frame), and the fixed tolerances a few tests
still need.

The fixed tolerances: FLOAT32 allows 1e-4 relative plus 1e-4 of the largest reference magnitude of a
model (outputs near zero); TF32 allows 1e-3 relative plus 5e-3 of it. An emulation of TF32 on the CPU
(operands of every Conv and Gemm rounded to 10 mantissa bits; tests/unit/test_equivalence.py) puts two
TF32 sessions of fanbench's models up to about 1e-3 of the largest output apart, ten times FLOAT32's
allowance; adjacent video frames still differ by more than 1e-2. They serve where no tolerance is
measured: the check's own mechanics, the TF32 emulation, and a CUDA run held against a reference computed
on the CPU (the measured tolerance is of one provider's noise)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.measure.equivalence import Tolerance, arithmetic, first_mismatch, measure_calibration
from bench.measure.scenarios import stream_reference
from strategies import Outputs, Schedule, Workload

FLOAT32 = Tolerance(rtol=1e-4, atol_fraction=1e-4, precision="float32")
TF32 = Tolerance(rtol=1e-3, atol_fraction=5e-3, precision="tf32")


def fixed_tolerance(workload: Workload) -> Tolerance:
    """TF32's where onnxruntime's CUDA provider may use TF32 (its default), else FLOAT32's."""
    return TF32 if arithmetic(workload) == "tf32" else FLOAT32


def mismatch_with_serial(workload: Workload, reference: Sequence[Sequence[Outputs]],
                         outputs: Sequence[Sequence[Outputs]], schedule: Schedule | None = None) -> str | None:
    """The first difference between `outputs` and serial's `reference` (of the workload's frames) as
    `pytest bench` finds it, or None: the tolerance measured per model (measure_calibration), the reference
    laid out as the run's frames when a `schedule` of cameras carried them (stream_reference)."""
    calibration = measure_calibration(workload, reference)
    return first_mismatch(stream_reference(reference, schedule), outputs, workload.names, calibration.tolerances)


def assert_equal_to_serial(workload: Workload, reference: Sequence[Sequence[Outputs]],
                           outputs: Sequence[Sequence[Outputs]], schedule: Schedule | None = None) -> None:
    mismatch = mismatch_with_serial(workload, reference, outputs, schedule)
    if mismatch is not None:
        raise AssertionError(f"outputs differ from the serial reference: {mismatch}")
