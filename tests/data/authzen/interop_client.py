#!/usr/bin/env python3
"""Replays the AuthZEN interop decision vectors against a PDP over HTTP.

Standard library only (urllib, json): the client knows nothing of Verdict but the AuthZEN
endpoints. Usage: interop_client.py BASE_URL FILE...; each FILE is one of the vector files in
this directory (its name says which endpoint it exercises). Prints one line per file,
"<file>: <n> passed", and every failure; exits 1 if any case fails.
"""

import json
import sys
import urllib.error
import urllib.request
import uuid


def post(base, path, body):
    request_id = str(uuid.uuid4())
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Request-ID": request_id},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            echoed = response.headers.get("X-Request-ID")
            payload = json.loads(response.read())
            status = response.status
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    if echoed != request_id:
        raise AssertionError(f"{path}: X-Request-ID {request_id!r} came back as {echoed!r}")
    return status, payload


def search_all(base, kind, request):
    """Follows next_token to the end; returns every result."""
    results, body, pages = [], dict(request), 0
    while True:
        status, answer = post(base, f"/access/v1/search/{kind}", body)
        if status != 200:
            return None, f"status {status}: {answer}"
        results.extend(answer.get("results", []))
        token = (answer.get("page") or {}).get("next_token", "")
        pages += 1
        if not token or pages > 1000:
            return results, None
        body = dict(request, page={"token": token})


def key(entity):
    return json.dumps(entity, sort_keys=True)


def run(base, path):
    name = path.rsplit("/", 1)[-1]
    with open(path) as f:
        vectors = json.load(f)
    passed, failures = 0, []
    if name.startswith("search-"):
        kind = name[len("search-"):-len(".json")]
        for case in vectors["evaluation"]:
            results, error = search_all(base, kind, case["request"])
            expected = sorted(key(e) for e in case["expected"]["results"])
            if error is None and sorted(key(r) for r in results) == expected:
                passed += 1
            else:
                failures.append(f"{case['request']}: expected {expected}, got {error or results}")
    else:
        for case in vectors.get("evaluation", []):
            status, answer = post(base, "/access/v1/evaluation", case["request"])
            if status == 200 and answer.get("decision") is case["expected"]:
                passed += 1
            else:
                failures.append(f"{case['request']}: expected {case['expected']}, got {status} {answer}")
        for case in vectors.get("evaluations", []):
            status, answer = post(base, "/access/v1/evaluations", case["request"])
            got = [e.get("decision") for e in answer.get("evaluations", [])] if status == 200 else None
            expected = [e["decision"] for e in case["expected"]]
            if got == expected:
                passed += 1
            else:
                failures.append(f"{case['request']}: expected {expected}, got {status} {answer}")
    print(f"{name}: {passed} passed")
    for failure in failures:
        print(f"FAIL {name}: {failure}")
    return not failures


def main():
    base = sys.argv[1].rstrip("/")
    ok = all([run(base, path) for path in sys.argv[2:]])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
