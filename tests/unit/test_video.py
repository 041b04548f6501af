"""The synthetic video: written and decoded for real, every frame different, bad files refused."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fixtures.video import VideoError, decode_video, frames_tensor, to_batch, write_synthetic_video
from tests.helpers.run_bench import ROOT


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_synthetic_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=6, height=48, width=64)


def test_decodes_every_written_frame_as_rgb(clip):
    images = decode_video(clip, 6)
    assert len(images) == 6
    assert all(image.shape == (48, 64, 3) and image.dtype == np.uint8 for image in images)


def test_every_frame_differs(clip):
    images = decode_video(clip, 6)
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i].astype(int) - images[j].astype(int)).mean() > 5, (i, j)


def test_video_is_deterministic(tmp_path, clip):
    again = write_synthetic_video(tmp_path / "again.mp4", frames=6, height=48, width=64)
    for first, second in zip(decode_video(clip, 6), decode_video(again, 6), strict=True):
        np.testing.assert_array_equal(first, second)


def test_short_video_is_refused_unless_looped(clip):
    with pytest.raises(VideoError, match="has only 6 frames but 9 were asked for"):
        decode_video(clip, 9)
    looped = decode_video(clip, 9, loop=True)
    assert len(looped) == 9
    np.testing.assert_array_equal(looped[6], looped[0])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda d: d / "missing.mp4", "no such video file", id="missing"),
        pytest.param(lambda d: (d / "text.mp4").write_text("not a video") and d / "text.mp4",
                     "cannot open this file as a video|no decodable frames", id="text-file"),
        pytest.param(lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4",
                     "cannot open this file as a video|no decodable frames", id="empty-file"),
    ],
)
def test_bad_videos_name_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(VideoError, match=message) as error:
        decode_video(path, 1)
    assert str(path) in str(error.value)


def test_zero_frames_is_refused(clip):
    with pytest.raises(VideoError, match="at least 1, got 0"):
        decode_video(clip, 0)


def test_to_batch_is_the_write_ups_preprocessing():
    image = np.zeros((10, 20, 3), np.uint8)
    image[..., 0] = 255  # red
    batch = to_batch(image, 4, 6, batch=3)
    assert batch.shape == (3, 3, 4, 6)
    assert batch.dtype == np.float32
    assert batch.flags.c_contiguous
    np.testing.assert_array_equal(batch[:, 0], 1.0)
    np.testing.assert_array_equal(batch[:, 1:], 0.0)
    assert to_batch(image, 4, 6, batch=1, layout="NHWC").shape == (1, 4, 6, 3)
    with pytest.raises(ValueError, match="layout must be 'NCHW' or 'NHWC', got 'CHW'"):
        to_batch(image, 4, 6, 1, layout="CHW")


def test_frames_tensor_stacks_frames_in_order(clip):
    images = decode_video(clip, 3)
    tensor = frames_tensor(images, 8, 8, batch=2)
    assert tensor.shape == (3, 2, 3, 8, 8)
    for index, image in enumerate(images):
        np.testing.assert_array_equal(tensor[index], to_batch(image, 8, 8, 2))


def test_an_interrupted_write_leaves_no_partial_video(tmp_path, monkeypatch):
    """Ctrl-C while the synthetic video is written (a large --frames): the partial file is removed."""
    import cv2

    rectangle, drawn = cv2.rectangle, []

    def interrupt_at_the_fifth_frame(*args, **kwargs):
        drawn.append(1)
        if len(drawn) == 5:
            raise KeyboardInterrupt  # as Python's SIGINT handler raises it in the running code
        return rectangle(*args, **kwargs)

    monkeypatch.setattr(cv2, "rectangle", interrupt_at_the_fifth_frame)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_video(tmp_path / "long.mp4", frames=1000, height=48, width=64)
    assert len(drawn) == 5  # it was interrupted midway, after writing frames
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_no_video_gets_fanbenchs_one_line_without_ffmpegs(tmp_path):
    """FFmpeg printed 'moov atom not found' lines before fanbench's own (issue 21). A fresh interpreter:
    OpenCV reads FFmpeg's log level once, when its FFmpeg backend starts."""
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n")
    probe = (f"from fixtures.video import decode_video, video_frame_shape\nprint(video_frame_shape({str(text)!r}))\n"
             f"decode_video({str(text)!r}, 2)")
    env = {key: value for key, value in os.environ.items() if key != "OPENCV_FFMPEG_LOGLEVEL"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"fixtures.video.VideoError: {text}: OpenCV cannot open this file as a video."
    assert "moov atom" not in done.stderr
    assert "[mov," not in done.stderr
    # The control: OpenCV alone, in the same environment, lets FFmpeg print them.
    bare = subprocess.run([sys.executable, "-c", f"import cv2; cv2.VideoCapture({str(text)!r})"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert "moov atom not found" in bare.stderr
