"""The protocol's codec (luzia/protocol.py): what a Submit costs to build, check, encode and
decode, and what importing the module costs in a fresh process. With `--against DIR` the
same figures for the `luzia` package under DIR (e.g. `git archive` of an earlier commit)
are measured in the same run, interleaved, and printed beside ours:

  (a) import of luzia.protocol in a fresh process, p50 (and with one Submit built, checked
      and encoded: a one-shot submit's share);
  (b) Submits per second through encode + decode, of a built message and with the checked
      build included;
  (c) decode + check of 10k Submit frames;
  (d) the bad frames each refuses (the same list for both).

Run: .venv/bin/python bench/protocol_codec.py [--against DIR] [runs]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

FIELDS: dict[str, Any] = dict(
    id="113754-a2f5c10e9b3d", project="demo", task="fix the login button", user="u1",
    priority=1, type="code", timeout=3600.0, max_retries=2, after=["113700-0123456789ab"],
    metadata={"ticket": "LZ-15", "n": 3}, workdir="/srv/demo", submitted_at=1796032788.15568)
BUILD = ("s = p.Submit(job=p.JobSpec(id='113754-a2f5c10e9b3d', project='demo', task='x', "
         "user='u1')); getattr(p, 'check', lambda m: m)(s); p.encode(s)")


def bad_bodies() -> dict[str, bytes]:
    """Bodies with one thing wrong. The last two are a newer peer's extra fields: refused by
    the first release, ignored since protocol 2 (docs/PROTOCOL.md, "Versions")."""
    import msgpack

    def job(**change: Any) -> bytes:
        body = {k: v for k, v in {**FIELDS, **change}.items() if v is not ...}
        return msgpack.packb({"job": body}, use_bin_type=True)
    return {
        "missing id": job(id=...), "bad id": job(id="113754-XYZ"),
        "project with a space": job(project="my project"), "priority true": job(priority=True),
        "priority 4": job(priority=4), "priority a string": job(priority="2"),
        "timeout NaN": job(timeout=float("nan")), "timeout negative": job(timeout=-1.0),
        "submitted_at inf": job(submitted_at=float("inf")),
        "task too long": job(task="x" * (64 * 1024 + 1)), "task as bytes": job(task=b"x"),
        "type too long": job(type="t" * 33), "65 dependencies": job(after=[FIELDS["id"]] * 65),
        "bad dependency": job(after=["nope"]), "metadata int key": job(metadata={1: "a"}),
        "metadata too big": job(metadata={"x": "y" * 16 * 1024}),
        "workdir too long": job(workdir="/" * 4097), "job not a map": msgpack.packb({"job": [1]}),
        "body not a map": msgpack.packb([1, 2]), "truncated": job()[:-3],
        "trailing bytes": job() + b"\x00", "not msgpack": b"\xc1",
        "unknown field (newer peer)": job(colour="red"),
        "extra field at top (newer peer)": msgpack.packb({"job": FIELDS, "x": 1}),
    }


def rate(fn: Any, n: int, repeat: int = 5) -> float:
    """Calls per second of fn(), best of `repeat` rounds of n (the least disturbed round)."""
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - t))
    return best


def measure() -> dict[str, Any]:
    """(b), (c), (d) for the luzia.protocol this interpreter imports."""
    from luzia import protocol as p
    from luzia.errors import ProtocolError

    def build() -> Any:
        msg = p.Submit(job=p.JobSpec(**FIELDS))
        return getattr(p, "check", lambda m: m)(msg)     # the first release checks on build
    msg = build()
    frames = [p.encode(p.Submit(job=p.JobSpec(**{**FIELDS, "id": f"113754-{i:012x}",
                                                 "task": f"task {i}"}))) for i in range(10_000)]
    refused = []
    for name, body in bad_bodies().items():
        try:
            p.decode([p.VERSION, b"SUBMIT", body])
        except ProtocolError:
            refused.append(name)
    return {"roundtrip": rate(lambda: p.decode(p.encode(msg)), 20_000),
            "built": rate(lambda: p.decode(p.encode(build())), 20_000),
            "batch": rate(lambda: [p.decode(f) for f in frames], 1, 3) * 10_000,
            "refused": refused, "file": p.__file__}


def import_times(trees: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    sys.path.insert(0, HERE)
    from _common import PY, median, startup_times
    argvs, envs = {}, {}
    for name, tree in trees.items():
        argvs[f"{name} import"] = [PY, "-c", "import luzia.protocol"]
        argvs[f"{name} +1"] = [PY, "-c", "from luzia import protocol as p; " + BUILD]
        envs[name] = {**os.environ, "PYTHONPATH": tree, "PYTHONSAFEPATH": "1"}
    out: dict[str, dict[str, float]] = {name: {} for name in trees}
    for name in trees:      # startup_times interleaves the commands of one environment
        times = startup_times({k: v for k, v in argvs.items() if k.startswith(name + " ")},
                              runs, envs[name])
        out[name] = {k.split(" ", 1)[1]: median(v) * 1000 for k, v in times.items()}
    return out


def main(argv: list[str]) -> None:
    against = None
    if argv[:1] == ["--against"]:
        against, argv = os.path.abspath(argv[1]), argv[2:]
    runs = int(argv[0]) if argv else 20
    trees = {"ours": ROOT, **({"against": against} if against else {})}
    results: dict[str, dict[str, Any]] = {}
    for _ in range(2):      # interleaved, best of two, so both see the same load
        for name, tree in trees.items():
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure"],
                                 env={**os.environ, "PYTHONPATH": tree, "PYTHONSAFEPATH": "1"},
                                 check=True, capture_output=True, text=True).stdout
            got = json.loads(out)
            old = results.get(name)
            results[name] = got if old is None else {
                k: max(v, old[k]) if isinstance(v, float) else v for k, v in got.items()}
    imports = import_times(trees, runs)
    print(f"protocol codec, load {' '.join(f'{x:.1f}' for x in os.getloadavg())}:")
    for name, r in results.items():
        print(f"  {name:8} {r['file']}\n"
              f"    (a) import p50 {imports[name]['import']:.1f} ms, with one Submit built, "
              f"checked and encoded {imports[name]['+1']:.1f} ms\n"
              f"    (b) encode+decode {r['roundtrip']:,.0f}/s; with a checked build "
              f"{r['built']:,.0f}/s\n"
              f"    (c) decode+check of 10k frames {r['batch']:,.0f}/s\n"
              f"    (d) refuses {len(r['refused'])} of {len(bad_bodies())} bad bodies; accepts: "
              f"{', '.join(sorted(set(bad_bodies()) - set(r['refused']))) or 'none'}")
    if against:
        a, b = results["ours"], results["against"]
        print(f"  ours / against: (b) {a['roundtrip'] / b['roundtrip']:.1f}x, checked build "
              f"{a['built'] / b['built']:.1f}x, (c) {a['batch'] / b['batch']:.1f}x")


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        print(json.dumps(measure()))
    else:
        main(sys.argv[1:])
