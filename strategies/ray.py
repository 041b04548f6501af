"""`ray`: one Ray actor per model, frames shared through Ray's object store (docs/ray.md).

Ray is an optional dependency (`pip install -e '.[ray]'`): it is imported inside the
strategy only, so the library works without it and the strategy is then skipped.
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from strategies.base import Arrivals, Strategy, StrategyError, StrategyUnavailable, release
from strategies.lanes import model_failed
from strategies.records import CallRecord, Outputs, empty_outputs
from strategies.runtime.sessions import io_names, make_session, provider_used
from strategies.settings import ThreadSettings, usable_cores

#: How often the driver wakes while it waits for an actor's answer, to honour stop and deadline.
POLL_S = 0.2


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise StrategyUnavailable("ray: Ray is not installed; install it with `pip install -e '.[ray]'`.") from None
    return ray


@dataclass
class RayInstance:
    """The Ray this process uses, one per process, shared by every `ray` benchmark: a local instance it
    started (`temp_dir`: its files, removed at exit) or a running cluster it joined (`temp_dir` None)."""

    temp_dir: str | None
    startup_s: float  # ray.init's duration: starting the local instance, or joining the cluster
    address: str  # the GCS address

    @property
    def joined(self) -> bool:
        return self.temp_dir is None


_instance: RayInstance | None = None
_instance_lock = threading.Lock()

# Recent Ray starts a `ray start` cluster with token authentication by default, and a driver joining it
# sends the token (~/.ray/auth_token, or RAY_AUTH_TOKEN) only when this variable says so; without it the
# GCS refuses the driver and ray.init fails after seconds of retries (docs/ray.md).
AUTH_MODE = "RAY_AUTH_MODE"
AUTH_HINT = (f"; if the cluster uses token authentication (`ray start`'s default in recent Ray), set {AUTH_MODE}=token "
             "in this environment (docs/ray.md)")


def local_ray_temp_dir() -> str:
    """A short directory of the run's own: Ray's socket paths under it must stay below ~107 characters."""
    base = tempfile.gettempdir()
    return tempfile.mkdtemp(prefix="fb-ray-", dir=base if len(base) <= 40 else "/tmp")


def init_ray(ray: Any, **options: Any) -> Any:
    """`ray.init`, keeping the caller's SIGTERM handler: Ray installs one that exits at once
    (SystemExit), which would bypass the suite's own (SIGTERM ends a run like Ctrl-C)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        return ray.init(log_to_driver=False, configure_logging=False, **options)
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def ray_instance(ray: Any, address: str | None) -> RayInstance:
    """The process's Ray, started (address None: a local instance) or joined (`address`) once, outside every
    timed region; shut down, or left, at exit (shutdown_ray)."""
    global _instance
    with _instance_lock:
        if _instance is None:
            temp_dir = local_ray_temp_dir() if address is None else None
            started = time.perf_counter()
            try:
                if temp_dir is not None:
                    context = init_ray(ray, num_cpus=usable_cores(), include_dashboard=False, _temp_dir=temp_dir)
                else:
                    context = init_ray(ray, address=address)
            except ConnectionError as error:  # only joining connects (Ray retries for seconds first)
                raise StrategyError(f"ray: could not join the Ray cluster at {address!r}: {one_line(error)}"
                                    f"{AUTH_HINT if AUTH_MODE not in os.environ else ''}") from None
            except BaseException:
                if temp_dir is not None:
                    shutil.rmtree(temp_dir, ignore_errors=True)
                raise
            _instance = RayInstance(temp_dir, time.perf_counter() - started,
                                    context.address_info.get("gcs_address", "local"))
            atexit.register(shutdown_ray)
        elif _instance.joined != (address is not None):
            had = "joined a cluster" if _instance.joined else "started a local Ray instance"
            raise StrategyError(f"ray: this process already {had}; one Ray per process: give every ray benchmark "
                                "of a run the same --ray-address.")
        return _instance


def shutdown_ray() -> None:
    """Stop the local Ray instance this process started (its processes end, its files go), or leave the
    cluster it joined (the driver disconnects; the cluster runs on, and Ray ends the actors of this job)."""
    global _instance
    with _instance_lock:
        instance, _instance = _instance, None
        if instance is None:
            return
        import ray
        ray.shutdown()
        if instance.temp_dir is not None:
            shutil.rmtree(instance.temp_dir, ignore_errors=True)


def default_gpu_share(models: int, gpus: float) -> float:
    """Each actor's share of a GPU when --ray-gpus-per-actor is not given on CUDA: the models spread evenly over
    the GPUs Ray sees, as few to a GPU as fit: 1 / ceil(models / GPUs) (1/models on one GPU, a whole GPU each
    when there are as many GPUs as models). A share such as GPUs/models (0.75 for 4 models on 3 GPUs) would leave
    an actor unplaceable: Ray puts a fractional share on one GPU, and two of 0.75 do not fit on one."""
    whole = max(1, math.floor(gpus))
    return 1 / math.ceil(models / whole)


def run_machine_info(infos: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What a run's `ray` benchmarks (their `info()`, in run order) say of the Ray they ran on, for the saved
    run's machine_info; None when no `ray` benchmark ran. The run has one Ray (ray_instance), so its version,
    address and start-up are the first benchmark's; each benchmark starts its own actors, which Ray may place
    elsewhere, so nodes and each model's placements (node, GPU ids) are gathered over all of them."""
    if not infos:
        return None
    first = infos[0]
    nodes: dict[str, str] = {}
    placement: dict[str, list[dict[str, Any]]] = {}
    for info in infos:
        for each in info["ray_placement"]:
            nodes[each["node_id"]] = each["node_ip"]
            where = {"node_ip": each["node_ip"], "node_id": each["node_id"], "gpus": list(each["gpus"])}
            if where not in placement.setdefault(each["model"], []):
                placement[each["model"]].append(where)
    return {"version": first["ray_version"], "address": first["ray_gcs_address"],
            "joined": first["ray_address"] != "local", "requested_address": first["ray_address"],
            "startup_s": first["ray_startup_s"], "gpus_per_actor": first["ray_gpus_per_actor"],
            "nodes": [{"node_ip": ip, "node_id": node} for node, ip in sorted(nodes.items(), key=lambda n: (n[1], n[0]))],
            "placement": placement}


class ModelActor:
    """Runs in the actor's process: its own session, timed with the wall clock both sides agree on."""

    def __init__(self, path: str, settings: ThreadSettings, provider: str, provider_options: dict[str, str]):
        self.session = make_session(path, settings, provider, provider_options)
        self.input_name = io_names(self.session)[0]

    def describe(self) -> dict[str, Any]:
        import ray
        context = ray.get_runtime_context()
        return {"provider": provider_used(self.session), "pid": os.getpid(), "node_id": context.get_node_id(),
                "node_ip": ray.util.get_node_ip_address(), "gpus": [str(gpu) for gpu in ray.get_gpu_ids()]}

    def run(self, frame: Any) -> tuple[Outputs, float, float]:
        # time.time, not perf_counter: the driver converts it to its own clock (see RayActors._execute).
        start = time.time()
        outputs = tuple(self.session.run(None, {self.input_name: frame}))
        return outputs, start, time.time()


class RayActors(Strategy):
    """One Ray actor per model, each holding its own session; each frame is put into Ray's object
    store once, and the same reference goes to every actor reading that input.

    What it is for: spreading models over several GPUs or machines with the engine teams already
    use. Its costs on one host: a task submission and an object-store round trip per call, and a
    process per model (outside the clock). By default the first `open` of the process starts a
    local Ray instance (usable cores, no dashboard, files under a temporary directory of its own),
    shared by every later `ray` benchmark and shut down at exit; `address` joins a running cluster
    instead and leaves it running. `gpus_per_actor`: each actor's share of a GPU (default on CUDA:
    default_gpu_share of the GPUs Ray sees, so that models share a GPU only when there are fewer
    GPUs than models; 0 on the CPU).
    A frame is complete when every actor has returned it (per-frame, so it streams).
    """

    name = "ray"
    stops_early = False  # a stopped run closes the actors (answers in flight): probes run to the end
    models_at_once = True

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

    def open(self) -> None:
        ray = import_ray()
        try:
            self._open(ray)
        except BaseException:
            self.close()
            raise

    def _open(self, ray: Any) -> None:
        instance = ray_instance(ray, self.address)
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
        self.actors = [actor_class.remote(str(model.path), self.settings, self.workload.provider,
                                          self.workload.provider_options) for model in self.workload.models]
        self.placement = []
        for name, actor in zip(self.workload.names, self.actors, strict=True):
            try:
                self.placement.append(ray.get(actor.describe.remote()))
            except ray.exceptions.RayError as error:
                raise StrategyError(f"{self.name}: model {name!r}: its actor could not start: {one_line(error)}") from None
        self.providers_used = [each["provider"] for each in self.placement]
        self.lanes = [f"ray-{each['node_ip']}-{each['pid']}" for each in self.placement]

    @property
    def pids(self) -> list[int]:
        """The actors' process ids, in model order (tests kill them)."""
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
        """One actor's answer, waking every POLL_S for the stop request and the deadline."""
        name = self.workload.names[model]
        while True:
            arrivals.check_deadline(self.clock)
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
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already dead, or the cluster is gone
            pass


def one_line(error: BaseException) -> str:
    """The first meaningful line of a Ray error (Ray's messages carry tracebacks)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(error)):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
