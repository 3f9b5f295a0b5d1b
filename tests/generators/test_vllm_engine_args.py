"""The vLLM engine's arguments, built without starting vLLM: `dtype: auto` follows the hardware."""

from typing import get_args

import pytest

from rmforge.generators.hardware import DTYPES
from rmforge.generators.vllm_engine import cpu_list, engine_arguments, engine_environment
from rmforge.schemas.config import GeneratorConfig
from tests.generators.cpuinfo import EPYC_AVX2, SAPPHIRE_RAPIDS


def test_dtype_defaults_to_auto():
    assert GeneratorConfig().dtype == "auto"


@pytest.mark.parametrize(
    "text,on_cpu,expected",
    [
        (EPYC_AVX2, True, "float32"),  # emulated bf16 is ~3x slower here
        (SAPPHIRE_RAPIDS, True, "bfloat16"),
        (EPYC_AVX2, False, "bfloat16"),  # CUDA: the host CPU does not matter
    ],
)
def test_auto_dtype_resolves_from_the_hardware(cpuinfo, text, on_cpu, expected):
    args = engine_arguments(GeneratorConfig(), "/models/x", on_cpu, cpuinfo(text))
    assert args["dtype"] == expected
    assert ("gpu_memory_utilization" in args) is not on_cpu


def test_explicit_dtype_is_passed_through(cpuinfo):
    args = engine_arguments(GeneratorConfig(dtype="bfloat16"), "/models/x", True, cpuinfo(EPYC_AVX2))
    assert args["dtype"] == "bfloat16"


def test_config_accepts_exactly_the_dtypes_the_resolver_knows():
    assert get_args(GeneratorConfig.model_fields["dtype"].annotation) == DTYPES
    with pytest.raises(ValueError, match="dtype"):
        GeneratorConfig(dtype="fp8")


@pytest.mark.parametrize("on_cpu", [True, False])
def test_engine_processes_are_spawned_so_they_carry_the_command_marker(on_cpu):
    # A forked engine would not show the marker rmforge.orphans looks for after a SIGKILL.
    assert engine_environment(GeneratorConfig(), on_cpu)["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"


@pytest.mark.parametrize("cores, listed", [({0}, "0"), ({0, 1}, "0-1"), ({0, 2, 3, 4, 7}, "0,2-4,7")])
def test_cpu_list_names_ranges_as_vllm_reads_them(cores, listed):
    assert cpu_list(cores) == listed


def test_the_engine_threads_take_every_core_this_process_may_use(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {2, 3, 5})
    environment = engine_environment(GeneratorConfig(), on_cpu=True)
    assert environment["VLLM_CPU_OMP_THREADS_BIND"] == "2-3,5"
    assert environment["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"  # vLLM's auto keeps one core for its front end
    assert "VLLM_CPU_OMP_THREADS_BIND" not in engine_environment(GeneratorConfig(), on_cpu=False)


def test_a_binding_the_user_set_is_left_alone(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "1")
    environment = engine_environment(GeneratorConfig(), on_cpu=True)
    assert "VLLM_CPU_OMP_THREADS_BIND" not in environment and "VLLM_CPU_NUM_OF_RESERVED_CPU" not in environment
