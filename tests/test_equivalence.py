"""The equivalence check: it passes equal outputs and fails reordered, missing or wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

from strategies import Tolerance, assert_equivalent, get_strategy
from strategies.equivalence import first_mismatch


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
