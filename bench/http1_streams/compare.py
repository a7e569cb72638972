"""Sets an agent's JSON spans (stdin) against the lengths streams_client.py
read (the file named by the first argument): per side, how many spans came
out and how many were partial or had another response body size."""

import json
import sys

lengths = json.load(open(sys.argv[1]))
spans = [json.loads(line) for line in sys.stdin if line.startswith("{")]
for kind in ("server", "client"):
    side = [s for s in spans if s.get("kind") == kind]
    wrong = [
        s["path"]
        for s in side
        if s.get("partial") or s.get("response_body_bytes") != lengths.get(s["path"])
    ]
    print(f"  {kind}: {len(side)} spans of {len(lengths)}, {len(wrong)} partial or off", end="")
    print(f" ({' '.join(sorted(wrong, key=len)[:6])}{' ...' if len(wrong) > 6 else ''})" if wrong else "")
