"""A fixture that writes a /proc/cpuinfo text (tests/generators/cpuinfo.py) where the hardware
probe can read it."""

import pytest


@pytest.fixture
def cpuinfo(tmp_path):
    def write(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return path

    return write
