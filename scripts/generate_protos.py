"""Generate the Python messages, gRPC stubs and .pyi files from protos/, and the contract's
descriptor set with its comments (ekyc/v1/contract.binpb: the HTTP gateway's OpenAPI
document takes its descriptions from it).

Usage: python scripts/generate_protos.py [OUT_DIR]   (default: client/generated)
The committed output must equal a fresh run; tests/test_contract.py checks it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
# google/api/annotations.proto and http.proto, imported by the contract: only on the include
# path. Their Python modules come from the googleapis-common-protos package at run time.
GOOGLEAPIS = ROOT / "third_party" / "googleapis"
DEFAULT_OUT = ROOT / "client" / "generated"
DESCRIPTOR_SET = "ekyc/v1/contract.binpb"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every .proto under protos/ and return the files written."""
    (out_dir / DESCRIPTOR_SET).parent.mkdir(parents=True, exist_ok=True)
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{GOOGLEAPIS}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--descriptor_set_out={out_dir / DESCRIPTOR_SET}",
        "--include_source_info",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.suffix in (".py", ".pyi", ".binpb"))
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for path in generate(out):
        print(path.relative_to(out))
