"""`gateway cache clear`: drop entries of the running gateway's response cache, through its admin
API (the embedded cache lives in the gateway's memory; a shared Redis cache is reached the same way)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="the response cache: clear [--key K | --group G] [--model M]")
    csub = p.add_subparsers(dest="cache_command", required=True)
    c = csub.add_parser("clear", help="drop cache entries (all, or of one key / group and/or model)")
    c.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway (default http://127.0.0.1:8080)")
    c.add_argument("--admin-key-env", default="GATEWAY_ADMIN_KEY", metavar="VAR",
                   help="env var holding an admin key (default GATEWAY_ADMIN_KEY; not needed in open mode)")
    who = c.add_mutually_exclusive_group()
    who.add_argument("--key", help="only entries of this key (its name in gateway.yaml)")
    who.add_argument("--group", help="only entries shared by this group (cache.scope: group)")
    c.add_argument("--model", help="only entries of this model (its public name)")
    c.set_defaults(func=cmd_clear)


def cmd_clear(args: argparse.Namespace) -> int:
    body = {k: v for k, v in (("key", args.key), ("group", args.group), ("model", args.model)) if v}
    headers = {"Content-Type": "application/json"}
    admin_key = os.environ.get(args.admin_key_env)
    if admin_key:
        headers["Authorization"] = f"Bearer {admin_key}"
    url = args.url.rstrip("/") + "/admin/cache/clear"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            removed = json.loads(resp.read())["removed"]
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = e.reason
        hint = f" (set ${args.admin_key_env} to an admin key)" if e.code in (401, 403) and not admin_key else ""
        print(f"gateway cache clear: {url} answered {e.code}: {message}{hint}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"gateway cache clear: cannot reach {url} ({getattr(e, 'reason', e)}); is the gateway running? "
              "(--url names it)", file=sys.stderr)
        return 1
    what = ", ".join(f"{k} {v}" for k, v in body.items()) or "all entries"
    print(f"removed {removed} cache entries ({what})")
    return 0
