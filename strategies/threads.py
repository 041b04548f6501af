"""`threads`: one thread per model, each running its model over every frame."""

from __future__ import annotations

from strategies.base import (
    Arrivals,
    CallLog,
    CallRecord,
    Outputs,
    empty_outputs,
    wait_for_lanes,
)
from strategies.failures import model_failed
from strategies.lanes import ModelThreads, SessionStrategy


class Threads(ModelThreads, SessionStrategy):
    """The write-up's winner: a thread per model over all frames.

    onnxruntime releases the GIL inside `session.run`, so one model's CPU-side work overlaps
    another's compute. Per-call time rises (the models contend for cores or the GPU) while
    the total falls. Each model runs at its own pace, so frames finish out of step across
    models; a frame is complete when its slowest model is done with it.
    """

    name = "threads"
    models_at_once = True

    def open(self) -> None:
        super().open()
        self.start_pool(len(self.sessions))

    def close(self) -> None:
        self.stop()  # a run still in progress ends at its next frame instead of running every frame
        self.stop_pool()
        super().close()

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        log = CallLog(self.clock)
        outputs = empty_outputs(len(self.sessions), self.workload.frame_count)

        def run_model(model: int) -> None:
            lane = f"thread-{model}"
            for frame in range(self.workload.frame_count):
                arrivals.wait_for(frame, self.clock)  # raises once stopped or past the time limit
                try:
                    outputs[model][frame] = self.run_one(log, model, frame, lane)
                except Exception as error:
                    raise model_failed(self.name, self.workload.names[model], frame, error) from error

        # On the first failure the other models stop at their next frame (wait_for_lanes).
        wait_for_lanes([self.pool.submit(run_model, model) for model in range(len(self.sessions))], arrivals.stop_all)
        return outputs, log.calls
