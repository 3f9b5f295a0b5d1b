"""Contracts of the registries: each entry says everything the code that reads it needs, in one place."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from rmforge.annotators import REGISTRY, annotator_class
from rmforge.schemas.exports import EXPORTS, export_schema


@pytest.mark.parametrize("name", list(EXPORTS))
def test_every_export_dataset_has_a_meaning_a_schema_and_a_hub_task_category(name: str) -> None:
    spec = EXPORTS[name]
    assert spec.name == name
    assert spec.meaning.strip() and spec.format.strip() and spec.sql.strip() and spec.tag.strip()
    assert re.fullmatch(r"[a-z]+(-[a-z]+)*", spec.task_category), spec.task_category  # a Hub task id
    for style in ("standard", "conversational"):
        schema = export_schema(name, style)
        assert isinstance(schema, pa.Schema) and "prompt" in schema.names, style
    if spec.step_column is not None:
        assert pa.types.is_list(spec.schema.field(spec.step_column).type)
    if spec.chat is not None:
        for column, _ in spec.chat.replies:
            assert column in spec.chat.schema.names


@pytest.mark.parametrize("key", list(REGISTRY))
def test_every_annotator_registry_key_is_its_class_name(key: str) -> None:
    assert annotator_class(key).name == key


def test_refute_only_is_exactly_a_correct_that_does_not_count_beside_an_incorrect_that_does():
    from rmforge.annotators import REGISTRY, annotator_class

    for name in REGISTRY:
        evidence = annotator_class(name).evidence
        assert evidence.refute_only == (evidence.counts("incorrect") and not evidence.counts("correct")), name
    assert annotator_class("z3_arith").evidence.refute_only and not annotator_class("mc").evidence.refute_only
