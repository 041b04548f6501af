"""How a user's --model and --video are read: the @HxW syntax, names, the input plan (layout,
batch, channels, size precedence), preprocessing, shared frames arrays and the dry run; the
memory estimate and refusal, and outputs that cannot be compared."""

from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path

import numpy as np
import psutil
import pytest
from onnx import TensorProto

from fixtures.user import (
    InputPlan,
    ModelRequest,
    UserInputError,
    largest_frame_shape,
    load_models,
    load_user_input,
    model_names,
    model_option,
    plan_input,
    preprocess,
)
from fixtures.video import frames_tensor, write_synthetic_video
from fixtures.workloads import (
    SESSION_INPUT_FACTOR,
    SESSION_WEIGHT_FACTOR,
    MemoryRefused,
    available_memory,
    check_memory,
    estimate_memory,
)
from strategies import Workload, get_strategy
from tests.helpers.equivalence import mismatch_with_serial
from tests.helpers.input_models import write_image_model


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Three different RGB frames (a gradient whose phase moves), 40x60."""
    ys, xs = np.mgrid[0:40, 0:60]
    return [np.stack([(xs * 4 + 30 * i) % 256, (ys * 6) % 256, np.full_like(xs, 50 * i)], -1).astype(np.uint8)
            for i in range(3)]


# ---------------------------------------------------------------- --model PATH[@HxW]

@pytest.mark.parametrize(("text", "path", "size"), [
    ("det.onnx", "det.onnx", None),
    ("det.onnx@48x192", "det.onnx", (48, 192)),
    ("models/cls.onnx@48X320", "models/cls.onnx", (48, 320)),
    ("team@work/det.onnx", "team@work/det.onnx", None),  # '@' in a folder name is part of the path
], ids=["plain", "size", "capital-x", "at-in-folder"])
def test_model_request_parses_path_and_size(text, path, size):
    assert ModelRequest.parse(text) == ModelRequest(Path(path), size)


def test_an_existing_file_with_at_in_its_name_is_a_path(tmp_path):
    odd = tmp_path / "det@v2.onnx"
    odd.write_bytes(b"x")
    assert ModelRequest.parse(str(odd)) == ModelRequest(odd, None)


@pytest.mark.parametrize("text", ["det.onnx@48by192", "det.onnx@0x192", "det.onnx@48x", "det.onnx@", "@48x48",
                                  "det.onnx@-4x8"],
                         ids=["by", "zero", "no-width", "empty", "no-path", "negative"])
def test_malformed_sizes_are_refused_with_the_text_and_an_example(text):
    with pytest.raises(UserInputError, match=r"expected PATH or PATH@HEIGHTxWIDTH .* e\.g\. det\.onnx@48x192") as info:
        ModelRequest.parse(text)
    assert repr(text) in str(info.value)
    with pytest.raises(argparse.ArgumentTypeError):
        model_option(text)


def test_names_are_file_stems_and_duplicates_are_told_apart():
    requests = [ModelRequest(Path("a/det.onnx"), (32, 32)), ModelRequest(Path("b/det.onnx")),
                ModelRequest(Path("cls.onnx"), (48, 192)), ModelRequest(Path("cls.onnx"), (48, 320)),
                ModelRequest(Path("rec.onnx")), ModelRequest(Path("rec.onnx")), ModelRequest(Path("x/y.onnx")),
                ModelRequest(Path("p/x/z.onnx")), ModelRequest(Path("q/x/z.onnx"))]
    assert model_names(requests) == ["a/det", "b/det", "cls@48x192", "cls@48x320", "rec#1", "rec#2", "y",
                                     "x/z#1", "x/z#2"]


# ---------------------------------------------------------------- the input plan

def plan(shape, size=None, frame_size=(256, 256), batch=4, dtype="tensor(float)") -> InputPlan:
    return plan_input("--model m.onnx", "x", shape, dtype, size=size, frame_size=frame_size, batch=batch)


@pytest.mark.parametrize(("shape", "size", "expected"), [
    (["N", 3, "H", "W"], None, ("NCHW", 4, 3, 256, 256)),        # all dynamic: --batch and --frame-size
    (["N", 3, "H", "W"], (64, 96), ("NCHW", 4, 3, 64, 96)),      # @HxW beats --frame-size
    (["N", 3, 48, "W"], (48, 320), ("NCHW", 4, 3, 48, 320)),     # fixed height, dynamic width
    (["N", 3, 48, "W"], None, ("NCHW", 4, 3, 48, 256)),          # dynamic width from --frame-size
    ([1, 3, 224, 224], None, ("NCHW", 1, 3, 224, 224)),          # fixed model: its own size and batch
    (["N", 1, 32, 32], None, ("NCHW", 4, 1, 32, 32)),            # grey
    (["N", 224, 224, 3], None, ("NHWC", 4, 3, 224, 224)),
    (["N", "H", "W", 1], (20, 30), ("NHWC", 4, 1, 20, 30)),
    (["N", "C", "H", "W"], None, ("NCHW", 4, 3, 256, 256)),      # nothing to tell: NCHW, RGB
    (["N", 3, 32, 3], None, ("NCHW", 4, 3, 32, 3)),              # ambiguous: NCHW
    (["N", 224, 224, "C"], None, ("NHWC", 4, 3, 224, 224)),
    ([None, 3, "?", "?"], (48, 192), ("NCHW", 4, 3, 48, 192)),
], ids=["dynamic", "at-size", "fixed-height", "width-from-frame-size", "fixed", "grey", "nhwc", "nhwc-grey",
        "dynamic-channels", "ambiguous", "nhwc-dynamic-channels", "unnamed-dims"])
def test_plan_reads_layout_and_sizes(shape, size, expected):
    got = plan(shape, size)
    assert (got.layout, got.batch, got.channels, got.height, got.width) == expected
    assert got.name == "x"


@pytest.mark.parametrize(("shape", "dtype", "size", "message"), [
    (["N", 3, "H", "W"], "tensor(uint8)", None, r"has type tensor\(uint8\); fanbench feeds float32 images only"),
    (["N", 3, 32], "tensor(float)", None, r"\[N, 3, 32\] has 3 dimensions; fanbench feeds 4-D images"),
    (["N", 4, 32, 32], "tensor(float)", None, r"no channel dimension of 3 \(RGB\) or 1 \(grey\)"),
    ([1, 3, 224, 224], "tensor(float)", (50, 50), r"has a fixed height of 224, but @50x50 asks for 50; give @224x224"),
    (["N", 3, 48, "W"], "tensor(float)", (32, 100), r"has a fixed height of 48, but @32x100 asks for 32; give @48x100"),
], ids=["uint8", "rank-3", "four-channels", "fixed-size-contradicted", "fixed-height-contradicted"])
def test_plan_refuses_inputs_it_cannot_feed(shape, dtype, size, message):
    with pytest.raises(UserInputError, match=message) as info:
        plan(shape, size, dtype=dtype)
    assert str(info.value).startswith("--model m.onnx: input 'x'")


@pytest.mark.parametrize(("layout", "channels"), [("NCHW", 3), ("NHWC", 3), ("NCHW", 1), ("NHWC", 1)])
def test_preprocess_resizes_lays_out_and_batches(images, layout, channels):
    tensor = preprocess(images, InputPlan("x", layout, 2, channels, 16, 24))
    assert tensor.dtype == np.float32
    assert tensor.flags.c_contiguous
    assert tensor.shape == (3, *InputPlan("x", layout, 2, channels, 16, 24).shape)
    assert 0.0 <= tensor.min()
    assert tensor.max() <= 1.0
    np.testing.assert_array_equal(tensor[:, 0], tensor[:, 1])  # the frame repeated into the batch
    assert not np.array_equal(tensor[0], tensor[1])  # frames differ
    if channels == 3:  # RGB order kept: red (channel 0) is the moving gradient, blue is 50 * frame
        blue = tensor[1, 0, 2] if layout == "NCHW" else tensor[1, 0, ..., 2]
        np.testing.assert_allclose(blue, 50 / 255, atol=1e-6)


# ---------------------------------------------------------------- loading

def test_models_with_the_same_preprocessing_share_one_frames_array(tmp_path, images):
    a = write_image_model(tmp_path / "a.onnx", ["N", 3, "H", "W"])
    b = write_image_model(tmp_path / "b.onnx", ["N", 3, 32, 48])
    c = write_image_model(tmp_path / "c.onnx", ["N", 3, "H", "W"])
    d = write_image_model(tmp_path / "d.onnx", ["N", "H", "W", 3])
    models = load_models([ModelRequest(a, (32, 48)), ModelRequest(b), ModelRequest(c), ModelRequest(d, (32, 48))],
                         images, frame_size=(64, 64), batch=2)
    assert [m.name for m in models] == ["a", "b", "c", "d"]
    assert models[0].frames is models[1].frames  # same key (32, 48, NCHW, 2, 3): one array
    assert models[2].frames is not models[0].frames
    assert models[2].frames.shape == (3, 2, 3, 64, 64)
    assert models[3].frames.shape == (3, 2, 32, 48, 3)


def test_every_classic_strategy_equals_serial_on_mixed_user_models(tmp_path, images):
    requests = [ModelRequest(write_image_model(tmp_path / "nchw.onnx", ["N", 3, "H", "W"]), (16, 16)),
                ModelRequest(write_image_model(tmp_path / "grey.onnx", ["N", "H", "W", 1]), (8, 12)),
                ModelRequest(write_image_model(tmp_path / "fixed.onnx", [1, 3, 8, 8], fixed_features=192))]
    workload = Workload(load_models(requests, images, frame_size=(32, 32), batch=2))
    with get_strategy("serial")(workload) as serial:
        reference = serial.run().outputs
    assert reference[2][0][0].shape == (1, 2)
    for name in ("threads", "asyncio"):
        with get_strategy(name)(workload) as strategy:
            assert mismatch_with_serial(workload, reference, strategy.run().outputs) is None, name


def test_the_dry_run_reports_model_shape_and_onnxruntime_message(tmp_path, images):
    path = write_image_model(tmp_path / "gemm.onnx", ["N", 3, "H", "W"], fixed_features=3 * 8 * 8)
    load_models([ModelRequest(path, (8, 8))], images, frame_size=(8, 8), batch=1)  # the size it was built for
    with pytest.raises(UserInputError, match=r"onnxruntime cannot run the model on input 'x' of shape "
                                             r"\[1, 3, 10, 8\] \(NCHW\): \[ONNXRuntimeError\]") as info:
        load_models([ModelRequest(path, (10, 8))], images, frame_size=(8, 8), batch=1)
    assert str(info.value).startswith(f"--model {path}@10x8: ")
    assert "\n" not in str(info.value)


def test_a_multi_input_model_is_refused_naming_its_inputs(tmp_path, images):
    path = write_image_model(tmp_path / "two.onnx", ["N", 3, "H", "W"], extra_inputs=["mask"])
    with pytest.raises(UserInputError, match=r"the model has 2 inputs \('x' \[N, 3, H, W\], 'mask' \[N, 3, H, W\]\)"):
        load_models([ModelRequest(path)], images, frame_size=(8, 8), batch=1)


def test_uint8_input_is_refused(tmp_path, images):
    path = write_image_model(tmp_path / "u8.onnx", ["N", 3, "H", "W"], elem_type=TensorProto.UINT8)
    with pytest.raises(UserInputError, match=r"has type tensor\(uint8\)"):
        load_models([ModelRequest(path)], images, frame_size=(8, 8), batch=1)


def test_user_video_is_decoded_and_feeds_the_models(tmp_path):
    video = write_synthetic_video(tmp_path / "street.mp4", 4, height=48, width=64)
    model = write_image_model(tmp_path / "m.onnx", ["N", 3, "H", "W"])
    loaded = load_user_input([ModelRequest(model)], [video], frames=6, loop=True, frame_size=(16, 16), batch=1)
    assert loaded is not None
    assert loaded.images is not None
    assert loaded.models is not None
    assert len(loaded.images) == 6
    assert loaded.images[0].shape == (48, 64, 3)
    np.testing.assert_array_equal(loaded.images[4], loaded.images[0])  # looped
    assert loaded.models[0].frames.shape == (6, 1, 3, 16, 16)
    video_only = load_user_input([], [video], frames=3, loop=False, frame_size=(16, 16), batch=1)
    assert video_only is not None
    assert video_only.models is None
    assert len(video_only.images) == 3
    assert load_user_input([], [], frames=3, loop=False, frame_size=(16, 16), batch=1) is None


def test_several_videos_give_their_frames_one_after_another_one_per_camera(tmp_path):
    """--video a --video b: a's --frames frames, then b's (each looped on its own), whatever their sizes."""
    small = write_synthetic_video(tmp_path / "small.mp4", 2, height=48, width=64)
    large = write_synthetic_video(tmp_path / "large.mp4", 3, height=72, width=96)
    model = write_image_model(tmp_path / "m.onnx", ["N", 3, "H", "W"])
    loaded = load_user_input([ModelRequest(model)], [small, large], frames=3, loop=True, frame_size=(16, 16), batch=1)
    assert loaded is not None
    assert loaded.images is not None
    assert loaded.models is not None
    assert [image.shape for image in loaded.images] == [(48, 64, 3)] * 3 + [(72, 96, 3)] * 3
    np.testing.assert_array_equal(loaded.images[2], loaded.images[0])  # small.mp4 looped within its own frames
    assert loaded.models[0].frames.shape == (6, 1, 3, 16, 16)
    assert largest_frame_shape([small, large]) == (72, 96, 3)


# ---------------------------------------------------------------- memory: estimate, refusal, preprocessing peak

MIB = 2**20


def test_the_estimate_counts_frames_their_shared_copy_video_outputs_and_sessions():
    estimate = estimate_memory(10, [(4, 3, 256, 256)], (240, 320, 3), [MIB, 2 * MIB], output_bytes=1600)
    frame = 4 * 3 * 256 * 256 * 4  # 3 MiB: batch 4 of 3x256x256 float32
    assert estimate.parts == {
        "preprocessed frames": 10 * frame, "their shared copy": 10 * frame, "decoded video": 10 * 240 * 320 * 3,
        "outputs": 2 * 10 * 1600,
        "model sessions": 2 * sum(int(SESSION_WEIGHT_FACTOR * size) + SESSION_INPUT_FACTOR * frame
                                  for size in (MIB, 2 * MIB))}
    assert estimate.total == sum(estimate.parts.values())


def test_a_run_that_cannot_fit_is_refused_with_one_line_saying_what_to_lower():
    estimate = estimate_memory(1000, [(4, 3, 256, 256)], (240, 320, 3), [MIB])
    check_memory(estimate, available=estimate.total)  # fits exactly: no refusal
    with pytest.raises(MemoryRefused) as refused:
        check_memory(estimate, available=estimate.total - 1)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("this run needs about 6.1 GiB of memory (preprocessed frames 2.9 GiB, their shared "
                              "copy 2.9 GiB, decoded video 219.7 MiB, model sessions")
    assert message.endswith("is available; lower --frames (about 6.2 MiB per frame), --frame-size or @HxW, or --batch.")


def test_the_probe_takes_the_smaller_of_free_memory_and_a_containers_limit(tmp_path):
    (tmp_path / "memory.max").write_text("1073741824\n")  # a container limited to 1 GiB, 256 MiB of it used
    (tmp_path / "memory.current").write_text(f"{256 * MIB}\n")
    assert available_memory(tmp_path) == 768 * MIB
    (tmp_path / "memory.max").write_text("max\n")
    assert 768 * MIB < available_memory(tmp_path) <= psutil.virtual_memory().total
    assert available_memory(tmp_path / "absent") <= psutil.virtual_memory().total


@pytest.mark.parametrize("size", [None, (20000, 20000)], ids=["frames", "at-size"])
def test_user_models_that_cannot_fit_are_refused_before_the_video_is_decoded(tmp_path, monkeypatch, size):
    model = write_image_model(tmp_path / "m.onnx", ["N", 3, "H", "W"])
    video = write_synthetic_video(tmp_path / "clip.mp4", 2, height=48, width=64)
    monkeypatch.setattr("fixtures.workloads.available_memory", lambda: 64 * MIB)  # a faked probe

    def no_decoding(*args, **kwargs):
        raise AssertionError("the video was decoded before the memory check")

    monkeypatch.setattr("fixtures.user.decode_video", no_decoding)
    frames = 10 if size else 100_000
    with pytest.raises(UserInputError, match=r"^this run needs about .* but only 64\.0 MiB is available; lower --frames"):
        load_user_input([ModelRequest(model, size)], [video], frames=frames, loop=True, frame_size=(64, 64), batch=1)


def test_a_sequence_of_maps_output_is_refused_at_set_up(tmp_path, images):
    path = write_image_model(tmp_path / "zipmap.onnx", ["N", 3, "H", "W"], zipmap=True)
    with pytest.raises(UserInputError, match=r"output 'y' is seq\(map\(int64,tensor\(float\)\)\); .*'zipmap': False"):
        load_models([ModelRequest(path)], images, frame_size=(8, 8), batch=1)


@pytest.mark.parametrize("channels", [3, 1])
def test_preprocessing_holds_the_frames_once(images, channels):
    many = [images[i % 3] for i in range(40)]
    plan = InputPlan("x", "NCHW", 4, channels, 64, 64)
    tracemalloc.start()
    try:
        frames = preprocess(many, plan)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames.shape == (40, *plan.shape)
    assert peak < 1.25 * frames.nbytes  # a list of every frame, then their stack, would peak at twice
    assert peak < frames.nbytes + 4 * frames[0].nbytes
    np.testing.assert_array_equal(frames_tensor(many, 64, 64, 4), preprocess(many, InputPlan("x", "NCHW", 4, 3, 64, 64)))
