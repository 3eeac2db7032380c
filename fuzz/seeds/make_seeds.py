#!/usr/bin/env python3
"""Writes the seed corpora from the example bundle's decision tests (policies/tests/*.yaml).

check_request: byte 0 (raw protobuf CheckRequest) + each case, and byte 1 (BatchCheckRequest)
+ each file's cases; request_json: byte 0 (JSON text) + each case's context and entity
attributes, and lists nested at the depth limit and one past it; tuple_line: the example's
tuple files. Run from the repository root:
python3 fuzz/seeds/make_seeds.py
"""
import glob
import json
import os
import re
import shutil

import yaml


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def string(number, text):
    return field(number, 2, text.encode())


def uid(value):
    if isinstance(value, dict):
        return value["type"], value["id"]
    m = re.fullmatch(r'(.+)::"(.*)"', value)
    return m.group(1), m.group(2)


def entity_ref(number, value):
    t, i = uid(value)
    return field(number, 2, string(1, t) + string(2, i))


def value(v):
    # google.protobuf.Value: null 1, number 2 (double), string 3, bool 4, struct 5, list 6
    import struct as pystruct
    if v is None:
        return field(1, 0, varint(0))
    if isinstance(v, bool):
        return field(4, 0, varint(int(v)))
    if isinstance(v, (int, float)):
        return field(2, 1, pystruct.pack("<d", float(v)))
    if isinstance(v, str):
        return string(3, v)
    if isinstance(v, list):
        return field(6, 2, b"".join(field(1, 2, value(x)) for x in v))
    return field(5, 2, struct_(v))


def struct_(d):
    return b"".join(field(1, 2, string(1, k) + field(2, 2, value(v))) for k, v in d.items())


def check_request(r):
    out = entity_ref(1, r["principal"]) + string(2, r["action"]) + entity_ref(3, r["resource"])
    if r.get("context"):
        out += field(4, 2, struct_(r["context"]))
    for e in r.get("entities") or []:
        body = entity_ref(1, e["uid"])
        if e.get("attrs"):
            body += field(2, 2, struct_(e["attrs"]))
        for p in e.get("parents") or []:
            body += entity_ref(3, p)
        out += field(5, 2, body)
    for p in r.get("properties") or []:
        out += string(6, p)
    return out


def main():
    seeds = "fuzz/seeds"
    for target in ("check_request", "request_json", "tuple_line"):
        shutil.rmtree(os.path.join(seeds, target), ignore_errors=True)
        os.makedirs(os.path.join(seeds, target))
    for path in sorted(glob.glob("policies/tests/*.yaml")):
        stem = os.path.basename(path)[: -len(".yaml")]
        cases = yaml.safe_load(open(path))["cases"]
        requests = [check_request(c["request"]) for c in cases]
        for n, (case, encoded) in enumerate(zip(cases, requests)):
            with open(f"{seeds}/check_request/{stem}-{n:02}", "wb") as f:
                f.write(b"\x00" + encoded)
            r = case["request"]
            docs = [r.get("context")] + [e.get("attrs") for e in r.get("entities") or []]
            for m, doc in enumerate(d for d in docs if d):
                with open(f"{seeds}/request_json/{stem}-{n:02}-{m}", "wb") as f:
                    f.write(b"\x00" + json.dumps(doc).encode())
        with open(f"{seeds}/check_request/{stem}-batch", "wb") as f:
            f.write(b"\x01" + b"".join(field(1, 2, r) for r in requests))
    # Nesting at the JSON depth limit (32) and one past it.
    for depth in (32, 33):
        with open(f"{seeds}/request_json/nested-{depth}", "wb") as f:
            f.write(b"\x00" + b"[" * depth + b"1" + b"]" * depth)
    for path in sorted(glob.glob("policies/*.tuples")):
        shutil.copy(path, f"{seeds}/tuple_line/")


if __name__ == "__main__":
    main()
