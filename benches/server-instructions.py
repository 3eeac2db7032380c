"""Sends N Check requests to a Verdict server, one at a time over one channel, alternating an
allowed and a denied question of the example bundle. Used by benches/server-instructions.sh."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples", "clients", "python"))
import check  # noqa: E402  (generates the verdict.v1 modules once)

check.generate()
sys.path.insert(0, check.GENERATED)
import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402
from verdict.v1 import authorization_pb2 as pb  # noqa: E402
from verdict.v1 import authorization_pb2_grpc as rpc  # noqa: E402

endpoint, n = sys.argv[1], int(sys.argv[2])
context = struct_pb2.Struct()
context.update({"scopes": ["documents:read"]})
requests = [
    pb.CheckRequest(principal=pb.EntityRef(type="User", id=user), action="read",
                    resource=pb.EntityRef(type="Document", id="roadmap"), context=context)
    for user in ("bob", "mallory")
]
answers = {}
with grpc.insecure_channel(endpoint) as channel:
    stub = rpc.AuthorizationStub(channel)
    for i in range(n):
        decision = stub.Check(requests[i % 2], timeout=60).decision
        answers[decision] = answers.get(decision, 0) + 1
print(f"{answers.get(pb.DECISION_ALLOW, 0)} allowed, {answers.get(pb.DECISION_DENY, 0)} denied")
