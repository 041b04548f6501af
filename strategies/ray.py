"""`ray`: one Ray actor per model, frames shared through Ray's object store (docs/ray.md). Ray is optional
(`pip install -e '.[ray]'`), imported only when a `ray` benchmark runs."""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import time
from typing import Any

from strategies.base import Arrivals, Strategy, StrategyError, StrategyUnavailable, release
from strategies.lanes import model_failed
from strategies.records import CallRecord, Outputs, empty_outputs
from strategies.runtime.ray_instance import POLL_S, RayInstance, discard_ray, one_line, ray_instance
from strategies.runtime.sessions import SessionFactory, io_names, provider_used
from strategies.settings import ThreadSettings


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise StrategyUnavailable("ray: Ray is not installed; install it with `pip install -e '.[ray]'`.") from None
    return ray


#: An actor not ready after this long fails `open` (its process could not start, or Ray could not place it).
ACTOR_START_S = 300.0


def default_gpu_share(models: int, gpus: float) -> float:
    """Each actor's share of a GPU by default on CUDA: 1 / ceil(models / GPUs), as few to a GPU as fit.
    GPUs/models (0.75 for 4 models on 3 GPUs) would leave an actor unplaceable: Ray puts a fractional
    share on one GPU, and two of 0.75 do not fit on one."""
    whole = max(1, math.floor(gpus))
    return 1 / math.ceil(models / whole)


class ModelActor:
    """Runs in the actor's process: its own session, timed with time.time, which the driver maps onto its clock."""

    def __init__(self, path: str, settings: ThreadSettings, sessions: SessionFactory):
        self.session = sessions.open(path, settings)
        self.input_name = io_names(self.session)[0]

    def describe(self) -> dict[str, Any]:
        import ray
        context = ray.get_runtime_context()
        return {"provider": provider_used(self.session), "pid": os.getpid(), "node_id": context.get_node_id(),
                "node_ip": ray.util.get_node_ip_address(), "gpus": [str(gpu) for gpu in ray.get_gpu_ids()]}

    def run(self, frame: Any) -> tuple[Outputs, float, float]:
        start = time.time()
        outputs = tuple(self.session.run(None, {self.input_name: frame}))
        return outputs, start, time.time()


class RayActors(Strategy):
    """One Ray actor per model; each frame is put into the object store once, for every actor reading it.
    `address`: join a running cluster instead of the process's local instance; `gpus_per_actor`: each
    actor's GPU share (default on CUDA: default_gpu_share; 0 on the CPU)."""

    name = "ray"
    stops_early = False  # a stopped run closes the actors (answers in flight): probes run to the end
    models_at_once = True

    @classmethod
    def unavailable(cls, provider: str) -> str | None:
        # Looked up, not imported: nothing of Ray is imported before the first `ray` benchmark.
        return None if importlib.util.find_spec("ray") else "Ray is not installed (pip install -e '.[ray]')"

    def __init__(self, workload: Any, settings: ThreadSettings | None = None, clock: Any = time.perf_counter,
                 address: str | None = None, gpus_per_actor: float | None = None):
        super().__init__(workload, settings, clock)
        self.address = address
        # None on CUDA until `open` sees how many GPUs Ray has (default_gpu_share).
        self.gpus_per_actor = 0.0 if gpus_per_actor is None and workload.provider != "cuda" else gpus_per_actor
        self.actors: list[Any] | None = None
        self.placement: list[dict[str, Any]] = []
        self.startup_s: float | None = None
        self.ray_address = ""
        self.instance: RayInstance | None = None

    def open(self) -> None:
        ray = import_ray()
        try:
            self._open(ray)
        except BaseException:
            self.close()
            raise

    def _open(self, ray: Any) -> None:
        instance = self.instance = ray_instance(ray, self.address)
        self.startup_s, self.ray_address = instance.startup_s, instance.address
        if self.workload.provider == "cuda":
            gpus = ray.cluster_resources().get("GPU", 0)
            if gpus <= 0:
                raise StrategyUnavailable("ray: this run's provider is CUDA but the Ray cluster has no GPU.")
            if self.gpus_per_actor is None:
                self.gpus_per_actor = default_gpu_share(len(self.workload.models), gpus)
        # num_cpus=0: the thread settings decide the cores a session uses; Ray's CPU count would
        # otherwise refuse to place more actors than cores.
        actor_class = ray.remote(num_cpus=0, num_gpus=self.gpus_per_actor, max_restarts=0)(ModelActor)
        self.actors = [actor_class.remote(str(model.path), self.settings, self.workload.sessions)
                       for model in self.workload.models]
        self.placement = []
        deadline = time.monotonic() + ACTOR_START_S
        for name, actor in zip(self.workload.names, self.actors, strict=True):
            ref = actor.describe.remote()
            while True:
                self._check_instance("while its actors started")
                if time.monotonic() > deadline:
                    raise StrategyError(f"{self.name}: model {name!r}: its actor was not ready within "
                                        f"{ACTOR_START_S:g} s (Ray could not start or place it).")
                try:
                    self.placement.append(ray.get(ref, timeout=POLL_S))
                    break
                except ray.exceptions.GetTimeoutError:
                    continue
                except ray.exceptions.RayError as error:
                    raise StrategyError(f"{self.name}: model {name!r}: its actor could not start: "
                                        f"{one_line(error)}") from None
        instance.track()  # the actors' processes (and any worker Ray started meanwhile) belong to the instance
        self.providers_used = [each["provider"] for each in self.placement]
        self.lanes = [f"ray-{each['node_ip']}-{each['pid']}" for each in self.placement]

    def _check_instance(self, when: str) -> None:
        """Fail in one line, the broken instance removed at once, when its GCS server or raylet is gone:
        Ray would otherwise end this process after 60 s (GCS) or at its next object-store call (raylet)."""
        instance = self.instance
        problem = None if instance is None else instance.lost()
        if problem is not None:
            self.instance = None
            self.actors = None  # their processes go with the instance; Ray can no longer kill them
            discard_ray()
            raise StrategyError(f"{self.name}: {problem} {when}; the instance was removed (a later ray benchmark "
                                "starts a new one).")

    @property
    def pids(self) -> list[int]:  # in model order (tests kill them)
        return [each["pid"] for each in self.placement]

    def info(self) -> dict[str, Any]:
        ray = import_ray()
        return {"ray_version": ray.__version__, "ray_address": self.address or "local",
                "ray_gcs_address": self.ray_address, "ray_startup_s": self.startup_s,
                "ray_gpus_per_actor": self.gpus_per_actor,
                "ray_placement": [{"model": name, "node_ip": each["node_ip"], "node_id": each["node_id"],
                                   "pid": each["pid"], "gpus": each["gpus"]}
                                  for name, each in zip(self.workload.names, self.placement, strict=False)]}

    def close(self) -> None:
        # Only this run's actors: a joined cluster is left as it was; the local instance lives
        # until the process exits (shutdown_ray), shared by the run's other benchmarks.
        release(self, "actors", kill_actors)

    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        if self.actors is None:
            raise StrategyError(f"{self.name}: the strategy is closed (an earlier run lost an actor or was "
                                "interrupted, which closes it); open a new one.")
        ray = import_ray()
        # The actors time their calls with time.time; this maps it onto the strategy's clock.
        offset = self.clock() - time.time()
        models = self.workload.models
        pending: list[list[Any]] = [[] for _ in models]
        try:
            for frame in range(self.frame_count(arrivals)):
                arrivals.wait_for(frame, self.clock)
                self._check_instance(f"on frame {frame}")  # before ray.put: a lost raylet would end this process
                refs = {}  # models that read the same array get the same reference
                for model, (spec, actor) in enumerate(zip(models, self.actors, strict=True)):
                    key = id(spec.frames)
                    if key not in refs:
                        refs[key] = ray.put(spec.frames[arrivals.source(frame)])
                    pending[model].append(actor.run.remote(refs[key]))
            outputs = empty_outputs(len(models), self.frame_count(arrivals))
            calls = []
            for model, refs_of_model in enumerate(pending):
                for frame, ref in enumerate(refs_of_model):
                    result, start, end = self._answer(ray, ref, arrivals, model, frame)
                    outputs[model][frame] = result
                    calls.append(CallRecord(model, frame, 1, start + offset, end + offset, self.lanes[model]))
            return outputs, calls
        except BaseException:
            self.close()  # answers in flight: nothing reliable can follow (as processes_shm does)
            raise

    def _answer(self, ray: Any, ref: Any, arrivals: Arrivals, model: int, frame: int) -> Any:
        name = self.workload.names[model]
        while True:
            arrivals.check_deadline(self.clock)
            self._check_instance(f"on frame {frame}")
            try:
                return ray.get(ref, timeout=POLL_S)
            except ray.exceptions.GetTimeoutError:
                continue
            except ray.exceptions.RayActorError as error:
                pid = self.placement[model]["pid"]
                raise StrategyError(f"{self.name}: model {name!r}: its actor (pid {pid}) died on frame {frame}: "
                                    f"{one_line(error)}") from None
            except ray.exceptions.RayTaskError as error:
                raise model_failed(self.name, name, frame, one_line(error)) from None


def kill_actors(actors: list[Any]) -> None:
    ray = import_ray()
    for actor in actors:
        with contextlib.suppress(Exception):  # already dead, or the cluster is gone
            ray.kill(actor, no_restart=True)
