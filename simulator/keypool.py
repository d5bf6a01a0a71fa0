"""RSA keys and signatures for a thousand virtual iPads, cheaply.

Generating an RSA-2048 key takes tens of milliseconds, so a fleet shares a small
pool of keys round-robin (each device still gets its own certificate from SCEP).
The pool can live in a cache directory (PEM files, mode 0600) so repeat runs
start at once. ``SignatureCache`` keeps the ``Mdm-Signature`` of bodies a device
sends again and again byte for byte (its Idle report).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mdm.pki import new_key
from simulator.signer import DetachedSigner

DEFAULT_POOL_SIZE = 16
KEY_BITS = 2048


class KeyPool:
    """``size`` RSA-2048 keys handed out round-robin; generated lazily, optionally cached on disk."""

    def __init__(self, size: int = DEFAULT_POOL_SIZE, cache_dir: str | os.PathLike | None = None) -> None:
        if size < 1:
            raise ValueError("a key pool needs at least one key")
        self.size = size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._keys: list[rsa.RSAPrivateKey | None] = [None] * size
        self._next = itertools.count()
        self._lock = threading.Lock()
        self.generated = 0
        self.loaded = 0

    def _path(self, i: int) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"sim-key-{i:03d}.pem"

    def _load_or_create(self, i: int) -> rsa.RSAPrivateKey:
        if self.cache_dir is not None:
            path = self._path(i)
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), None)
            except (OSError, ValueError, TypeError):
                key = None
            if isinstance(key, rsa.RSAPrivateKey) and key.key_size == KEY_BITS:
                self.loaded += 1
                return key
        key = new_key(KEY_BITS)
        self.generated += 1
        if self.cache_dir is not None:
            self._write(self._path(i), key)
        return key

    @staticmethod
    def _write(path: Path, key: rsa.RSAPrivateKey) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, pem)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def key(self, i: int) -> rsa.RSAPrivateKey:
        """Key number ``i`` modulo the pool size."""
        i %= self.size
        with self._lock:
            k = self._keys[i]
            if k is None:
                k = self._keys[i] = self._load_or_create(i)
            return k

    def next(self) -> rsa.RSAPrivateKey:
        """The next key, round-robin."""
        return self.key(next(self._next))

    def warm(self) -> None:
        """Load or generate every key now (before timing-sensitive work)."""
        for i in range(self.size):
            self.key(i)


class SignatureCache:
    """``Mdm-Signature`` values for (identity, body) pairs, least recently used evicted.

    Only worth it for bodies that repeat exactly, such as a device's Idle report; the
    signing time inside a cached signature is the time it was first made.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[bytes, bytes], str] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def sign(self, body: bytes, signer: DetachedSigner) -> str:
        k = (signer.fingerprint, body)  # a bytes object caches its hash: the same Idle body hashes once
        with self._lock:
            sig = self._cache.get(k)
            if sig is not None:
                self._cache.move_to_end(k)
                self.hits += 1
                return sig
        sig = signer.sign(body)
        with self._lock:
            self.misses += 1
            self._cache[k] = sig
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return sig
