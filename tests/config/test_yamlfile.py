from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.config.yamlfile import load_yaml


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Inner]


def test_errors_name_file_line_and_field(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("items:\n  - size: 1\n  - size: big\n  - size: 3\n    colour: red\n")
    doc = load_yaml(p)
    try:
        Outer.model_validate(doc.data)
    except ValidationError as e:
        problems = doc.problems(e)
    assert problems[0].startswith(f"{p}:3: items[1].size:")
    assert problems[1] == f"{p}:5: items[2].colour: unknown field (check the spelling; see the README for the allowed fields)"


def test_syntax_error_has_line(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("a: 1\nb: [unclosed\n")
    try:
        load_yaml(p)
    except ValueError as e:
        assert str(e).startswith(f"{p}:") and "YAML syntax error" in str(e)
    else:
        raise AssertionError("no error")
