"""The equivalence check: it passes equal outputs and fails reordered, missing or wrong ones."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fixtures.models import SIZES, build_model, model_set
from fixtures.video import decode_video, frames_tensor, write_synthetic_video
from strategies import ThreadSettings, Tolerance, assert_equivalent, get_strategy
from strategies.equivalence import FLOAT32, TF32, first_mismatch, tolerance_for
from strategies.sessions import make_session
from tests.tf32_emulation import round_to_tf32, tf32_model


@pytest.fixture(scope="module")
def reference(tiny_workload):
    with get_strategy("serial")(tiny_workload) as serial:
        return serial.run().outputs


def copy(outputs):
    return [[tuple(array.copy() for array in frame) for frame in model] for model in outputs]


def test_identical_outputs_pass(reference, tiny_workload):
    assert first_mismatch(reference, copy(reference), tiny_workload.names) is None
    assert_equivalent(reference, copy(reference), tiny_workload.names)


def test_swapped_frames_fail(reference, tiny_workload):
    swapped = copy(reference)
    swapped[1][0], swapped[1][1] = swapped[1][1], swapped[1][0]
    with pytest.raises(AssertionError, match=rf"model '{tiny_workload.names[1]}' frame 0 output 0: max abs difference"):
        assert_equivalent(reference, swapped, tiny_workload.names)


def test_the_check_is_sensitive_to_frame_order(reference):
    """Any two frames' outputs differ by far more than the tolerance, so no reordering can pass."""
    tolerance = Tolerance()
    for frames in reference:
        scale = max(float(np.abs(f[0]).max()) for f in frames)
        for i in range(len(frames)):
            for j in range(i + 1, len(frames)):
                gap = float(np.abs(frames[i][0] - frames[j][0]).max())
                assert gap > 100 * tolerance.atol_fraction * scale, (i, j, gap)


def test_missing_frame_fails(reference, tiny_workload):
    shorter = copy(reference)
    shorter[0].pop()
    message = first_mismatch(reference, shorter, tiny_workload.names)
    assert message == f"model {tiny_workload.names[0]!r}: expected {len(reference[0])} frames, got {len(reference[0]) - 1}."


def test_missing_model_and_wrong_shape_fail(reference, tiny_workload):
    assert first_mismatch(reference, copy(reference)[:-1], tiny_workload.names).startswith("expected outputs for 3 models")
    reshaped = copy(reference)
    reshaped[2][3] = (reshaped[2][3][0][:1],)
    assert "frame 3 output 0: shape" in first_mismatch(reference, reshaped, tiny_workload.names)


@pytest.mark.parametrize(("relative_noise", "equal"), [(1e-7, True), (1e-5, True), (1e-2, False)])
def test_tolerance_separates_float_noise_from_real_differences(reference, tiny_workload, relative_noise, equal):
    noisy = copy(reference)
    for model in noisy:
        for index, frame in enumerate(model):
            model[index] = tuple(array * (1 + relative_noise) for array in frame)
    assert (first_mismatch(reference, noisy, tiny_workload.names) is None) == equal


# --- TF32 (onnxruntime's CUDA default on Ampere and newer), emulated on the CPU ---

def test_round_to_tf32_keeps_ten_mantissa_bits():
    values = np.array([1.0, 1 + 2**-10, 1 + 2**-11 + 2**-13, 1 + 2**-12, -3.0000001], np.float32)
    assert round_to_tf32(values).tolist() == [1.0, 1 + 2**-10, 1 + 2**-10, 1.0, -3.0]


@pytest.fixture(scope="module")
def float32_and_tf32_outputs(tmp_path_factory):
    """Outputs of two medium-size models (the default `pytest bench` size) at 256x256 on
    adjacent frames of the synthetic video, in float32 and in emulated TF32."""
    video = write_synthetic_video(tmp_path_factory.mktemp("tf32") / "clip.mp4", frames=6)
    frames = frames_tensor(decode_video(video, 6), 256, 256, batch=1)
    models, names = [], []
    for spec in model_set(SIZES["medium"], 2):
        model = build_model(spec)
        runs = []
        for variant in (model, tf32_model(model)):
            session = make_session(variant.SerializeToString(), ThreadSettings(intra_op=2))
            runs.append([(session.run(None, {session.get_inputs()[0].name: frame})[0],) for frame in frames])
        models.append(runs)
        names.append(spec.name)
    float32 = [runs[0] for runs in models]
    tf32 = [runs[1] for runs in models]
    return float32, tf32, names


def test_tf32_arithmetic_exceeds_the_float32_tolerance(float32_and_tf32_outputs):
    """Why CUDA runs get their own tolerance: TF32 kernels differ by more than float32's allows."""
    float32, tf32, names = float32_and_tf32_outputs
    assert first_mismatch(float32, tf32, names, FLOAT32) is not None


def test_the_tf32_tolerance_passes_tf32_arithmetic(float32_and_tf32_outputs):
    float32, tf32, names = float32_and_tf32_outputs
    assert first_mismatch(float32, tf32, names, TF32) is None
    assert first_mismatch(tf32, float32, names, TF32) is None


def test_the_tf32_tolerance_still_fails_swapped_adjacent_frames(float32_and_tf32_outputs):
    float32, tf32, names = float32_and_tf32_outputs
    for frame in range(len(float32[0]) - 1):
        swapped = copy(tf32)
        swapped[0][frame], swapped[0][frame + 1] = swapped[0][frame + 1], swapped[0][frame]
        assert f"frame {frame} output 0" in first_mismatch(float32, swapped, names, TF32)


@pytest.mark.parametrize(("provider", "options", "expected"), [
    ("cpu", {}, FLOAT32),
    ("cuda", {}, TF32),  # onnxruntime's default: use_tf32 on
    ("cuda", {"use_tf32": "1"}, TF32),
    ("cuda", {"use_tf32": "0"}, FLOAT32),
])
def test_tolerance_for_follows_the_provider_and_use_tf32(tiny_workload, provider, options, expected):
    workload = replace(tiny_workload, provider=provider, cuda_options=tuple(sorted(options.items())))
    assert tolerance_for(workload) == expected
