"""Shares of a server's CPU samples by part of the request path.

Reads `perf script -F comm,tid,ip,sym` output (call stacks, innermost frame first) and prints a
Markdown table. Most parts are inclusive: a sample counts when any frame of its stack matches,
so nested parts are shares of their parents. The tower layers wrap the whole request, so for
them a sample counts only when the innermost of Verdict's own frames is the layer's (its own
work and the libraries it calls, not the service inside it). Run by benches/profile.sh.
"""

import re
import sys

PARTS = [
    ("the Check handler: conversion, preparation, decision, metrics",
     r"AuthorizationService as .*::check"),
    ("… the decision (`engine::decide`)", r"verdict::engine::decide::decide"),
    ("… … Cedar's evaluation (`is_authorized`)", r"cedar_policy::api::Authorizer::is_authorized"),
    ("… … the slice and its relation searches", r"verdict::engine::slice::build"),
    ("… request preparation", r"verdict::engine::request::Request::prepare"),
    ("… decision metrics", r"verdict::telemetry::metrics::record_decision"),
    ("kernel: `writev` of responses (and loopback delivery to the client)", r"^do_writev$"),
    ("kernel: `recvfrom`", r"^__sys_recvfrom$"),
    ("HTTP/2 header decoding (HPACK)", r"^<?h2::hpack|h2::hpack::decoder"),
    ("protobuf decoding of the request", r"CheckRequest as prost::message::Message>::merge"),
    ("layer (own work): gRPC metrics", "own:" + r"verdict::server::grpc_metrics::|record_grpc"),
    ("layer (own work): deadline", "own:" + r"verdict::server::limits::Deadline"),
    ("layer (own work): load shedding", "own:" + r"verdict::server::limits::Shedding"),
    ("layer (own work): authentication", "own:" + r"verdict::server::auth::"),
    ("layer (own work): idle timer, with the socket reads it wraps",
     "own:" + r"verdict::server::limits::IdleTimeout"),
    ("layer (own work): requests counted per connection for the idle timer",
     "own:" + r"verdict::server::limits::(TrackRequests|RequestInProgress|GuardedBody"
     r"|connection_activity)"),
]

OWN_FRAME = re.compile(r"^<?verdict::")


def matches(pattern, stack):
    if pattern.startswith("own:"):
        regex = re.compile(pattern[len("own:"):])
        own = next((frame for frame in stack if OWN_FRAME.search(frame)), None)
        return own is not None and regex.search(own) is not None
    regex = re.compile(pattern)
    return any(regex.search(frame) for frame in stack)


def stacks(path):
    stack = None
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip():
                if stack is not None:
                    yield stack
                stack = None
            elif not line[0].isspace():
                stack = []
            elif stack is not None:
                parts = line.strip().split(None, 1)
                stack.append(parts[1] if len(parts) > 1 else parts[0])
    if stack:
        yield stack


def main():
    samples = list(stacks(sys.argv[1]))
    print(f"{len(samples)} samples")
    print()
    print("| part | share of samples |")
    print("|---|---|")
    for name, pattern in PARTS:
        hits = sum(1 for s in samples if matches(pattern, s))
        print(f"| {name} | {100 * hits / max(len(samples), 1):.1f}% |")


if __name__ == "__main__":
    main()
