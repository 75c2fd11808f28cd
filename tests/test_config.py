import math

import pytest

from bnnlab.config import (
    Schedule,
    StepConfig,
    apply_overrides,
    deep_merge,
    flatten,
    parse_value,
    validate_config,
)
from bnnlab.errors import BnnlabError


def test_defaults_validate():
    cfg = StepConfig()
    assert cfg.model.name == "binary-mlp" and cfg.data.name == "digits" and cfg.optim.name == "adam"


@pytest.mark.parametrize(
    "override, field",
    [
        ({"optim.lr": -1}, "optim.lr"),
        ({"optim.tau": -1e-8}, "optim.tau"),
        ({"optim.gamma": 0}, "optim.gamma"),
        ({"optim.gamma": 1.5}, "optim.gamma"),
        ({"optim.name": "adagrad"}, "optim.name"),
        ({"trainer.epochs": 0}, "trainer.epochs"),
        ({"data.batch_size": "many"}, "data.batch_size"),
        ({"trainer.precision": "fp8"}, "trainer.precision"),
        ({"optim.bogus": 1}, "optim.bogus"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(BnnlabError) as exc:
        validate_config(apply_overrides({}, override), source="x.yaml")
    msg = str(exc.value)
    assert msg.startswith("x.yaml: field") and f"'{field}'" in msg and "\n" not in msg


def test_kd_needs_teacher_and_attentive_needs_extractor():
    with pytest.raises(BnnlabError, match="teacher"):
        validate_config({"loss": {"name": "kd"}})
    with pytest.raises(BnnlabError, match="extractor"):
        validate_config({"augment": {"name": "attentive"}})


def test_overrides_parse_values_and_alias():
    cfg = validate_config(apply_overrides({}, {"optim.gamma": "1e-3", "init.from": "previous",
                                               "trainer.channels_last": "true"}))
    assert cfg.optim.gamma == pytest.approx(1e-3)
    assert cfg.init.from_ == "previous"
    assert cfg.trainer.channels_last is True
    assert cfg.model_dump(by_alias=True)["init"]["from"] == "previous"


def test_parse_value_and_merge_and_flatten():
    assert parse_value("1e-3") == pytest.approx(1e-3)
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("bop") == "bop"
    merged = deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}})
    assert merged == {"a": {"b": 1, "c": 3}}
    assert flatten({"a": {"b": 1}, "c": 2}) == {"a.b": 1, "c": 2}


def test_schedules():
    assert Schedule().value(0.1, 5, 10) == 0.1
    assert Schedule(kind="linear").value(1.0, 5, 10) == pytest.approx(0.5)
    assert Schedule(kind="linear", end=1e-6).value(1e-4, 10, 10) == pytest.approx(1e-6)
    assert Schedule(kind="cosine").value(1.0, 5, 10) == pytest.approx(0.5)
    assert Schedule(kind="cosine").value(1.0, 0, 10) == pytest.approx(1.0)
    step = Schedule(kind="step", milestones=[10, 15], factor=0.1)
    assert [step.value(0.01, e, 20) for e in (0, 9.9, 10, 15)] == pytest.approx([0.01, 0.01, 1e-3, 1e-4])
    warm = Schedule(kind="constant", warmup_epochs=2)
    assert warm.value(1.0, 1, 10) == pytest.approx(0.5, rel=1e-6)
    assert not math.isnan(warm.value(1.0, 0, 10))
