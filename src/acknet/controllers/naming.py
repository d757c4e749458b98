"""Deterministic names and identities: where Kubernetes and the ECS API use randomness, we hash names.

Kubernetes names generated objects (ReplicaSet pods, EndpointSlices) with ``metadata.generateName``:
the API server appends 5 random characters from ``rand.SafeEncodeString``'s alphabet, which has no
vowels (no accidental words) and no 0/1/3 (no look-alikes). We draw the same characters from a
SHA-256 of the object's identity instead, so one input always plans the same names.
"""

from __future__ import annotations

import hashlib
from itertools import count

# k8s.io/apimachinery/pkg/util/rand: the alphabet of rand.String and rand.SafeEncodeString.
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
# apiserver/pkg/storage/names: generateName keeps at most 63 - 5 characters of the prefix.
MAX_GENERATED_NAME_LENGTH = 58
SUFFIX_LENGTH = 5

# byte -> ALPHANUMS[byte % 27], for bytes.translate: the suffix of 70,000 pods costs nothing.
_SUFFIX_TABLE = bytes(ord(ALPHANUMS[b % len(ALPHANUMS)]) for b in range(256))

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv32a(data: bytes) -> int:
    """32-bit FNV-1a, the hash Kubernetes' ``controller.ComputeHash`` feeds the pod template into."""
    h = _FNV32_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """``rand.SafeEncodeString``: every character mapped onto ALPHANUMS by its code point."""
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in text)


def digest(*parts: str) -> bytes:
    """SHA-256 of the parts, separated so that ("ab", "c") and ("a", "bc") differ."""
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def suffix(*seed: str) -> str:
    """Five ALPHANUMS characters derived from the seed (the API server's random suffix, made stable)."""
    return digest(*seed)[:SUFFIX_LENGTH].translate(_SUFFIX_TABLE).decode()


def generate_name(base: str, seed: tuple[str, ...], taken: set[str]) -> str:
    """A ``generateName``-style name not in ``taken`` (which it joins). On a clash the API server answers
    AlreadyExists and the controller retries with a new random suffix; we retry with a counter."""
    prefix = base[:MAX_GENERATED_NAME_LENGTH]
    for attempt in count():
        name = prefix + suffix(*seed, str(attempt))
        if name not in taken:
            taken.add(name)
            return name
    raise AssertionError("unreachable")  # pragma: no cover


class EniRegistry:
    """Hands out ENI ids and MACs, unique across one plan.

    The ECS API makes ``eni-`` + random characters and a MAC from Alibaba's OUI; we derive both from
    (instance, index): ``eni-`` + 16 hex, and a locally administered unicast MAC (``02:`` + 5 bytes), so
    a re-plan gives an ENI the same identity and the bridge's forwarding table stays valid.
    """

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._macs: set[str] = set()

    def adopt(self, eni_id: str, mac: str) -> bool:
        """Keeps an identity from the previous plan; False when something in this plan already has it."""
        if eni_id in self._ids or mac in self._macs:
            return False
        self._ids.add(eni_id)
        self._macs.add(mac)
        return True

    def new(self, instance: str, index: int) -> tuple[str, str]:
        for attempt in count():
            parts = (instance, str(index)) if attempt == 0 else (instance, str(index), str(attempt))
            raw = digest("eni", *parts)
            eni_id = "eni-" + raw[:8].hex()
            mac = "02:" + ":".join(f"{b:02x}" for b in raw[8:13])
            if self.adopt(eni_id, mac):
                return eni_id, mac
        raise AssertionError("unreachable")  # pragma: no cover
