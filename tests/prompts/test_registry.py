import pytest
import yaml

from gateway.errors import PolicyError
from gateway.prompts import PromptError, load_registry
from gateway.prompts.schema import content_hash
from gateway.prompts.store import PromptStore
from tests.prompts.helpers import V1, make_prompts


def publish(root, version=1, label="production"):
    store = PromptStore(root)
    raw = yaml.safe_load((root / "support" / f"v{version}.yaml").read_text())
    lock = store.read_lock()
    lock.setdefault("support", {})[version] = content_hash(raw)
    store.write_lock(lock)
    labels = store.read_labels("support")
    labels[label] = version
    store.write_labels("support", labels)


def test_render_with_defaults_and_label(tmp_path):
    root = make_prompts(tmp_path)
    publish(root)
    out = load_registry(root).render("support", {"question": "Where is my order?"})
    assert out.messages == [{"role": "system", "content": "Be friendly."},
                            {"role": "user", "content": "Q: Where is my order?"}]
    assert (out.name, out.version, out.label, out.model) == ("support", 1, "production", "mock-model")
    assert out.hash.startswith("sha256:") and out.params == {"temperature": 0.1, "max_tokens": 50}


def test_variables_missing_extra_and_wrong_type_are_listed(tmp_path):
    reg = load_registry(make_prompts(tmp_path))
    with pytest.raises(PromptError) as e:
        reg.render("support@1", {"tone": "rude", "retries": "3", "colour": "red"})
    msg = e.value.message
    assert e.value.status == 400
    assert "missing: question" in msg and "not declared: colour" in msg
    assert "retries (expected integer, got str)" in msg and "tone (must be one of" in msg


def test_injected_template_syntax_is_rendered_literally(tmp_path):
    reg = load_registry(make_prompts(tmp_path))
    evil = "{{ 7*7 }} {% for x in range(3) %}x{% endfor %} {{ ''.__class__.__mro__ }}"
    out = reg.render("support@1", {"question": evil})
    assert out.messages[1]["content"] == f"Q: {evil}"


def test_unknown_prompt_version_label_are_404_listing_what_exists(tmp_path):
    reg = load_registry(make_prompts(tmp_path))
    for ref, fragment in [("nope", "Prompts: support"), ("support@9", "Versions: 1"),
                          ("support:production", "Labels: (none yet)")]:
        with pytest.raises(PromptError) as e:
            reg.render(ref, {"question": "q"})
        assert e.value.status == 404 and fragment in e.value.message


def test_template_syntax_error_names_file_and_line(tmp_path):
    root = make_prompts(tmp_path, v2="""\
    messages:
      - role: system
        content: "ok"
      - role: user
        content: "{{ question }"
    variables: {question: {type: string}}
    """)
    with pytest.raises(PolicyError) as e:
        load_registry(root)
    assert any(f"{root}/support/v2.yaml:5: messages.1.content: template syntax error" in p for p in e.value.problems)


def test_undeclared_template_variable_is_a_load_error(tmp_path):
    root = make_prompts(tmp_path, v2="template: 'Hi {{ name }}'\n")
    with pytest.raises(PolicyError, match="uses undeclared variable"):
        load_registry(root)


def test_edited_published_version_is_refused_with_instructions(tmp_path):
    root = make_prompts(tmp_path)
    publish(root)
    (root / "support" / "v1.yaml").write_text(V1.replace("Be {{ tone }}.", "Be very {{ tone }}."))
    with pytest.raises(PolicyError) as e:
        load_registry(root)
    [problem] = e.value.problems
    assert "immutable" in problem and "gateway prompts new support --from 1" in problem
    # Layout and key order do not count as edits: only content does.
    (root / "support" / "v1.yaml").write_text(yaml.safe_dump(yaml.safe_load(V1), sort_keys=True))
    load_registry(root)


def test_labels_must_point_to_existing_published_versions(tmp_path):
    root = make_prompts(tmp_path, v2=V1)
    (root / "support" / "labels.yaml").write_text("production: 7\nstaging: 2\n")
    with pytest.raises(PolicyError) as e:
        load_registry(root)
    text = "\n".join(e.value.problems)
    assert "production points to v7, which does not exist" in text
    assert "staging points to v2, a draft" in text


def test_published_version_file_deleted_is_an_error(tmp_path):
    root = make_prompts(tmp_path, v2=V1)
    publish(root, 2)
    (root / "support" / "v2.yaml").unlink()
    with pytest.raises(PolicyError, match="is published but .*v2.yaml is missing"):
        load_registry(root)
