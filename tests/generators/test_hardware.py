import pytest

from rmforge.generators.hardware import cpu_flags, native_bf16, resolve_dtype
from tests.generators.cpuinfo import EPYC_AVX2, GRAVITON3, SAPPHIRE_RAPIDS


@pytest.mark.parametrize("text,native", [(EPYC_AVX2, False), (SAPPHIRE_RAPIDS, True), (GRAVITON3, True)])
def test_native_bf16_reads_the_cpu_flags(cpuinfo, text, native):
    assert native_bf16(cpuinfo(text)) is native


def test_cpu_flags_of_a_missing_file_are_empty(tmp_path):
    assert cpu_flags(tmp_path / "absent") == frozenset()
    assert native_bf16(tmp_path / "absent") is False


@pytest.mark.parametrize(
    "text,device,expected",
    [
        (EPYC_AVX2, "cpu", "float32"),
        (SAPPHIRE_RAPIDS, "cpu", "bfloat16"),
        (EPYC_AVX2, "cuda", "bfloat16"),
        (EPYC_AVX2, "cuda:1", "bfloat16"),
    ],
)
def test_auto_dtype_follows_the_hardware(cpuinfo, text, device, expected):
    assert resolve_dtype("auto", device, cpuinfo(text)) == expected


def test_explicit_dtype_is_kept_and_unknown_one_named(cpuinfo):
    assert resolve_dtype("bfloat16", "cpu", cpuinfo(EPYC_AVX2)) == "bfloat16"
    assert resolve_dtype("float32", "cuda") == "float32"
    with pytest.raises(ValueError, match="'fp8'"):
        resolve_dtype("fp8")
