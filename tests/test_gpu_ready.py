"""The CUDA path, checked on the CPU as far as a CPU can (issue 28): the graphed forward
takes every method's call, checkpoints resume on another device, CPU-only presets, TF32
and determinism as explicit settings, no host sync in a method's step, GPU slots named
by the physical card."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from tiny import make, tiny_state
from torch.cuda._utils import _get_device_index

from harness import config as cfg
from harness import devices, graphs, jobs, methods, rundir, search, sweep
from harness.benchmark import Benchmark
from harness.errors import UsageError
from harness.methods.base import StepContext
from harness.train import SearchState, weight_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import host_syncs  # noqa: E402 - a benchmark script, importable from its folder

ALL_METHODS = sorted(methods.registry())


def resolve(preset: str, **overrides: str) -> cfg.Config:
    options = methods.method_class("darts").Options
    return cfg.resolve(preset, "darts", overrides, options, 0, methods.option_keys())


# --- presets, TF32, determinism ----------------------------------------------------------
@pytest.mark.parametrize("preset", ["ci", "smoke"])
def test_ci_and_smoke_presets_run_on_the_cpu_whatever_the_machine(preset: str) -> None:
    assert resolve(preset).device == "cpu"


def test_tf32_is_an_explicit_recorded_choice_off_by_default() -> None:
    assert resolve("paper").tf32 is False
    assert resolve("paper").to_dict()["tf32"] is False  # recorded in config.json
    assert cfg.BEFORE_FIELD["tf32"] is False
    assert resolve("paper", tf32="true").tf32 is True
    with pytest.raises(UsageError, match=r"tf32=true: tf32 must be false with dtype=float64"):
        resolve("paper", tf32="true", dtype="float64")


@pytest.fixture
def cuda_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[torch.device]]:
    """CUDA's process settings, restored afterwards; ``set_device`` recorded, not done."""
    chosen: list[torch.device] = []

    def set_device(device: torch.device) -> None:  # refuses what torch refuses
        chosen.append(torch.device("cuda", _get_device_index(device)))

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    for module, name in (
        (torch.backends.cudnn, "allow_tf32"),
        (torch.backends.cudnn, "benchmark"),
        (torch.backends.cuda.matmul, "allow_tf32"),
    ):
        monkeypatch.setattr(module, name, getattr(module, name))
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield chosen
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


@pytest.mark.parametrize("tf32", [False, True])
def test_a_cuda_run_sets_its_device_workspace_and_tf32_before_it_starts(
    cuda_settings: list[torch.device], tf32: bool
) -> None:
    config = resolve("paper", device="cuda:1", tf32=str(tf32).lower())
    search.configure_torch(config, torch.device("cuda:1"))
    assert cuda_settings == [torch.device("cuda:1")]  # graphs and streams on GPU 1
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == search.CUBLAS_WORKSPACE
    assert torch.backends.cudnn.allow_tf32 is tf32
    assert torch.backends.cuda.matmul.allow_tf32 is tf32
    assert torch.backends.cudnn.benchmark is False


def test_a_users_cublas_setting_is_kept(
    cuda_settings: list[torch.device], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    search.configure_torch(resolve("paper", device="cuda"), torch.device("cuda"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert cuda_settings == []  # "cuda" alone: the current device, left as it is


# --- checkpoints across devices ------------------------------------------------------------
class OnAnotherDevice:
    """A generator state as ``torch.load(map_location=cuda)`` leaves it: not a CPU tensor
    (``torch.set_rng_state`` refuses it); ``.to(device="cpu")`` gives the bytes back."""

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        device = kwargs.get("device", args[0] if args else None)
        assert torch.device(device).type == "cpu", "moved anywhere but to the CPU"
        return self.state.to(*args, **kwargs)


def test_a_checkpoint_loaded_for_another_device_resumes(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    overrides = {"epochs": "2", "rank_samples": "0", "train_size": "64", "valid_size": "64"}
    overrides |= {"gap_eval_size": "32", "gap_eval_batch": "32"}
    plan = sweep.plan(["darts"], [0], "smoke", overrides, tmp_path)
    benchmark = Benchmark.load(data_dir)
    (first,) = sweep.run_jobs(plan, data_dir, benchmark)
    (plan[0].directory / "final.json").unlink()  # killed after the last checkpoint

    loaded = rundir.RunDir.checkpoint

    def for_another_device(self: rundir.RunDir, device: torch.device) -> dict[str, Any] | None:
        state = loaded(self, device)
        return state and {**state, "torch_rng": OnAnotherDevice(state["torch_rng"])}

    monkeypatch.setattr(rundir.RunDir, "checkpoint", for_another_device)
    capsys.readouterr()
    (again,) = sweep.run_jobs(plan, data_dir, benchmark)
    err = capsys.readouterr().err
    assert "resumed" in err and "does not fit" not in err and "epoch 0" not in err
    assert again["status"] == "finished" and again["epochs_sha256"] == first["epochs_sha256"]


def test_the_cuda_generator_is_saved_and_restored(
    float64_default: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SDARTS's noise and DrNAS's Dirichlet draw from the GPU's generator: a resumed run
    must continue its stream, so the checkpoint holds it (as CPU bytes)."""
    state = tiny_state(make("darts"))
    cuda = torch.device("cuda:1")
    generator = {"state": torch.arange(16, dtype=torch.uint8)}
    restored: list[tuple[torch.Tensor, torch.device]] = []
    monkeypatch.setattr(SearchState, "device", lambda self: cuda)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: generator["state"].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((s, device)))

    saved = state.checkpoint([])
    assert torch.equal(saved["cuda_rng"], generator["state"])
    state.restore({**saved, "cuda_rng": OnAnotherDevice(saved["cuda_rng"])})
    ((bytes_, device),) = restored
    assert device == cuda and bytes_.dtype == torch.uint8 and bytes_.device.type == "cpu"
    assert torch.equal(bytes_, generator["state"])


def test_a_cpu_checkpoint_holds_no_cuda_generator(float64_default: None) -> None:
    assert "cuda_rng" not in tiny_state(make("darts")).checkpoint([])


# --- the graphed forward -----------------------------------------------------------------------
def one_step(name: str, graphed: bool, steps: int = 1, **options: Any) -> torch.Tensor:
    """α and weights after ``steps`` loop steps of method ``name`` (tiny float64
    supernet), through :class:`graphs.GraphedForward` or the plain model."""
    torch.manual_seed(0)
    state = tiny_state(make(name, epochs=4, **options))
    if graphed:
        graphs.install(state.model)
    method = state.method
    train = next(state.data.train.epoch_batches(0))
    valid = next(state.data.valid.epoch_batches(0))
    for step in range(steps):
        ctx = StepContext(state.model, state.w_optimizer, 0, step, 3, 4)
        if method.alpha_first:
            method.arch_step(ctx, train, valid)
        weight_step(state, ctx, train)
        if not method.alpha_first:
            method.arch_step(ctx, train, valid)
    flat = [p.detach().flatten() for p in (*method.arch_parameters(), *state.model.parameters())]
    return torch.cat(flat)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_every_methods_step_runs_through_the_graphed_forward(
    float64_default: None, name: str
) -> None:
    """Each method calls ``model(images, weights, active, straight_through)``; the
    graphed forward must take that call and pass every argument on (on a CPU it runs
    eagerly, so the step is the plain model's, bit for bit)."""
    assert torch.equal(one_step(name, graphed=True), one_step(name, graphed=False))


def test_capture_keys_on_straight_through_and_allows_unused_parameters(
    float64_default: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAS's α step captured as CUDA would (capture faked on the CPU): the capture is
    told that a mask may leave parameters unused, and the graph computes the
    straight-through forward, not the plain one."""
    calls: list[dict[str, Any]] = []

    def fake_capture(module: torch.nn.Module, sample_args: tuple, **kwargs: Any) -> Any:
        calls.append({"module": module, **kwargs})
        return module

    monkeypatch.setattr(graphs.GraphedForward, "graphable", lambda self, images: True)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_capture)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    graphed_step = one_step("gdas", graphed=True)

    assert calls and all(call["allow_unused_input"] is True for call in calls)
    assert {call["module"].straight_through for call in calls} == {False, True}
    assert torch.equal(graphed_step, one_step("gdas", graphed=False))


def test_a_device_sample_is_a_graph_input_so_one_graph_serves_every_sample(
    float64_default: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gdas.sampling=device`` captured as CUDA would (capture faked on the CPU): the
    sample is handed to the graph as an input, so four steps with their four samples
    capture two graphs (weight step, α step) where the host sample would key one per
    cell; the steps are the plain model's."""
    calls: list[dict[str, Any]] = []

    def fake_capture(module: torch.nn.Module, sample_args: tuple, **kwargs: Any) -> Any:
        calls.append({"module": module, "args": sample_args, **kwargs})
        return module

    monkeypatch.setattr(graphs.GraphedForward, "graphable", lambda self, images: True)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_capture)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    graphed_steps = one_step("gdas", graphed=True, steps=4, sampling="device")

    assert len(calls) == 2
    assert sorted(len(call["args"]) for call in calls) == [2, 3]  # α step: + the sample
    assert torch.equal(graphed_steps, one_step("gdas", graphed=False, steps=4, sampling="device"))
    calls.clear()
    one_step("gdas", graphed=True, steps=4)
    assert len(calls) > 2  # the host sample: a graph per sampled cell


def test_cuda_autocast_check_works_before_torch_2_4(monkeypatch: pytest.MonkeyPatch) -> None:
    def old_signature(*args: Any) -> bool:
        if args:
            raise TypeError("is_autocast_enabled() takes no arguments (1 given)")
        return True

    monkeypatch.setattr(torch, "is_autocast_enabled", old_signature)
    assert graphs.cuda_autocast_enabled() is True


# --- host syncs inside a step --------------------------------------------------------------
ALLOWED_SYNCS = {
    "gdas": {"read harness/methods/parts/sampling.py": 2},  # the sampled cell: 1 per draw
    "constrained": {"read harness/methods/constrained.py": 1},  # the schedule's decision
}
"""The host reads a method's step cannot avoid (docs/architecture.md says why)."""


@pytest.mark.parametrize("name", ALL_METHODS)
def test_a_methods_step_reads_the_device_only_where_it_must(name: str, data_dir: Path) -> None:
    """Syncs a step would make on CUDA, counted on the CPU, outside the supernet (whose
    list indexing the supernet's rewrite removes): none, bar :data:`ALLOWED_SYNCS`."""
    counts = host_syncs.method_step_counts(name, steps=1, preset="smoke")
    own: dict[str, float] = {}
    for key, n in counts["sites"].items():
        kind, site = key.split(" ", 1)
        if kind in host_syncs.KINDS and not site.startswith("harness/supernet.py"):
            place = f"{kind} {site.rsplit(':', 1)[0]}"
            own[place] = own.get(place, 0) + n
    assert own == ALLOWED_SYNCS.get(name, {})


def test_the_counter_sees_each_kind_of_sync() -> None:
    """What the counts above rest on: reads, blocking copies and list indexes of device
    tensors are counted, the same on host tensors are not."""
    device_value = torch.ones(3) * 2
    with host_syncs.counting() as counter:
        float(device_value.sum())
        device_value.tolist()
        host = device_value.detach().cpu()
        host.tolist()  # already on the host
        host.to(torch.device("cpu"))  # a blocking host→device copy on CUDA
        devices.to_device(host, torch.device("cpu"))  # pinned, non-blocking on CUDA
        device_value[[0, 2]]
    assert counter.total("read") == 3 and counter.total("copy") == 1
    assert counter.total("list_index") == 1


def test_the_supernets_forward_never_indexes_with_a_python_list(float64_default: None) -> None:
    state = tiny_state(make("darts"))
    images = next(state.data.train.epoch_batches(0))[0]
    with host_syncs.counting() as counter:
        state.model(images, state.method.edge_weights())
    assert counter.total("list_index") == 0


# --- several jobs per GPU, named by the card -----------------------------------------------------
def test_a_gpu_is_named_by_its_uuid_else_by_the_visible_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    props = {0: SimpleNamespace(uuid="GPU-1234"), 1: SimpleNamespace()}
    monkeypatch.setattr(torch.cuda, "get_device_properties", props.__getitem__)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert devices.physical_id(0) == "gpu-GPU-1234"
    assert devices.physical_id(1) == "gpu-visible-5"  # not "gpu-1": index 1 here is card 5


def test_jobs_share_a_gpu_up_to_their_slots_spreading_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "GPU_LOCKS", tmp_path)
    monkeypatch.setattr(devices, "physical_id", lambda index: f"gpu-uuid{index}")
    config = resolve("paper", device="cuda")
    with contextlib.ExitStack() as held:
        placed = [held.enter_context(jobs.gpu_slot(config, 2, 2)).device for _ in range(4)]
        names = sorted(p.name for p in tmp_path.iterdir())
    assert placed == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert names == [f"gpu-uuid{g}-slot-{s}.lock" for g in (0, 1) for s in (0, 1)]


@pytest.mark.parametrize(("n_jobs", "gpus", "share"), [(8, 4, 2), (3, 2, 2), (2, 4, 1), (4, 0, 1)])
def test_a_sweeps_jobs_are_spread_over_its_gpus(n_jobs: int, gpus: int, share: int) -> None:
    assert sweep.per_gpu(n_jobs, gpus) == share
