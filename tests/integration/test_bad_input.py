"""Bad --model/--video/--frames/--fps/--scenario/--report-dir input ends `pytest bench` before
any timing, with one line naming the file or value and the problem, exit status 4 (usage error), no traceback, and nothing left
behind (no child process, no shared memory, no file). Run in-process with pytester, as a
user runs it: `pytest bench --model ...`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import psutil
import pytest

from fixtures.video import write_synthetic_video
from tests.helpers.input_models import write_image_model
from tests.helpers.run_bench import bench_inprocess

pytest_plugins = ["pytester"]



def write_inputs(folder: Path) -> None:
    """Every file the table below refers to."""
    good = write_image_model(folder / "good.onnx", ["N", 3, "H", "W"])
    write_image_model(folder / "gemm.onnx", ["N", 3, "H", "W"], fixed_features=3 * 32 * 32)  # only 32x32 runs
    write_image_model(folder / "fixed.onnx", ["N", 3, 32, 32])
    write_image_model(folder / "two.onnx", ["N", 3, "H", "W"], extra_inputs=["mask"])
    write_image_model(folder / "nchw4.onnx", ["N", 4, 32, 32])
    write_image_model(folder / "zipmap.onnx", ["N", 3, "H", "W"], zipmap=True)
    (folder / "empty.onnx").write_bytes(b"")
    (folder / "text.onnx").write_text("this is not a model\n")
    (folder / "truncated.onnx").write_bytes(good.read_bytes()[:60])
    (folder / "folder.onnx").mkdir()
    write_synthetic_video(folder / "short.mp4", 3, height=32, width=48)
    (folder / "text.mp4").write_text("this is not a video\n")
    # A valid AVI container holding no frame at all.
    writer = cv2.VideoWriter(str(folder / "zero.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (48, 32))
    writer.release()


# (id, arguments after `pytest bench`, a regular expression one output line must match)
CASES = [
    ("model-missing", ["--model", "absent.onnx"], r"ERROR: --model absent\.onnx: no such file\."),
    ("model-is-a-folder", ["--model", "folder.onnx"], r"ERROR: --model folder\.onnx: not a file\."),
    ("model-empty", ["--model", "empty.onnx"], r"ERROR: --model empty\.onnx: the file is empty, not an ONNX model\."),
    ("model-text", ["--model", "text.onnx"],
     r"ERROR: --model text\.onnx: not a valid ONNX model onnxruntime can load \(.*Protobuf parsing failed.*\)\."),
    ("model-truncated", ["--model", "truncated.onnx"],
     r"ERROR: --model truncated\.onnx: not a valid ONNX model onnxruntime can load \(.*\)\."),
    ("model-two-inputs", ["--model", "two.onnx"],
     r"ERROR: --model two\.onnx: the model has 2 inputs \('x' \[N, 3, H, W\], 'mask' \[N, 3, H, W\]\); "
     r"fanbench feeds one image input per model\."),
    ("model-four-channels", ["--model", "nchw4.onnx"],
     r"ERROR: --model nchw4\.onnx: input 'x' \[N, 4, 32, 32\]: no channel dimension of 3"),
    ("size-the-model-cannot-run", ["--model", "gemm.onnx@50x50", "--batch", "1"],
     r"ERROR: --model gemm\.onnx@50x50: onnxruntime cannot run the model on input 'x' of shape \[1, 3, 50, 50\] "
     r"\(NCHW\): \[ONNXRuntimeError\].*Gemm"),
    ("size-against-fixed-input", ["--model", "fixed.onnx@50x50"],
     r"ERROR: --model fixed\.onnx@50x50: input 'x' \[N, 3, 32, 32\] has a fixed height of 32, but @50x50 asks for "
     r"50; give @32x32 or leave @HxW out\."),
    ("size-malformed", ["--model", "good.onnx@48by192"],
     r"argument --model: --model 'good\.onnx@48by192': expected PATH or PATH@HEIGHTxWIDTH .*'48by192' after '@' is not a size\."),
    ("size-zero", ["--model", "good.onnx@0x192"], r"argument --model: .*'0x192' after '@' is not a size\."),
    ("second-model-bad", ["--model", "good.onnx", "--model", "absent.onnx"], r"ERROR: --model absent\.onnx: no such file\."),
    ("video-missing", ["--video", "absent.mp4"], r"ERROR: --video absent\.mp4: no such video file\."),
    ("video-undecodable", ["--video", "text.mp4"], r"ERROR: --video text\.mp4: OpenCV cannot open this file as a video\."),
    ("video-zero-frames", ["--video", "zero.avi"], r"ERROR: --video zero\.avi: the video has no decodable frames\."),
    ("video-shorter-than-frames", ["--video", "short.mp4", "--frames", "5"],
     r"ERROR: --video short\.mp4: the video has only 3 frames but 5 were asked for; ask for fewer frames or pass "
     r"--loop-video to repeat it\."),
    ("video-is-a-folder", ["--video", "folder.onnx"],
     r"ERROR: --video folder\.onnx: is a directory, not a video file; give the path of the video file itself\."),
    ("video-bad-with-model", ["--model", "good.onnx", "--video", "absent.mp4"],
     r"ERROR: --video absent\.mp4: no such video file\."),
    ("fps-too-low", ["--fps", "1e-300"],
     r"argument --fps: must be 0 \(offline only\) or a finite frame rate of at least 0\.001 \(one frame every "
     r"1000 s\), got '1e-300'\."),
    ("sample-rate-too-low", ["--sample-rate", "1e-300"],
     r"argument --sample-rate: must be between 0\.01 and 1000 samples per second, got '1e-300'\."),
    ("fps-not-a-number", ["--fps", "nan"], r"argument --fps: must be 0 \(offline only\) or a finite frame rate"),
    ("streaming-without-fps", ["--fps", "0", "--scenario", "streaming"],
     r"ERROR: --scenario streaming needs a frame rate: give --fps above 0\."),
    ("report-dir-is-a-file", ["--report-dir", "text.mp4"],
     r"ERROR: --report-dir text\.mp4: exists and is not a directory; give a directory \(or --no-report\)\."),
    ("report-dir-under-a-file", ["--report-dir", "text.mp4/report"],
     r"ERROR: --report-dir text\.mp4/report: text\.mp4 is a file, so no directory can be made under it"),
    ("report-dir-unwritable", ["--report-dir", "/sys/fanbench-report"],
     r"ERROR: --report-dir /sys/fanbench-report: cannot create anything in /sys \(.+\); give a writable directory "
     r"\(or --no-report\)\."),
    ("model-zipmap-output", ["--model", "zipmap.onnx"],
     r"ERROR: --model zipmap\.onnx: output 'y' is seq\(map\(int64,tensor\(float\)\)\); fanbench compares numeric "
     r"tensor outputs only: export the model without sequence or map outputs"),
    # Runs that cannot fit in memory: refused before any video is written or decoded.
    ("frames-beyond-memory", ["--frames", "1000000000"],
     r"ERROR: this run needs about [\d.]+ [GT]iB of memory \(preprocessed frames .*\) but only .* is available; "
     r"lower --frames \(about [\d.]+ MiB per frame\), --frame-size or @HxW, or --batch\."),
    ("frame-size-beyond-memory", ["--frame-size", "99999x100000"], r"ERROR: this run needs about [\d.]+ [GT]iB of memory"),
    ("model-size-beyond-memory", ["--model", "good.onnx@99999x100000"],
     r"ERROR: this run needs about [\d.]+ [GT]iB of memory"),
    ("frames-zero", ["--frames", "0", "--model", "good.onnx"], r"argument --frames: must be at least 1, got 0\."),
    ("frames-negative", ["--frames", "-3", "--video", "short.mp4"], r"argument --frames: must be at least 1, got -3\."),
    ("frames-not-a-number", ["--frames", "many"], r"argument --frames: expected a whole number, got 'many'\."),
]


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def _shared_memory() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.parametrize(("args", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_ends_the_run_early_with_one_clear_line(pytester: pytest.Pytester, args, message):
    write_inputs(pytester.path)
    files_before = {path for path in pytester.path.rglob("*") if path.is_file()}
    children, shared = _children(), _shared_memory()

    # History on (the default): a run that stops early must not save one either.
    result = bench_inprocess(pytester, *args)

    output = result.outlines + result.errlines
    assert result.ret == pytest.ExitCode.USAGE_ERROR, "\n".join(output)
    assert [line for line in output if re.search(message, line)], "\n".join(output)
    assert not [line for line in output if "Traceback" in line or line.startswith(("E   ", "____"))], "\n".join(output)
    assert not [line for line in output if re.search(r"\d+ (passed|failed)", line)]  # nothing ran
    # pytest-benchmark makes an empty .benchmarks folder on every run, --no-history too: no file in it.
    assert {path for path in pytester.path.rglob("*") if path.is_file()} == files_before
    assert _children() <= children
    assert _shared_memory() <= shared
