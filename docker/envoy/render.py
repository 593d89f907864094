#!/usr/bin/env python3
"""Write docker/envoy/envoy.yaml with your backends, listening address and admin address.

    python docker/envoy/render.py --backend 127.0.0.1:50051 --backend 127.0.0.1:50052 > /tmp/ekyc-envoy.yaml
    envoy -c /tmp/ekyc-envoy.yaml

Only the three marked places change (the lines ending in "# listen" and "# admin", and the
endpoint lines between "backends:" and "end of backends"); everything else is the shipped
file, so what is tested is what runs. A backend is HOST:PORT; a host name is resolved by
Envoy (STRICT_DNS: every address it resolves to becomes a backend). Standard library only.
Exit status: 0 written, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("envoy.yaml")
_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port); raises ValueError with a readable reason."""
    match = _ADDRESS.match(text.strip())
    if not match or not 0 < int(match.group("port")) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (port 1..65535)")
    return match.group("host").strip("[]"), int(match.group("port"))


def _socket_address(host: str, port: int) -> str:
    return f"socket_address: {{ address: {host}, port_value: {port} }}"


def render(backends: list[tuple[str, int]], listen: tuple[str, int] | None = None,
           admin: tuple[str, int] | None = None, template: str | None = None) -> str:
    """The shipped config with ``backends`` (and, if given, the listening and admin addresses)."""
    if not backends:
        raise ValueError("at least one backend is needed")
    lines = (template if template is not None else TEMPLATE.read_text()).splitlines()
    out: list[str] = []
    skipping = False
    found = {"listen": False, "admin": False, "backends": False}
    for line in lines:
        stripped = line.strip()
        if skipping:
            if stripped == "# end of backends":
                skipping = False
                out.append(line)
            continue
        if stripped.startswith("# backends:"):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(line)
            out += [f"{indent}- endpoint: {{ address: {{ {_socket_address(h, p)} }} }}" for h, p in backends]
            skipping = found["backends"] = True
            continue
        for name, value in (("listen", listen), ("admin", admin)):
            if stripped.endswith(f"# {name}"):
                found[name] = True
                if value is not None:
                    line = re.sub(r"socket_address: \{[^}]*\}", _socket_address(*value), line)
        out.append(line)
    missing = [name for name, seen in found.items() if not seen]
    if missing or skipping:
        raise ValueError(f"the template lacks its marked lines: {', '.join(missing) or 'end of backends'}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", action="append", required=True, metavar="HOST:PORT",
                        help="an ekyc-server address (repeat for each backend)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="where Envoy listens (default 0.0.0.0:50050)")
    parser.add_argument("--admin", metavar="HOST:PORT", help="Envoy's admin interface (default 127.0.0.1:9901)")
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    try:
        text = render([parse_address(b) for b in args.backend],
                      parse_address(args.listen) if args.listen else None,
                      parse_address(args.admin) if args.admin else None)
    except ValueError as error:
        print(f"render.py: {error}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
