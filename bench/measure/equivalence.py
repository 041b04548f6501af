"""Checking a strategy's outputs against the serial reference, frame by frame, in order: in every round
of `pytest bench` (RoundCheck, each model's measured tolerance) and in the tests (tests/helpers/equivalence.py).

The tolerance is not zero: strategies legitimately change the order of float32 sums (other thread
counts, `batched`'s larger batch, `merged`'s fusion, other cuDNN kernels: about 1e-6 relative), and on
Ampere and newer GPUs onnxruntime's CUDA provider uses TF32 unless `use_tf32=0`, with each session's
own cuDNN algorithm search (about 1e-3 of the largest output; emulated in tests/unit/test_equivalence.py).
It is measured per model (README, "Correctness"), as no fixed pair of numbers suits every model (TF32
moves a text detector's near-zero probabilities by more than its frames differ): the noise (the
reference computed a second way) and the frames' discrimination, as fractions of each output's largest
finite magnitude, with the tolerance between them. Non-finite values must match in place and kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from strategies import Outputs, RunResult, RunTimeout, StrategyError, StrategyUnavailable, ThreadSettings, Workload, get_strategy
from strategies.runtime import usable_cores


@dataclass(frozen=True)
class Tolerance:
    """What one model's outputs may differ by: atol_fraction x max|reference| + rtol x |reference|."""

    rtol: float
    atol_fraction: float  # of the largest reference magnitude for the model
    precision: str  # the arithmetic it is sized for ("measured": a Calibration's)

    def __str__(self) -> str:
        return f"{self.precision}: rtol={self.rtol:g}, atol={self.atol_fraction:g} x max|reference|"


def arithmetic(workload: Workload) -> str:
    """'tf32' where onnxruntime's CUDA provider may use TF32 (its default on Ampere and newer), else 'float32'."""
    if workload.provider == "cuda" and workload.provider_options.get("use_tf32", "1") != "0":
        return "tf32"
    return "float32"


def _scales(frames: Sequence[Outputs]) -> list[float]:
    """The largest finite magnitude of each output over every frame (0 where there is none)."""
    scales = [0.0] * (len(frames[0]) if frames else 0)
    for outputs in frames:
        for index, array in enumerate(outputs[: len(scales)]):
            values = np.asarray(array)
            if values.size and values.dtype.kind in "biuf":
                finite = values[np.isfinite(values)]
                if finite.size:
                    scales[index] = max(scales[index], float(np.max(np.abs(finite.astype(np.float64)))))
    return scales


def _array_mismatch(ref: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> str | None:
    """Why `got` is not `ref` (None: it is): non-finite values in the same place and kind, finite ones
    within atol + rtol x |ref|."""
    finite = np.isfinite(ref)
    got_finite = np.isfinite(got)
    nonfinite_differ = (got_finite != finite) | (~finite & ~((ref == got) | (np.isnan(ref) & np.isnan(got))))
    if nonfinite_differ.any():
        where = tuple(int(i) for i in np.argwhere(nonfinite_differ)[0])
        return (f"{int(np.count_nonzero(nonfinite_differ))} values differ in NaN/inf (at index {where} the reference "
                f"has {ref[where]}, the output {got[where]}); non-finite values must match in place and kind")
    expected = ref[finite].astype(np.float64)
    diff = np.abs(got[finite].astype(np.float64) - expected)
    if diff.size and bool(np.any(diff > atol + rtol * np.abs(expected))):
        return f"max abs difference {float(diff.max()):.3g} exceeds the tolerance"
    return None


def _distance(first: Outputs, second: Outputs, scales: Sequence[float]) -> float:
    """The largest difference of finite values as a fraction of each output's scale (absolute where it is 0)."""
    distance = 0.0
    for a, b, scale in zip(first, second, scales, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype.kind not in "biuf":
            return float("inf")
        both = np.isfinite(a) & np.isfinite(b)
        if both.any():
            gap = float(np.max(np.abs(a[both].astype(np.float64) - b[both])))
            distance = max(distance, gap / scale if scale > 0 else gap)
    return distance


ToleranceChoice = Tolerance | Sequence[Tolerance]


def first_mismatch(reference: Sequence[Sequence[Outputs]], candidate: Sequence[Sequence[Outputs]],
                   names: Sequence[str], tolerance: ToleranceChoice) -> str | None:
    """A sentence describing the first difference, or None when the outputs are equivalent.
    `tolerance`: one for every model, or one per model (a `Calibration.tolerances`)."""
    if len(candidate) != len(reference):
        return f"expected outputs for {len(reference)} models, got {len(candidate)}."
    per_model = [tolerance] * len(reference) if isinstance(tolerance, Tolerance) else list(tolerance)
    for model, (ref_frames, got_frames) in enumerate(zip(reference, candidate, strict=True)):
        name, allowed = names[model], per_model[model]
        if len(got_frames) != len(ref_frames):
            return f"model {name!r}: expected {len(ref_frames)} frames, got {len(got_frames)}."
        scales = _scales(ref_frames)
        for frame, (ref_outputs, got_outputs) in enumerate(zip(ref_frames, got_frames, strict=True)):
            if len(got_outputs) != len(ref_outputs):
                return f"model {name!r} frame {frame}: expected {len(ref_outputs)} outputs, got {len(got_outputs)}."
            for index, (ref, got) in enumerate(zip(ref_outputs, got_outputs, strict=True)):
                ref, got = np.asarray(ref), np.asarray(got)
                if got.shape != ref.shape:
                    return f"model {name!r} frame {frame} output {index}: shape {got.shape}, expected {ref.shape}."
                problem = _array_mismatch(ref, got, allowed.rtol, allowed.atol_fraction * scales[index])
                if problem is not None:
                    return f"model {name!r} frame {frame} output {index}: {problem} ({allowed})."
    return None


# The arithmetic's own noise, assumed where the second way showed less: onnxruntime's CPU kernels are often
# bitwise repeatable, so the measured noise can be 0 while another strategy's kernels still differ.
NOISE_FLOOR = {"float32": 1e-6, "tf32": 1e-4}
MARGIN = 4.0  # the tolerance stays this far above the noise: other strategies' kernels are not the second way's
NOISE_FRAMES = 32  # frames computed the second way: the cost of measuring stays small on long videos
NOISE_K = 2  # frames per call the second way: another batch size, not batched's default (4), at a small memory cost


@dataclass(frozen=True)
class ModelCheck:
    """One model's measured equality check; every figure a fraction of the output's scale."""

    name: str
    noise: float  # largest difference between the reference and the second way
    separation: float  # smallest difference between adjacent frames whose outputs are not identical (inf: none)
    separation_median: float  # median difference between adjacent frames
    tolerance: float  # what the check allows
    pairs: int  # adjacent frame pairs
    identical_pairs: int  # pairs with identical outputs: no check can see them swapped, nor does it matter
    pairs_within_noise: int  # pairs that differ, but by no more than the tolerance: their order is not checked

    @classmethod
    def from_dict(cls, name: str, stored: dict[str, Any]) -> ModelCheck:
        """The check as `as_dict` stored it (in a benchmark's extra_info)."""
        separation = stored.get("separation_min")
        kept = {each.name for each in fields(cls)} - {"name", "separation"}
        return cls(name=name, separation=float("inf") if separation is None else separation,
                   **{key: stored[key] for key in kept})

    @property
    def tells_frames_apart(self) -> bool:
        return self.pairs > self.identical_pairs and self.pairs_within_noise == 0

    def verdict(self) -> str:
        """What the check proves about the frame order, in words: which adjacent pairs it tells apart."""
        distinct = self.pairs - self.identical_pairs
        if distinct == 0:
            return "no two adjacent frames give different outputs: there is no frame order to check"
        if self.tells_frames_apart:
            if self.identical_pairs == 0:
                return "tells adjacent frames apart"
            # A model with mostly constant outputs (an int64 label, NaN everywhere): say how few pairs are seen.
            return (f"tells apart the {distinct} of {self.pairs} adjacent frame pairs whose outputs differ; the other "
                    f"{self.identical_pairs} give equal outputs, so their order is not checked")
        if self.pairs_within_noise == distinct:
            return ("cannot tell these frames apart: the noise reaches the frames' differences, so an equal result "
                    "does not prove the frame order for this model")
        return (f"cannot tell {self.pairs_within_noise} of {distinct} differing adjacent frame pairs apart "
                "(their order is not proven)")

    def line(self) -> str:
        distinct = self.pairs - self.identical_pairs
        if self.separation == float("inf"):
            apart = "no differing frames"
        elif self.identical_pairs == 0:
            apart = f"adjacent frames differ by >= {self.separation:.2g} (median {self.separation_median:.2g})"
        else:  # the median over every pair would be 0, which reads as "no difference"
            apart = f"{distinct} of {self.pairs} adjacent frame pairs differ, by >= {self.separation:.2g}"
        return (f"{self.name}: noise {self.noise:.2g}, {apart}, tolerance {self.tolerance:.2g} "
                f"x max|output|: {self.verdict()}")

    def as_dict(self) -> dict[str, Any]:
        return {"noise": self.noise, "separation_min": None if self.separation == float("inf") else self.separation,
                "separation_median": self.separation_median, "tolerance": self.tolerance, "pairs": self.pairs,
                "identical_pairs": self.identical_pairs, "pairs_within_noise": self.pairs_within_noise,
                "tells_frames_apart": self.tells_frames_apart}


@dataclass(frozen=True)
class Calibration:
    """Every model's measured check, and how the noise was measured."""

    models: tuple[ModelCheck, ...]
    second_way: str
    precision: str

    @property
    def tolerances(self) -> list[Tolerance]:
        return [Tolerance(rtol=0.0, atol_fraction=m.tolerance, precision="measured") for m in self.models]

    def __str__(self) -> str:
        return (f"a tolerance measured per model ({self.precision} arithmetic; noise = the reference computed "
                f"again as {self.second_way})")

    def lines(self) -> list[str]:
        return [check.line() for check in self.models]

    def as_dict(self) -> dict[str, Any]:
        return {"second_way": self.second_way, "precision": self.precision,
                "models": {check.name: check.as_dict() for check in self.models}}


def calibrate(reference: Sequence[Sequence[Outputs]], second: Sequence[Sequence[Outputs]], names: Sequence[str],
              precision: str = "float32", second_way: str = "") -> Calibration:
    """The measured check of every model: `second` is the reference's first frames computed
    another way on the same provider."""
    floor = NOISE_FLOOR[precision]
    checks = []
    for name, frames, again in zip(names, reference, second, strict=True):
        scales = _scales(frames)
        noise = max((_distance(a, b, scales) for a, b in zip(frames, again, strict=False)), default=0.0)
        gaps = [_distance(frames[i], frames[i + 1], scales) for i in range(len(frames) - 1)]
        differing = [gap for gap in gaps if gap > 0]
        separation = min(differing, default=float("inf"))
        assumed = max(noise, floor)
        tolerance = MARGIN * assumed
        if separation != float("inf"):
            # Between the two on a log scale where the gap allows, never closer to the noise than MARGIN.
            tolerance = max(tolerance, float(np.sqrt(assumed * separation)))
        checks.append(ModelCheck(name=name, noise=noise, separation=separation,
                                 separation_median=float(np.median(gaps)) if gaps else 0.0, tolerance=tolerance,
                                 pairs=len(gaps), identical_pairs=len(gaps) - len(differing),
                                 pairs_within_noise=sum(gap <= tolerance for gap in differing)))
    return Calibration(tuple(checks), second_way, precision)


def measure_calibration(workload: Workload, reference: Sequence[Sequence[Outputs]],
                        frames: int = NOISE_FRAMES, time_limit: float | None = None) -> Calibration:
    """Calibrate on the first `frames` frames computed a second way on the workload's provider, with other
    thread settings: `batched` (NOISE_K frames per call), or `serial` where a model's batch axis is fixed.
    `time_limit`: as for `Strategy.run` (RunTimeout past it)."""
    count = min(frames, workload.frame_count)
    subset = replace(workload, models=tuple(replace(model, frames=model.frames[:count]) for model in workload.models))
    settings = ThreadSettings(intra_op=max(1, usable_cores() // 2), inter_op=1, spinning=False)
    try:
        with get_strategy("batched")(subset, settings, k=NOISE_K) as batched:
            second = batched.run(time_limit=time_limit).outputs
        how = f"{NOISE_K} frames per call, {settings.label}, on {count} frames"
    except RunTimeout:
        raise
    except (StrategyUnavailable, StrategyError):
        with get_strategy("serial")(subset, settings) as serial:
            second = serial.run(time_limit=time_limit).outputs
        how = f"another session, {settings.label}, on {count} frames"
    return calibrate(reference, second, workload.names, arithmetic(workload), how)


class RoundCheck:
    """Checks each run's outputs as soon as it is done, then drops them: a benchmark holds one round's."""

    def __init__(self, reference: Sequence[Sequence[Outputs]], names: Sequence[str], tolerance: ToleranceChoice):
        self.reference, self.names, self.tolerance = reference, names, tolerance
        self.checked = 0
        self.mismatch: str | None = None  # the first one found

    def __call__(self, runs: Sequence[RunResult]) -> None:
        for run in runs[self.checked:]:
            if self.mismatch is None:
                self.mismatch = first_mismatch(self.reference, run.outputs, self.names, self.tolerance)
            run.drop_outputs()
        self.checked = len(runs)
