"""Asks Verdict one question over gRPC with grpcio and prints the answer as `verdict check` does
(without the policies' file:line, which only the bundle on disk knows).

    pip install grpcio==1.85.1 grpcio-tools==1.85.1
    python3 check.py 127.0.0.1:50051 User bob read Document roadmap '{"scopes": ["documents:read"]}'

The Python types are generated from the repository's proto/ on first run (grpcio-tools' protoc,
into ./generated/). Nothing here is specific to Verdict beyond the .proto files.
"""

import importlib.resources
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "..", "proto")
GENERATED = os.path.join(HERE, "generated")


def generate():
    """Generates the verdict.v1 modules with grpcio-tools, once."""
    if os.path.exists(os.path.join(GENERATED, "verdict", "v1", "authorization_pb2_grpc.py")):
        return
    from grpc_tools import protoc

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    os.makedirs(GENERATED, exist_ok=True)
    for name in ("authorization", "relationships"):
        code = protoc.main(
            [
                "protoc",
                f"-I{PROTO}",
                f"-I{well_known}",
                f"--python_out={GENERATED}",
                f"--grpc_python_out={GENERATED}",
                os.path.join(PROTO, "verdict", "v1", f"{name}.proto"),
            ]
        )
        if code != 0:
            sys.exit(f"protoc failed on {name}.proto")


def main(argv):
    if len(argv) not in (6, 7):
        sys.exit("usage: check.py HOST:PORT TYPE ID ACTION TYPE ID [CONTEXT_JSON]")
    endpoint, principal_type, principal_id, action, resource_type, resource_id = argv[:6]
    generate()
    sys.path.insert(0, GENERATED)
    import grpc
    from google.protobuf import struct_pb2
    from verdict.v1 import authorization_pb2 as pb
    from verdict.v1 import authorization_pb2_grpc as rpc

    context = struct_pb2.Struct()
    if len(argv) == 7:
        context.update(json.loads(argv[6]))
    request = pb.CheckRequest(
        principal=pb.EntityRef(type=principal_type, id=principal_id),
        action=action,
        resource=pb.EntityRef(type=resource_type, id=resource_id),
        context=context,
    )
    with grpc.insecure_channel(endpoint) as channel:
        answer = rpc.AuthorizationStub(channel).Check(request, timeout=10)
    print("ALLOW" if answer.decision == pb.DECISION_ALLOW else "DENY")
    for policy in answer.determining_policies:
        print(f"  determining policy: {policy}")
    if not answer.determining_policies:
        print("  determining policies: none (default deny)")
    print(f"  snapshot: {answer.snapshot_version}")


if __name__ == "__main__":
    main(sys.argv[1:])
