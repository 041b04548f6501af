"""`merged`: every model combined into one ONNX graph with one shared input, run by one session."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import onnx

from strategies.base import Arrivals, Strategy, StrategyUnavailable, release
from strategies.lanes import model_failed
from strategies.records import CallLog, CallRecord, Outputs, empty_outputs
from strategies.runtime.merge import MergeError, merge_models, prefix_for
from strategies.runtime.sessions import io_names, provider_used


class Merged(Strategy):
    """One `session.run` per frame for all models, branches of one graph; needs every model to take the same
    input array, and every model's time is the merged call's time (docs/strategies.md)."""

    name = "merged"

    def open(self) -> None:
        models = self.workload.models
        shared = models[0].frames
        different = [model.name for model in models if model.frames is not shared]
        if different:
            raise StrategyUnavailable(
                f"merged: the models must share one input array, but {', '.join(map(repr, different))} "
                f"take(s) a different one than {models[0].name!r}; one merged graph has one input.")
        try:
            merged = merge_models([onnx.load(str(model.path)) for model in models], self.workload.names)
        except MergeError as error:
            raise StrategyUnavailable(f"merged: {error}") from error
        self.directory = Path(tempfile.mkdtemp(prefix="fanbench_merged_"))
        path = self.directory / "merged.onnx"
        onnx.save(merged.model, str(path))
        self.session = self.workload.sessions.open(path, self.settings)
        self.input_name = io_names(self.session)[0]
        order = {name: index for index, name in enumerate(io_names(self.session)[1])}
        # Where each model's outputs sit in the merged call's output list.
        self.output_slots = [[order[name] for name in names] for names in merged.outputs]
        self.providers_used = [provider_used(self.session)]

    def close(self) -> None:
        self.session = None
        release(self, "directory", lambda directory: shutil.rmtree(directory, ignore_errors=True))

    def _culprit(self, message: str) -> str:
        """The model whose prefixed node onnxruntime's error names, else all of them."""
        named = [name for index, name in enumerate(self.workload.names) if prefix_for(index) in message]
        return named[0] if len(named) == 1 else "+".join(self.workload.names)

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        models = len(self.workload.models)
        outputs = empty_outputs(models, self.frame_count(arrivals))
        frames = self.workload.models[0].frames
        for frame in range(self.frame_count(arrivals)):
            arrivals.wait_for(frame, self.clock)
            start = self.clock()
            try:
                results = self.session.run(None, {self.input_name: frames[arrivals.source(frame)]})
            except Exception as error:
                raise model_failed(self.name, self._culprit(str(error)), frame, error) from error
            end = self.clock()
            for model, slots in enumerate(self.output_slots):
                outputs[model][frame] = tuple(results[slot] for slot in slots)
                log.calls.append(CallRecord(model, frame, 1, start, end, "merged"))
        return outputs, log.calls
