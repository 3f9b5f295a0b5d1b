"""The README's "Python API" examples run as written, one after the other like notebook cells, in
a fresh folder; a local OpenAI-compatible server stands in for the reader's model server."""

import re
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from tests.servers import ChatServer

pytestmark = pytest.mark.slow  # the README's Python blocks, flows against a loopback model server

REPO = Path(__file__).resolve().parent.parent
# The example's server address, replaced by the local server's.
PLACEHOLDER_URL = "http://localhost:8000/v1"

# A right and a wrong solution to each problem of data/examples/problems.jsonl. Each wrong one
# errs in its first step, which z3_arith refutes: a process example with a decided first step.
SOLUTIONS = {
    "Natalia": (
        "Natalia sold 48 / 2 = 24 clips in May.\nAltogether she sold 48 + 24 = 72 clips.\nThe answer is \\boxed{72}",
        "Natalia sold 48 / 2 = 26 clips in May.\nAltogether she sold 48 + 26 = 74 clips.\nThe answer is \\boxed{74}",
    ),
    "Weng": (
        "Weng earns 12 / 60 = 0.2 dollars a minute.\nIn 50 minutes she earns 0.2 * 50 = 10 dollars.\n"
        "The answer is \\boxed{10}",
        "Weng earns 12 / 60 = 0.5 dollars a minute.\nIn 50 minutes she earns 0.5 * 50 = 25 dollars.\n"
        "The answer is \\boxed{25}",
    ),
    "frac{1}{2}": (
        "1/2 + 1/3 = 5/6.\nThe answer is \\boxed{\\frac{5}{6}}",
        "1/2 + 1/3 = 2/5.\nThe answer is \\boxed{\\frac{2}{5}}",
    ),
}


def python_api_examples() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def solve(body, index):
    """Right and wrong answers in turn, as a weak model's samples would be."""
    question = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    right, wrong = next(pair for key, pair in SOLUTIONS.items() if key in question)
    return right if index % 2 == 0 else wrong


@pytest.fixture()
def model_server():
    server = ChatServer(solve)
    yield server
    server.close()


def test_the_python_api_examples_run_as_written(prefect_harness, tmp_path, monkeypatch, capsys, model_server):
    examples = python_api_examples()
    assert len(examples) == 5 and sum(PLACEHOLDER_URL in code for code in examples) == 1
    shutil.copytree(REPO / "data" / "examples", tmp_path / "data" / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RMFORGE_DB", raising=False)

    cells: dict = {}
    for code in examples:
        exec(compile(code.replace(PLACEHOLDER_URL, model_server.url), "README.md", "exec"), cells)

    printed = capsys.readouterr().out
    result, exported, curated = cells["result"], cells["exported"], cells["curated"]
    asked = {payload["messages"][-1]["content"] for payload in model_server.payloads}
    assert len(asked) == 3  # the served model answered every problem of the file
    assert result.summary["generate"]["new_rollouts"] == 12
    # per problem one right and one wrong rollout are kept (the rest repeat them): a pair each,
    # and a process example each from the wrong one's refuted first step
    assert result.datasets == {"preference_pairs": 3, "process_examples": 3}
    assert f"{result.run_id} {result.datasets}" in printed
    assert isinstance(cells["verdicts"], pa.Table) and "z3_arith" in cells["verdicts"].column("annotator").to_pylist()
    assert isinstance(cells["examples"], pl.DataFrame) and cells["examples"]["labels"].to_list() == [[False]] * 3
    assert isinstance(cells["refuted"], pl.DataFrame) and cells["refuted"].height >= 3
    assert exported.files["process"] == Path("data/notebook-exports/process.parquet")
    assert pl.read_parquet(tmp_path / exported.files["process"]).height == 3
    assert curated.db == "data/mine.duckdb" and curated.datasets["preference_pairs"] > 0
    assert "config: sampling.n: Input should be greater than or equal to 1" in printed
