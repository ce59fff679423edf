"""Check YAML files the way an editor does: drive yaml-language-server (the engine of VS Code's and
other editors' YAML support) over stdio, open each file, and print the diagnostics it publishes. Each
shipped file names its schema on its first line (`# yaml-language-server: $schema=...`).

    npm install --prefix /tmp/yls yaml-language-server
    .venv/bin/python docs/tools/yaml_ls_check.py --server /tmp/yls/node_modules/.bin/yaml-language-server \\
        policies/*.yaml prompts/*/v*.yaml evals/*.yaml

Exit 0 when no file has an error, 1 otherwise (a file with a deliberate mistake shows what an
editor would underline).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue


class Lsp:
    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.messages: Queue = Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = 0
            while (line := out.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return
            self.messages.put(json.loads(out.read(length)))

    def send(self, method: str, params: dict, *, request: bool = False, reply_to: int | None = None) -> int | None:
        msg: dict = {"jsonrpc": "2.0"}
        if reply_to is not None:
            msg.update(id=reply_to, result=params.get("result"))
        else:
            msg.update(method=method, params=params)
            if request:
                self.next_id += 1
                msg["id"] = self.next_id
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return msg.get("id")


SETTINGS = {"yaml": {"validate": True, "hover": True, "completion": True, "schemaStore": {"enable": False},
                     "schemas": {}, "format": {"enable": False}}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="the yaml-language-server executable")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--timeout", type=float, default=20)
    args = ap.parse_args()
    lsp = Lsp([args.server, "--stdio"])
    root = Path.cwd().resolve()
    lsp.send("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": {
        "workspace": {"configuration": True}, "textDocument": {"publishDiagnostics": {}}}}, request=True)
    pending = {Path(f).resolve().as_uri(): Path(f) for f in args.files}
    diagnostics: dict[str, list] = {}
    opened = False
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and len(diagnostics) < len(pending):
        try:
            msg = lsp.messages.get(timeout=0.5)
        except Empty:
            continue
        if msg.get("id") == 1 and "result" in msg and not opened:  # initialize answered
            lsp.send("initialized", {})
            lsp.send("workspace/didChangeConfiguration", {"settings": SETTINGS})
            for uri, path in pending.items():
                lsp.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1,
                                                                   "text": path.read_text(encoding="utf-8")}})
            opened = True
        elif msg.get("method") == "workspace/configuration":
            lsp.send("", {"result": [SETTINGS["yaml"] for _ in msg["params"]["items"]]}, reply_to=msg["id"])
        elif msg.get("method") == "textDocument/publishDiagnostics" and msg["params"]["uri"] in pending:
            diagnostics[msg["params"]["uri"]] = msg["params"]["diagnostics"]
        elif "id" in msg and "method" in msg:  # any other request from the server: answer null
            lsp.send("", {"result": None}, reply_to=msg["id"])
    lsp.proc.kill()
    errors = 0
    for uri, path in pending.items():
        found = diagnostics.get(uri)
        if found is None:
            print(f"{path}: no diagnostics received (timeout)")
            errors += 1
            continue
        bad = [d for d in found if d.get("severity", 1) == 1]
        errors += bool(bad)
        print(f"{path}: {'OK' if not found else f'{len(found)} diagnostic(s)'}")
        for d in found:
            line = d["range"]["start"]["line"] + 1
            print(f"  {path}:{line}: {d.get('message', '').splitlines()[0]}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
