"""examples/shop with a certificate for shop.example.com signed by a CA made now, so clients can verify it.

    python3 examples/shop/own_ca.py OUT

makes, with openssl, a CA (``OUT/ca.crt``, ``OUT/ca.key``) and a server certificate for
shop.example.com it signs (``OUT/tls.crt``, ``OUT/tls.key``; SAN DNS:shop.example.com), then writes
``OUT/shop/``: the shop's files as they are, except that the Secret ``shop/shop-tls`` in ingress.yaml
holds that certificate. Then:

    acknet up -f OUT/shop
    acknet exec internet -- curl --cacert OUT/ca.crt --resolve shop.example.com:443:<VIP> https://shop.example.com/

``examples/shop`` itself keeps its self-signed Secret, so it stays complete for ``acknet check`` and
the tests; `make demo` runs this script (OUT = .demo) and tests/e2e/test_ingress_live.py does too.
Needs openssl and PyYAML (the acknet virtual environment has it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

SHOP = Path(__file__).resolve().parent
HOST = "shop.example.com"
SECRET = ("shop", "shop-tls")
DAYS = "30"  # long enough for a demo left running, short enough that nobody keeps the key


def make_ca(out: Path) -> None:
    """The same steps as tests/e2e/test_ingress_live.py's make_ca: a self-signed CA, a key and a CSR
    for HOST, and the certificate the CA signs with the subjectAltName curl checks."""
    out.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        run = subprocess.run(["openssl", *args], cwd=out, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            sys.exit(f"openssl {args[0]} failed in {out}: {run.stderr.strip()}")

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", DAYS,
            "-subj", "/CN=acknet shop demo CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOST}",
            "-keyout", "tls.key", "-out", "tls.csr")  # fmt: skip
    (out / "san.cnf").write_text(f"subjectAltName=DNS:{HOST}\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", DAYS, "-extfile", "san.cnf", "-out", "tls.crt")  # fmt: skip


def secret_document(out: Path) -> str:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET[1], "namespace": SECRET[0]},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": (out / "tls.crt").read_text(), "tls.key": (out / "tls.key").read_text()},
    }
    note = f"# Made by examples/shop/own_ca.py: signed by {out / 'ca.crt'}.\n"
    return note + yaml.dump(body, Dumper=_PemDumper, sort_keys=False)


class _PemDumper(yaml.SafeDumper):
    """Writes multi-line strings (the PEM texts) as literal blocks, as people write Secrets."""


_PemDumper.add_representer(
    str,
    lambda dumper, s: dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None),
)


def is_the_secret(text: str) -> bool:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    return (
        isinstance(meta, dict)
        and doc.get("kind") == "Secret"
        and (meta.get("namespace"), meta.get("name")) == SECRET
    )


def write_shop(out: Path) -> int:
    """Copies the shop's YAML files into ``out/shop``, the Secret's document replaced (the others keep
    their text and comments); how many documents were replaced."""
    folder = out / "shop"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    replaced = 0
    for path in sorted(SHOP.glob("*.yaml")):
        parts = path.read_text().split("\n---\n")
        for i, part in enumerate(parts):
            if is_the_secret(part):
                parts[i] = secret_document(out)
                replaced += 1
        (folder / path.name).write_text("\n---\n".join(parts))
    return replaced


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1]).resolve()
    make_ca(out)
    if write_shop(out) != 1:
        sys.exit(f"{SHOP}: expected one Secret {'/'.join(SECRET)} to replace")
    print(out / "shop")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
