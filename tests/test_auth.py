"""Gateway keys: hashed or from env, per-key models and policy, 401/403 as the SDK expects."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.auth import hash_key
from tests.helpers import openai_client, running_gateway, write_policies


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    import os

    os.environ["TEST_ENV_KEY"] = "env-key-abc"
    yaml = f"""
    upstreams: {{mock: {{type: mock}}}}
    models:
      echo: {{targets: [{{upstream: mock, model: echo}}]}}
      other: {{targets: [{{upstream: mock, model: echo}}]}}
    keys:
      - name: hashed-app
        sha256: "{hash_key('team-a-secret')}"
        models: ["echo"]
        policy: strict
      - name: env-app
        env: TEST_ENV_KEY
        models: ["*"]
        policy: none
      - name: ops
        sha256: "{hash_key('ops-secret')}"
        admin: true
    server: {{watch_interval_s: 0}}
    """
    strict = "request: [{type: denylist, action: block, words: [forbidden]}]\n"
    root = write_policies(tmp_path_factory.mktemp("p"), yaml, strict=strict)
    with running_gateway(root) as server:
        yield server


def test_missing_and_wrong_key_raise_authentication_error(gw):
    for key in ("wrong-key", "sk-looks-real-but-is-not"):
        with pytest.raises(openai.AuthenticationError):
            openai_client(gw, api_key=key).chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "x"}])
    r = httpx.post(gw.url + "/v1/chat/completions", json={})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_hashed_key_works_with_its_policy_and_models(gw):
    client = openai_client(gw, api_key="team-a-secret")
    out = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert out.model_extra["gateway"]["policy"] == "strict"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "forbidden"}])
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    assert [m.id for m in client.models.list()] == ["echo"]


def test_env_key_works(gw):
    client = openai_client(gw, api_key="env-key-abc")
    out = client.chat.completions.create(model="other", messages=[{"role": "user", "content": "forbidden"}])
    assert out.choices[0].message.content == "forbidden"
    assert {m.id for m in client.models.list()} == {"echo", "other"}


def test_admin_endpoints_need_an_admin_key(gw):
    assert httpx.post(gw.url + "/admin/reload", headers={"Authorization": "Bearer env-key-abc"}).status_code == 403
    assert httpx.post(gw.url + "/admin/reload").status_code == 401
    r = httpx.post(gw.url + "/admin/reload", headers={"Authorization": "Bearer ops-secret"})
    assert r.status_code == 200 and r.json()["ok"] is True


def test_hash_key_is_sha256_hex():
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
