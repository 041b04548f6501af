"""The equivalence check: it passes equal outputs and fails reordered, missing or wrong ones; its
tolerance is measured per model (noise floor, discrimination) and says when a model cannot tell
frames apart; NaN and infinity are compared as values."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.measure.equivalence import (
    MARGIN,
    NOISE_FLOOR,
    NOISE_K,
    ModelCheck,
    RoundCheck,
    arithmetic,
    calibrate,
    first_mismatch,
    measure_calibration,
)
from fixtures.models import SIZES, build_model, model_set
from fixtures.real_models import find_real_model, missing_reason
from fixtures.user import ModelRequest, load_models, synthetic_images
from fixtures.video import decode_video, frames_tensor, write_synthetic_video
from strategies import RunResult, ThreadSettings, Workload, get_strategy
from strategies.records import empty_outputs
from strategies.runtime.sessions import make_session
from tests.helpers.equivalence import FLOAT32, TF32, assert_equal_to_serial, fixed_tolerance
from tests.helpers.tf32 import round_to_tf32, tf32_model


@pytest.fixture(scope="module")
def reference(tiny_workload):
    with get_strategy("serial")(tiny_workload) as serial:
        return serial.run().outputs


def copy(outputs):
    return [[tuple(array.copy() for array in frame) for frame in model] for model in outputs]


def test_identical_outputs_pass(reference, tiny_workload):
    assert first_mismatch(reference, copy(reference), tiny_workload.names, FLOAT32) is None
    assert_equal_to_serial(tiny_workload, reference, copy(reference))


def test_swapped_frames_fail(reference, tiny_workload):
    swapped = copy(reference)
    swapped[1][0], swapped[1][1] = swapped[1][1], swapped[1][0]
    with pytest.raises(AssertionError, match=rf"model '{tiny_workload.names[1]}' frame 0 output 0: max abs difference"):
        assert_equal_to_serial(tiny_workload, reference, swapped)


def test_the_check_is_sensitive_to_frame_order(reference):
    """Any two frames' outputs differ by far more than the tolerance, so no reordering can pass."""
    tolerance = FLOAT32
    for frames in reference:
        scale = max(float(np.abs(f[0]).max()) for f in frames)
        for i in range(len(frames)):
            for j in range(i + 1, len(frames)):
                gap = float(np.abs(frames[i][0] - frames[j][0]).max())
                assert gap > 100 * tolerance.atol_fraction * scale, (i, j, gap)


def test_missing_frame_fails(reference, tiny_workload):
    shorter = copy(reference)
    shorter[0].pop()
    message = first_mismatch(reference, shorter, tiny_workload.names, FLOAT32)
    assert message == f"model {tiny_workload.names[0]!r}: expected {len(reference[0])} frames, got {len(reference[0]) - 1}."


def test_missing_model_and_wrong_shape_fail(reference, tiny_workload):
    missing = first_mismatch(reference, copy(reference)[:-1], tiny_workload.names, FLOAT32)
    assert missing.startswith("expected outputs for 3 models")
    reshaped = copy(reference)
    reshaped[2][3] = (reshaped[2][3][0][:1],)
    assert "frame 3 output 0: shape" in first_mismatch(reference, reshaped, tiny_workload.names, FLOAT32)


@pytest.mark.parametrize(("relative_noise", "equal"), [(1e-7, True), (1e-5, True), (1e-2, False)])
def test_tolerance_separates_float_noise_from_real_differences(reference, tiny_workload, relative_noise, equal):
    noisy = copy(reference)
    for model in noisy:
        for index, frame in enumerate(model):
            model[index] = tuple(array * (1 + relative_noise) for array in frame)
    assert (first_mismatch(reference, noisy, tiny_workload.names, FLOAT32) is None) == equal


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
def test_the_arithmetic_follows_the_provider_and_use_tf32(tiny_workload, provider, options, expected):
    workload = replace(tiny_workload, provider=provider, cuda_options=tuple(sorted(options.items())))
    assert arithmetic(workload) == expected.precision  # what the measured tolerance's noise floor is sized for
    assert fixed_tolerance(workload) == expected


# --- NaN and infinity: compared as values; finite values with the tolerance ---

def _with_non_finite(reference):
    odd = copy(reference)
    first = odd[0][0][0]
    first.flat[0], first.flat[1], first.flat[2] = -np.inf, np.nan, np.inf
    return odd


def test_non_finite_values_in_the_same_places_pass_without_warnings(reference, tiny_workload):
    odd = _with_non_finite(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from an infinite scale or tolerance
        assert first_mismatch(odd, copy(odd), tiny_workload.names, FLOAT32) is None


@pytest.mark.parametrize("garbage", ["random", "finite_for_inf", "nan_for_finite", "inf_sign", "scaled"])
def test_garbage_never_passes_against_a_reference_with_non_finite_values(reference, tiny_workload, garbage):
    odd = _with_non_finite(reference)
    bad = copy(odd)
    array = bad[0][0][0]
    if garbage == "random":  # completely different outputs, the reference's -inf included
        bad[0] = [tuple(np.random.default_rng(1).normal(size=a.shape).astype(a.dtype) for a in f) for f in bad[0]]
    elif garbage == "finite_for_inf":
        array.flat[0] = 0.0
    elif garbage == "nan_for_finite":
        array.flat[5] = np.nan
    elif garbage == "inf_sign":
        array.flat[0] = np.inf
    else:  # finite values 10% off: an infinite value must not make the tolerance infinite
        bad[0][0] = tuple(np.where(np.isfinite(a), a * 1.1, a) for a in bad[0][0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = first_mismatch(odd, bad, tiny_workload.names, FLOAT32)
    assert message is not None
    assert message.startswith(f"model {tiny_workload.names[0]!r} frame 0 output 0: ")


# --- the measured tolerance: noise floor, discrimination, a tolerance between them ---

def test_tf32_noise_is_measured_and_the_tolerance_lies_between_noise_and_discrimination(float32_and_tf32_outputs):
    float32, tf32, names = float32_and_tf32_outputs
    calibration = calibrate(tf32, float32, names, "tf32", "float32")
    for check in calibration.models:
        assert 0 < check.noise < check.tolerance < check.separation, check
        assert check.tells_frames_apart
        assert check.verdict() == "tells adjacent frames apart"
    assert first_mismatch(tf32, float32, names, calibration.tolerances) is None
    for frame in range(len(tf32[0]) - 1):
        swapped = copy(float32)
        swapped[1][frame], swapped[1][frame + 1] = swapped[1][frame + 1], swapped[1][frame]
        assert f"model {names[1]!r} frame {frame} output 0" in first_mismatch(tf32, swapped, names, calibration.tolerances)
    shifted = copy(float32)  # a dropped frame, the last one repeated to keep the count
    shifted[0] = shifted[0][1:] + shifted[0][-1:]
    assert first_mismatch(tf32, shifted, names, calibration.tolerances) is not None


def sigmoid_map_model() -> onnx.ModelProto:
    """A text detector's output on frames without text: a sigmoid probability map near zero
    (about 5e-5) that barely depends on the frame. Its pre-activation sums pixels offset by
    4000, where TF32 keeps a step of 2: TF32's rounding moves the output by about 1% relative,
    more than the frames' differences (as the PP-OCR detector on a GPU, issue figures)."""
    weights = np.full((1, 3, 3, 3), -10.0 / (27 * 4000), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["frames", "offset"], ["lifted"]),
         helper.make_node("Conv", ["lifted", "weights"], ["logits"]),
         helper.make_node("Sigmoid", ["logits"], ["probabilities"])], "near_zero_map",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 1, 30, 30])],
        initializer=[numpy_helper.from_array(np.array(4000.0, np.float32), "offset"),
                     numpy_helper.from_array(weights, "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.fixture(scope="module")
def near_zero_outputs(tmp_path_factory):
    video = write_synthetic_video(tmp_path_factory.mktemp("sigmoid") / "clip.mp4", frames=8)
    frames = frames_tensor(decode_video(video, 8), 32, 32, batch=1)
    model = sigmoid_map_model()
    runs = []
    for variant in (model, tf32_model(model)):
        session = make_session(variant.SerializeToString(), ThreadSettings(intra_op=1))
        runs.append([[(session.run(None, {"frames": frame})[0],) for frame in frames]])
    return runs[0], runs[1], ["det"]


def test_a_model_that_cannot_tell_frames_apart_is_said_so_instead_of_failing(near_zero_outputs):
    float32, tf32, names = near_zero_outputs
    assert float(np.max(np.abs(float32[0][0][0]))) < 1e-4  # near zero, as on frames without text
    assert first_mismatch(float32, tf32, names, TF32) is not None  # the false failure of a fixed tolerance
    calibration = calibrate(float32, tf32, names, "tf32", "tf32 emulation")
    (check,) = calibration.models
    assert check.noise >= check.separation_median
    assert not check.tells_frames_apart
    assert check.verdict().startswith("cannot tell these frames apart")
    assert "cannot tell these frames apart" in calibration.lines()[0]
    assert first_mismatch(float32, tf32, names, calibration.tolerances) is None
    # Garbage still fails: outputs doubled, zeroed, or from another model entirely.
    for garbage in (lambda a: a * 2, np.zeros_like, lambda a: np.full_like(a, 0.5)):
        wrong = [[tuple(garbage(a) for a in frame) for frame in float32[0]]]
        assert first_mismatch(float32, wrong, names, calibration.tolerances) is not None


def test_the_calibration_is_measured_on_the_workload_and_recorded(reference, tiny_workload):
    calibration = measure_calibration(tiny_workload, reference)
    assert calibration.second_way.startswith(f"{NOISE_K} frames per call")
    stored = calibration.as_dict()
    assert set(stored["models"]) == set(tiny_workload.names)
    for check in calibration.models:
        assert ModelCheck.from_dict(check.name, stored["models"][check.name]) == check
        assert check.tells_frames_apart
        assert check.tolerance >= MARGIN * NOISE_FLOOR["float32"]
    swapped = copy(reference)
    swapped[2][1], swapped[2][2] = swapped[2][2], swapped[2][1]
    assert "frame 1 output 0" in first_mismatch(reference, swapped, tiny_workload.names, calibration.tolerances)


@pytest.mark.skipif(missing_reason("det", "cls") is not None, reason=missing_reason("det", "cls") or "")
def test_real_models_tell_frames_apart_and_a_strategy_passes_their_measured_check():
    requests = [ModelRequest(find_real_model("det"), (64, 64)), ModelRequest(find_real_model("cls"), (48, 192))]
    workload = Workload(load_models(requests, synthetic_images(6), frame_size=(256, 256), batch=1))
    with get_strategy("serial")(workload) as serial:
        real_reference = serial.run().outputs
    calibration = measure_calibration(workload, real_reference)
    with get_strategy("threads")(workload) as threads:
        assert first_mismatch(real_reference, threads.run().outputs, workload.names, calibration.tolerances) is None
    for model, check in enumerate(calibration.models):
        assert check.tells_frames_apart, check.line()
        swapped = copy(real_reference)
        swapped[model][2], swapped[model][3] = swapped[model][3], swapped[model][2]
        assert first_mismatch(real_reference, swapped, workload.names, calibration.tolerances) is not None


def test_each_round_is_checked_once_then_its_outputs_dropped(reference, tiny_workload):
    good, bad = copy(reference), copy(reference)
    bad[0][0], bad[0][1] = bad[0][1], bad[0][0]
    runs = [RunResult(outputs, [], 0.0, 1.0) for outputs in (good, bad, copy(reference))]
    check = RoundCheck(reference, tiny_workload.names, FLOAT32)
    check(runs[:1])
    assert check.mismatch is None
    assert runs[0].outputs == empty_outputs(len(reference), len(reference[0]))
    check(runs)
    assert "frame 0 output 0" in check.mismatch
    assert all(all(frame == () for model in run.outputs for frame in model) for run in runs)


def test_frames_with_identical_outputs_have_no_order_to_check(reference, tiny_workload):
    still = [[model[0]] * 3 for model in reference]  # a camera on a still scene: every frame the same
    calibration = calibrate(still, still, tiny_workload.names)
    for check in calibration.models:
        assert (check.pairs, check.identical_pairs, check.tells_frames_apart) == (2, 2, False)
        assert check.verdict() == "no two adjacent frames give different outputs: there is no frame order to check"
        assert "no differing frames" in check.line()
    assert first_mismatch(still, still, tiny_workload.names, calibration.tolerances) is None


def test_a_model_whose_adjacent_frames_mostly_give_equal_outputs_says_how_few_pairs_were_checked():
    """An int64 label that changes once in 6 frames (and NaN maps, which compare only their finite values)
    had a median separation of 0 while the line said "tells adjacent frames apart"."""
    labels = [[(np.array([0 if frame < 3 else 7], np.int64),) for frame in range(6)]]
    (check,) = calibrate(labels, labels, ["labels"]).models
    assert (check.pairs, check.identical_pairs, check.separation_median) == (5, 4, 0.0)
    assert check.verdict() == ("tells apart the 1 of 5 adjacent frame pairs whose outputs differ; the other 4 give "
                               "equal outputs, so their order is not checked")
    assert "1 of 5 adjacent frame pairs differ, by >= 1" in check.line()
    assert "median" not in check.line()
