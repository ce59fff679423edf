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


def test_duplicate_keys_are_errors_with_both_lines(tmp_path):
    import pytest

    p = tmp_path / "policy.yaml"
    p.write_text("request:\n  - type: pii\nresponse: []\nrequest: []\n")
    with pytest.raises(ValueError, match=r"policy.yaml:4: duplicate key 'request' \(first at line 1\)"):
        load_yaml(p)
    nested = tmp_path / "gw.yaml"
    nested.write_text("server:\n  max_body_mb: 8\n  max_body_mb: 1\n")
    with pytest.raises(ValueError, match=r"gw.yaml:3: duplicate key 'server.max_body_mb' \(first at line 2\)"):
        load_yaml(nested)


def test_duplicate_keys_fail_check_policies_prompts_experiments_and_suites(tmp_path):
    import pytest
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    work = tmp_path / "proj"
    shutil.copytree(root / "policies", work / "policies")
    shutil.copytree(root / "prompts", work / "prompts")

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gateway", "check-policies", "--policies", str(work / "policies")],
                              capture_output=True, text=True, cwd=work)

    assert check().returncode == 0
    guarded = work / "policies" / "guarded.yaml"
    original = guarded.read_text()
    guarded.write_text(original + "\nrequest: []\n")
    r = check()
    assert r.returncode == 2 and "guarded.yaml" in r.stderr and "duplicate key 'request'" in r.stderr
    guarded.write_text(original)
    version = work / "prompts" / "support-answer" / "v1.yaml"
    version.write_text(version.read_text() + "\ndescription: again\ndescription: twice\n")
    r = check()
    assert r.returncode == 2 and "v1.yaml" in r.stderr and "duplicate key" in r.stderr

    from gateway.evaluation.suite import load_suite

    suite = tmp_path / "suite.yaml"
    suite.write_text((root / "evals" / "support-answer.yaml").read_text() + "\nname: twice\nname: thrice\n")
    with pytest.raises(Exception, match="duplicate key 'name'"):
        load_suite(suite)
