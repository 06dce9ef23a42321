"""The provisioned test host as the machine sees it: address, domain, pebble's CA.

Read from the Ansible inventory the harness provisions (``KT_INVENTORY``, default
inventories/local; host ``KT_TESTHOST``, default kt-test), so these tests follow
whatever the inventory says instead of repeating it. HTTP requests go through the
machine's curl with ``--resolve``: the test domain exists only in pebble's DNS.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INVENTORY = os.environ.get("KT_INVENTORY", str(REPO / "inventories" / "local"))
HOST_NAME = os.environ.get("KT_TESTHOST", "kt-test")
STATE_DIR = Path(os.environ.get("KT_TESTHOST_STATE", "/var/lib/knowledgetree-testhost"))
# pebble makes a new issuing root at every start; scripts/pebble.sh saves the live one.
PEBBLE_ISSUER_ROOT = STATE_DIR / "pebble" / "issuer-root.pem"


@functools.cache
def host_vars() -> dict:
    """The inventory variables of the test host (raw, untemplated)."""
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", INVENTORY, "--host", HOST_NAME],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg")},
    ).stdout
    return json.loads(out)


def address() -> str:
    return host_vars()["ansible_host"]


def domain() -> str:
    return host_vars()["kt_domain"]


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; the last value of repeated headers
    body: bytes


def curl(
    url_path: str,
    *,
    scheme: str = "https",
    extra: tuple[str, ...] = (),
    site: tuple[str, str] | None = None,
    stdin: bytes | None = None,
    port: int | None = None,
    max_time: int = 30,
) -> Response:
    """One request to the test host by its domain name, verified against pebble's root.

    ``site``: (domain, address) of another test host than the inventory's; ``stdin``: what
    curl reads for ``--data-binary @-``; ``port``: another than the scheme's own (the
    compose test's nginx listens on loopback high ports).
    """
    name, ip = site or (domain(), address())
    port = port or (443 if scheme == "https" else 80)
    port_part = "" if port in (80, 443) else f":{port}"
    cmd = [
        "curl", "--silent", "--show-error", "--max-time", str(max_time), "--include",
        "--resolve", f"{name}:{port}:{ip}",
        "--cacert", str(PEBBLE_ISSUER_ROOT),
        f"{scheme}://{name}{port_part}{url_path}", *extra,
    ]  # fmt: skip
    raw = subprocess.run(cmd, check=True, capture_output=True, input=stdin).stdout
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(status, headers, body)


def api(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: dict | None = None,
    form: tuple[str, ...] = (),
    site: tuple[str, str] | None = None,
    **curl_options,
) -> Response:
    """A request to the app's API (/api + path) through nginx, as a browser would send it
    (``curl_options``: ``port``, ``max_time``, as for `curl`)."""
    extra = ["-X", method, "-H", "Expect:"]  # no 100-continue in the parsed head
    if token:
        extra += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        extra += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    for field in form:
        extra += ["-F", field]
    return curl(f"/api{path}", extra=tuple(extra), site=site, **curl_options)


def sse_events(text: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent event stream, in order."""
    events, name = [], None
    for line in text.splitlines():
        if line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:") and name:
            events.append((name, json.loads(line.partition(":")[2])))
            name = None
    return events


def ok_json(response: Response, status: int):
    """The JSON body of a response that must have this status."""
    assert response.status == status, response.body.decode(errors="replace")[:500]
    return json.loads(response.body)
