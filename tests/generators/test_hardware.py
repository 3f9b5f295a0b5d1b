import pytest

from generators.hardware import cpu_flags, native_bf16, resolve_dtype

EPYC_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma f16c\n\n" * 2
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def cpuinfo(tmp_path):
    def write(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return path
    return write


@pytest.mark.parametrize("text,native", [(EPYC_AVX2, False), (SAPPHIRE_RAPIDS, True), (GRAVITON3, True)])
def test_native_bf16_reads_the_cpu_flags(cpuinfo, text, native):
    assert native_bf16(cpuinfo(text)) is native


def test_cpu_flags_of_a_missing_file_are_empty(tmp_path):
    assert cpu_flags(tmp_path / "absent") == frozenset()
    assert native_bf16(tmp_path / "absent") is False


@pytest.mark.parametrize("text,device,expected", [
    (EPYC_AVX2, "cpu", "float32"),
    (SAPPHIRE_RAPIDS, "cpu", "bfloat16"),
    (EPYC_AVX2, "cuda", "bfloat16"),
    (EPYC_AVX2, "cuda:1", "bfloat16"),
])
def test_auto_dtype_follows_the_hardware(cpuinfo, text, device, expected):
    assert resolve_dtype("auto", device, cpuinfo(text)) == expected


def test_explicit_dtype_is_kept_and_unknown_one_named(cpuinfo):
    assert resolve_dtype("bfloat16", "cpu", cpuinfo(EPYC_AVX2)) == "bfloat16"
    assert resolve_dtype("float32", "cuda") == "float32"
    with pytest.raises(ValueError, match="'fp8'"):
        resolve_dtype("fp8")
