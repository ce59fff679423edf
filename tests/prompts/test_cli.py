import json
import subprocess

from tests.helpers import gateway_cmd
from tests.prompts.helpers import make_prompts, prompts_cli


def test_new_promote_show_diff_render_rollback(tmp_path):
    root = make_prompts(tmp_path)
    r = prompts_cli(root, "promote", "support", "1", "--label", "production")
    assert r.returncode == 0 and "production v1" in r.stdout, r.stderr
    r = prompts_cli(root, "new", "support")
    assert "v2.yaml (draft)" in r.stdout
    v2 = root / "support" / "v2.yaml"
    v2.write_text(v2.read_text().replace("Q: {{ question }}", "Question: {{ question }}"))
    assert "1, 2*" in prompts_cli(root, "list").stdout
    assert prompts_cli(root, "promote", "support", "2").stdout.startswith("support: production v1 -> v2")
    show = prompts_cli(root, "show", "support:production").stdout
    assert show.startswith("# support v2 (published) sha256:") and "labels: production" in show
    diff = prompts_cli(root, "diff", "support", "1", "production").stdout
    assert "-    content: \"Q: {{ question }}\"" in diff and "+    content: \"Question: {{ question }}\"" in diff
    out = json.loads(prompts_cli(root, "render", "support", "--var", "question=Hi?", "--var", "retries=3").stdout)
    assert out["prompt"]["version"] == 2 and out["messages"][1]["content"] == "Question: Hi?"
    r = prompts_cli(root, "rollback", "support")
    assert r.stdout.strip() == "support: production v2 -> v1 (rolled back)"
    r = prompts_cli(root, "rollback", "support")
    assert r.returncode == 2 and "no earlier version" in r.stderr
    history = [json.loads(line) for line in (root / "support" / "history.jsonl").read_text().splitlines()]
    assert [(h["from"], h["to"], h["action"], h["by"]) for h in history] == [
        (None, 1, "promote", "tester"), (1, 2, "promote", "tester"), (2, 1, "rollback", "tester")]
    assert all(h["at"].endswith("+00:00") for h in history)


def test_editing_a_published_version_blocks_every_command_with_instructions(tmp_path):
    root = make_prompts(tmp_path)
    prompts_cli(root, "promote", "support", "1")
    (root / "support" / "v1.yaml").write_text((root / "support" / "v1.yaml").read_text() + "tags: [x]\n")
    r = prompts_cli(root, "list")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--from 1" in r.stderr


def test_bad_references_and_vars(tmp_path):
    root = make_prompts(tmp_path)
    r = prompts_cli(root, "render", "support@9", "--var", "question=x")
    assert r.returncode == 2 and "has no version 9" in r.stderr
    r = prompts_cli(root, "render", "support@1", "--var", "question")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr
    r = prompts_cli(root, "new", "Bad Name")
    assert r.returncode == 2


def test_concurrent_cli_edits_do_not_lose_updates(tmp_path):
    root = make_prompts(tmp_path)
    # Eight promotions of different labels at once, from separate processes.
    for v in (2, 3):
        (root / "support" / f"v{v}.yaml").write_text((root / "support" / "v1.yaml").read_text())
    labels = [f"l{i}" for i in range(8)]
    procs = [subprocess.Popen(gateway_cmd("prompts", "--prompts", str(root), "promote", "support", str(1 + i % 3),
                                          "--label", label), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i, label in enumerate(labels)]
    assert [p.wait(60) for p in procs] == [0] * 8
    import yaml

    got = yaml.safe_load((root / "support" / "labels.yaml").read_text())
    assert got == {label: 1 + i % 3 for i, label in enumerate(labels)}
    assert len((root / "support" / "history.jsonl").read_text().splitlines()) == 8
    assert set(yaml.safe_load((root / "prompts.lock").read_text())["support"]) == {1, 2, 3}
