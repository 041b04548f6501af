"""The CUDA provider: its options as users may set them, and whether a session really runs on it.

Options are the CUDA execution provider's own (see onnxruntime's CUDA-ExecutionProvider
documentation); they are checked here, before any session exists, so a typo fails with a
message that names the option and lists the valid ones, instead of onnxruntime's error
from deep inside session creation (or, worse, a silent fall-back to the CPU).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from strategies.runtime.sessions import ProviderError, make_session, onnxruntime
from strategies.settings import ThreadSettings


class CudaOptionError(ValueError):
    """A CUDA provider option that fanbench does not accept; the message says what is allowed."""


@dataclass(frozen=True)
class CudaOption:
    """One CUDA provider option: its kind decides how a value is checked and normalised."""

    name: str
    kind: str  # "int", "bool" or "choice"
    help: str
    minimum: int = 0
    choices: tuple[str, ...] = ()

    def normalise(self, text: str) -> str:
        """The value as onnxruntime expects it; CudaOptionError when it is not valid."""
        value = text.strip()
        if self.kind == "int":
            if not value.isdigit() or int(value) < self.minimum:
                raise CudaOptionError(
                    f"CUDA option {self.name}: expected a whole number >= {self.minimum}, got {text!r}.")
            return str(int(value))
        if self.kind == "bool":
            lowered = value.lower()
            if lowered in ("1", "true", "yes", "on"):
                return "1"
            if lowered in ("0", "false", "no", "off"):
                return "0"
            raise CudaOptionError(f"CUDA option {self.name}: expected 1/0 (or true/false), got {text!r}.")
        if value not in self.choices:
            raise CudaOptionError(f"CUDA option {self.name}: expected one of {', '.join(self.choices)}, got {text!r}.")
        return value


KNOWN_OPTIONS: dict[str, CudaOption] = {option.name: option for option in (
    CudaOption("device_id", "int", "the GPU to run on (default 0)"),
    CudaOption("gpu_mem_limit", "int", "size limit of the device memory arena, in bytes", minimum=1),
    CudaOption("arena_extend_strategy", "choice", "how the memory arena grows",
               choices=("kNextPowerOfTwo", "kSameAsRequested")),
    CudaOption("cudnn_conv_algo_search", "choice", "how cuDNN convolution algorithms are chosen (default EXHAUSTIVE)",
               choices=("EXHAUSTIVE", "HEURISTIC", "DEFAULT")),
    CudaOption("do_copy_in_default_stream", "bool", "copy between host and device in the default stream (default 1)"),
    CudaOption("cudnn_conv_use_max_workspace", "bool", "let cuDNN use as much workspace memory as it wants"),
    CudaOption("cudnn_conv1d_pad_to_nc1d", "bool", "pad 1-D convolutions as [N,C,1,D] instead of [N,C,D,1]"),
    CudaOption("use_tf32", "bool", "allow TF32 math on Ampere and newer (changes results slightly)"),
    CudaOption("prefer_nhwc", "bool", "prefer NHWC kernels where onnxruntime has them"),
    CudaOption("use_ep_level_unified_stream", "bool", "one stream for the whole provider instead of one per run"),
    CudaOption("tunable_op_enable", "bool", "use TunableOp kernels"),
    CudaOption("tunable_op_tuning_enable", "bool", "let TunableOp tune online"),
    CudaOption("tunable_op_max_tuning_duration_ms", "int", "time limit for TunableOp tuning per op"),
    CudaOption("enable_skip_layer_norm_strict_mode", "bool", "strict (slower, more accurate) SkipLayerNorm"),
)}

# Options fanbench sets itself, or that cannot be given as text; each with the reason.
REFUSED_OPTIONS: dict[str, str] = {
    "enable_cuda_graph": "the cuda_graph strategy sets it on its own sessions; on other strategies' sessions "
                         "(run from several threads, or with changing buffers) a captured graph would be wrong",
    "user_compute_stream": "it is the address of a CUDA stream that must exist in the benchmark process, "
                           "which a command line cannot provide",
    "has_user_compute_stream": "onnxruntime derives it from user_compute_stream, which cannot be given here",
}


def parse_cuda_option(text: str) -> tuple[str, str]:
    """'key=value' -> (key, normalised value), checked against the known options."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not value.strip():
        raise CudaOptionError(f"expected KEY=VALUE (e.g. cudnn_conv_algo_search=HEURISTIC), got {text!r}.")
    if key in REFUSED_OPTIONS:
        raise CudaOptionError(f"CUDA option {key} cannot be set here: {REFUSED_OPTIONS[key]}.")
    if key not in KNOWN_OPTIONS:
        raise CudaOptionError(f"unknown CUDA option {key!r}; known options: {', '.join(sorted(KNOWN_OPTIONS))}.")
    return key, KNOWN_OPTIONS[key].normalise(value)


def cuda_options(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Parsed options as the sorted pairs a Workload holds; an option given twice is an error."""
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            raise CudaOptionError(f"CUDA option {key} given twice ({seen[key]!r} and {value!r}); give it once.")
        seen[key] = KNOWN_OPTIONS[key].normalise(value) if key in KNOWN_OPTIONS else value
    return tuple(sorted(seen.items()))


def device_id(options: Mapping[str, str]) -> int:
    return int(options.get("device_id", "0"))


def _probe_model() -> bytes:
    """A one-convolution model: enough to make the CUDA provider load cuDNN and launch a kernel."""
    weight = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], "fanbench_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fanbench")
    model.ir_version = 9  # as fixtures/models.py: every supported onnxruntime loads it
    return model.SerializeToString()


def cuda_unavailable_reason(options: Mapping[str, str] | None = None) -> str | None:
    """None when a session really runs on CUDA here (created, checked, and run once); else why not."""
    ort = onnxruntime()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} here has no CUDAExecutionProvider "
                f"(providers: {', '.join(ort.get_available_providers())}); install `.[gpu]` on a CUDA host.")
    try:
        session = make_session(_probe_model(), ThreadSettings(intra_op=1), "cuda", dict(options or {}))
        (output,) = session.run(None, {"x": np.ones((1, 1, 8, 8), np.float32)})
    except ProviderError as error:
        return str(error)
    except Exception as error:  # a driver or library failure while creating or running: say which
        return f"a session on CUDAExecutionProvider failed: {type(error).__name__}: {error}"
    if float(output[0, 0, 4, 4]) != 9.0:  # a 3x3 box of ones over ones, away from the border
        return f"a session on CUDAExecutionProvider ran but computed {float(output[0, 0, 4, 4])} instead of 9."
    return None
