from dataclasses import dataclass, field

import pytest

from difflab import InputError
from difflab.config import apply_overrides, from_dict, load_yaml


@dataclass
class Inner:
    rate: float = 0.1
    names: list[str] = field(default_factory=list)


@dataclass
class Outer:
    steps: int = 10
    label: str | None = None
    inner: Inner = field(default_factory=Inner)
    sizes: tuple[int, int] = (1, 2)


def test_defaults_and_lossless_int_to_float():
    assert from_dict(Inner, apply_overrides({}, ["rate=1e-3"])).rate == 0.001  # PyYAML's string "1e-3"
    cfg = from_dict(Outer, {"inner": {"rate": 1}, "sizes": [3, 4]})
    assert cfg.steps == 10 and cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float) and cfg.sizes == (3, 4)


@pytest.mark.parametrize("data,message", [
    ({"stepz": 3}, "stepz: unknown key; known keys: steps, label, inner, sizes"),
    ({"inner": {"rat": 3}}, "inner.rat: unknown key"),
    ({"steps": "ten"}, "steps: 'ten' is not allowed; use a int"),
    ({"steps": 2.5}, "steps: 2.5 is not allowed"),
    ({"steps": True}, "steps: True is not allowed"),
    ({"inner": {"names": ["a", 3]}}, r"inner.names\[1\]: 3 is not allowed; use a str"),
    ({"sizes": [1, 2, 3]}, "sizes: .* use a list of 2 values"),
    ({"inner": 5}, "inner: 5 is not allowed; use a mapping"),
])
def test_strict_errors_name_the_key(data, message):
    with pytest.raises(InputError, match=message):
        from_dict(Outer, data)


def test_overrides_are_dotted_and_yaml_typed():
    data = apply_overrides({"inner": {"rate": 0.1}}, ["inner.rate=0.5", "steps=20", "label=hello world",
                                                      "inner.names=[a, b]", "new.deep.key=1"])
    assert data == {"inner": {"rate": 0.5, "names": ["a", "b"]}, "steps": 20, "label": "hello world",
                    "new": {"deep": {"key": 1}}}
    with pytest.raises(InputError, match="set: 'steps' is not allowed; use key=value"):
        apply_overrides({}, ["steps"])
    with pytest.raises(InputError, match="set: 'steps.x' goes inside 'steps', which is not a mapping"):
        apply_overrides({"steps": 3}, ["steps.x=1"])


def test_load_yaml_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(InputError, match="is not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="must hold a mapping"):
        load_yaml(tmp_path / "list.yaml")
    with pytest.raises(InputError, match="does not exist"):
        load_yaml(tmp_path / "none.yaml")
