"""Spike (issue 15): msgspec against luzia/protocol.py for the Submit message.

Submit and JobSpec below are msgspec Structs with the same fields, defaults and limits as
luzia/protocol.py's (the script checks the constants against it before measuring); what a
Meta constraint cannot say (metadata's encoded size) is checked in __post_init__, which
msgspec also runs on decode. The wire format is the same map, so each side decodes the
other's frames. Prints, ours beside msgspec's:
  (a) import time in a fresh process of the module the CLI's submit path needs, alone and
      with one Submit built and encoded (ours builds its field checkers on first use);
  (b) Submit messages per second through encode + decode, of a built message and with the
      build (validated: ours in __post_init__, msgspec by convert()) included;
  (c) decode + validate of a batch of 10k Submit frames;
and whether both reject the same bad frames.

msgspec is not a dependency of Luzia: `make bench-msgspec` installs it alone into
bench/.spike-site (this interpreter's own msgspec wins if it has one) and runs this script.

Run: .venv/bin/python bench/protocol_msgspec.py [runs]
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# msgspec alone (no typing_extensions, as in Luzia's venv), put there by `make bench-msgspec`
SPIKE_SITE = os.path.join(HERE, ".spike-site")
if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.path.append(SPIKE_SITE)     # after our venv: only what it lacks comes from there

try:
    import msgspec
    from msgspec import Meta, Struct
except ImportError:
    if __name__ == "__main__":
        print("protocol spike: skipped: msgspec not found (`make bench-msgspec` installs it "
              "in bench/.spike-site)")
        sys.exit(0)
    raise

from luzia.errors import ProtocolError  # noqa: E402
from luzia.ids import JOB_ID_RE  # noqa: E402

# the same numbers as luzia/protocol.py (checked in main(), not imported: importing
# luzia.protocol here would put its import time into ours)
VERSION = b"LZ1"
MAX_MESSAGE = 1 << 20
MAX_TASK = 64 * 1024
MAX_METADATA = 16 * 1024
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
JOB_ID = JOB_ID_RE.pattern

JobId = Annotated[str, Meta(pattern=JOB_ID)]
Name = Annotated[str, Meta(pattern=NAME)]


class JobSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """What to run: made by the client, stored by the broker, handed to an agent in Assign."""

    id: JobId
    project: Name
    task: Annotated[str, Meta(max_length=MAX_TASK)]
    user: Name
    priority: Annotated[int, Meta(ge=0, le=3)] = 2
    type: Annotated[str, Meta(max_length=32)] = ""
    timeout: Annotated[float, Meta(ge=0, le=30 * 86400)] = 0.0
    max_retries: Annotated[int, Meta(ge=0, le=100)] = 0
    after: Annotated[list[JobId], Meta(max_length=64)] = []
    metadata: dict[str, Any] = {}
    workdir: Annotated[str, Meta(max_length=4096)] = ""
    submitted_at: Annotated[float, Meta(ge=0, le=2**63)] = 0.0   # ours: finite, 0..2**63

    def __post_init__(self) -> None:
        if self.metadata and len(_ENCODER.encode(self.metadata)) > MAX_METADATA:
            raise ValueError(f"metadata larger than {MAX_METADATA} bytes")


class Submit(Struct, frozen=True, forbid_unknown_fields=True):
    """A new job, fired by the CLI (or luzia.client) over PUSH. Idempotent by job id."""

    job: JobSpec


KIND = b"SUBMIT"
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Submit)


def encode(msg: Submit) -> list[bytes]:
    return [VERSION, KIND, _ENCODER.encode(msg)]


def decode(frames: list[bytes]) -> Submit:
    """The same frame checks as protocol.decode, then one C-level decode + validate."""
    if len(frames) != 3:
        raise ProtocolError(f"expected 3 frames, got {len(frames)}")
    version, kind, body = frames
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {bytes(version[:16])!r}")
    if kind != KIND:
        raise ProtocolError(f"unknown message type {bytes(kind[:32])!r}")
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message body of {len(body)} bytes exceeds {MAX_MESSAGE}")
    try:
        return _DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError(f"Submit: {exc}") from None


def build(**fields: Any) -> Submit:
    """A validated Submit from keyword fields (a Struct's own __init__ checks types only
    where __post_init__ does)."""
    try:
        return Submit(job=msgspec.convert(fields, JobSpec))
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"JobSpec: {exc}") from None



# ---------------------------------------------------------------------------
# the measurements (imported only when run, so importing this module costs what a
# msgspec protocol module would)

FIELDS: dict[str, Any] = dict(
    id="113754-a2f5c10e9b3d", project="demo", task="fix the login button", user="u1",
    priority=1, type="code", timeout=3600.0, max_retries=2, after=["113700-0123456789ab"],
    metadata={"ticket": "LZ-15", "n": 3}, workdir="/srv/demo", submitted_at=1796032788.15568)


def check_same_limits() -> None:
    from luzia import protocol
    assert (VERSION, MAX_MESSAGE, MAX_TASK, MAX_METADATA, NAME) == (
        protocol.VERSION, protocol.MAX_MESSAGE, protocol.MAX_TASK, protocol.MAX_METADATA,
        protocol.NAME_RE.pattern), "the spike's limits differ from luzia/protocol.py"
    ours = protocol.JobSpec(**FIELDS)
    assert msgspec.structs.asdict(build(**FIELDS).job) == protocol.to_plain(ours)


def bad_bodies() -> dict[str, bytes]:
    """Frames' bodies both decoders must refuse, each with one thing wrong."""
    import msgpack

    def job(**change: Any) -> bytes:
        body = {k: v for k, v in {**FIELDS, **change}.items() if v is not ...}
        return msgpack.packb({"job": body}, use_bin_type=True)
    return {
        "missing id": job(id=...), "unknown field": job(colour="red"),
        "bad id": job(id="113754-XYZ"), "project with a space": job(project="my project"),
        "priority true": job(priority=True), "priority 4": job(priority=4),
        "priority a string": job(priority="2"), "timeout NaN": job(timeout=float("nan")),
        "timeout negative": job(timeout=-1.0), "submitted_at inf": job(submitted_at=float("inf")),
        "task too long": job(task="x" * (MAX_TASK + 1)), "task as bytes": job(task=b"x"),
        "type too long": job(type="t" * 33), "65 dependencies": job(after=[FIELDS["id"]] * 65),
        "bad dependency": job(after=["nope"]), "metadata int key": job(metadata={1: "a"}),
        "metadata too big": job(metadata={"x": "y" * MAX_METADATA}),
        "workdir too long": job(workdir="/" * 4097), "job not a map": msgpack.packb({"job": [1]}),
        "body not a map": msgpack.packb([1, 2]), "extra field at top": msgpack.packb(
            {"job": FIELDS, "x": 1}), "truncated": job()[:-3], "trailing bytes": job() + b"\x00",
        "not msgpack": b"\xc1",
    }


def strictness() -> str:
    from luzia import protocol
    both, only = 0, []
    for name, body in bad_bodies().items():
        refused = []
        for dec in (protocol.decode, decode):
            try:
                dec([VERSION, KIND, body])
                refused.append(False)
            except ProtocolError:
                refused.append(True)
        if all(refused):
            both += 1
        else:
            only.append(f"{name}: ours {'refuses' if refused[0] else 'accepts'}, msgspec "
                        f"{'refuses' if refused[1] else 'accepts'}")
    return f"{both} of {len(bad_bodies())} bad frames refused by both" + (
        "; differ: " + "; ".join(only) if only else "")


def import_times(runs: int) -> dict[str, float]:
    """Fresh-process p50, ms: each command gets the same sys.path set-up."""
    sys.path.insert(0, HERE)
    from _common import PY, median, startup_times
    prefix = f"import sys; sys.path[:0] = [{HERE!r}, {ROOT!r}]; sys.path.append({SPIKE_SITE!r}); "
    one = ("{m}.encode({m}.Submit(job={m}.JobSpec(id='113754-a2f5c10e9b3d', project='demo', "
           "task='x', user='u1')))")
    argvs = {"pass": [PY, "-c", prefix],
             "msgpack": [PY, "-c", prefix + "import msgpack"],
             "ours": [PY, "-c", prefix + "import luzia.protocol"],
             "msgspec": [PY, "-c", prefix + "import protocol_msgspec"],
             "ours+1": [PY, "-c", prefix + "from luzia import protocol as m; " + one.format(m="m")],
             "msgspec+1": [PY, "-c", prefix + "import protocol_msgspec as m; m.build(id='113754-"
                           "a2f5c10e9b3d', project='demo', task='x', user='u1'); "
                           "m.encode(m.Submit(job=m.JobSpec(id='113754-a2f5c10e9b3d', "
                           "project='demo', task='x', user='u1')))"]}
    return {k: median(v) * 1000 for k, v in startup_times(argvs, runs).items()}


def rate(fn: Any, n: int, repeat: int = 5) -> float:
    """Calls per second of fn(), best of `repeat` rounds of n (the least disturbed round)."""
    import time
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - t))
    return best


def class_cost(n: int = 200) -> float:
    """Microseconds to define JobSpec + Submit as msgspec Structs, from source."""
    import inspect
    import time
    src = inspect.getsource(JobSpec) + inspect.getsource(Submit)
    code = compile(src, "spike", "exec")
    t = time.perf_counter()
    for _ in range(n):
        exec(code, {**globals()})
    return (time.perf_counter() - t) / n * 1e6


def main(runs: int = 30) -> None:
    from luzia import protocol
    check_same_limits()
    print(f"protocol spike: msgspec {msgspec.__version__} against luzia/protocol.py, Submit")
    print(f"strictness: {strictness()}")
    t = import_times(runs)
    print(f"(a) import, fresh process, p50 (python -c pass {t['pass']:.1f} ms, import msgpack "
          f"{t['msgpack']:.1f} ms): luzia.protocol {t['ours']:.1f} ms, msgspec module "
          f"{t['msgspec']:.1f} ms; with one Submit built and encoded: ours {t['ours+1']:.1f} ms, "
          f"msgspec {t['msgspec+1']:.1f} ms")
    print(f"    defining JobSpec + Submit as Structs: {class_cost():.0f} µs (the whole protocol "
          f"has 17 message classes)")
    ours_msg, theirs_msg = protocol.Submit(job=protocol.JobSpec(**FIELDS)), build(**FIELDS)
    n = 20_000
    r = {"ours": rate(lambda: protocol.decode(protocol.encode(ours_msg)), n),
         "msgspec": rate(lambda: decode(encode(theirs_msg)), n),
         "ours_built": rate(lambda: protocol.decode(protocol.encode(
             protocol.Submit(job=protocol.JobSpec(**FIELDS)))), n),
         "msgspec_built": rate(lambda: decode(encode(build(**FIELDS))), n)}
    print(f"(b) encode + decode of a Submit: ours {r['ours']:,.0f}/s, msgspec {r['msgspec']:,.0f}/s "
          f"({r['msgspec'] / r['ours']:.1f}x); with a validated build: ours "
          f"{r['ours_built']:,.0f}/s, msgspec {r['msgspec_built']:,.0f}/s "
          f"({r['msgspec_built'] / r['ours_built']:.1f}x)")
    frames = [protocol.encode(protocol.Submit(job=protocol.JobSpec(
        **{**FIELDS, "id": f"113754-{i:012x}", "task": f"task {i}"}))) for i in range(10_000)]
    batch = {"ours": rate(lambda: [protocol.decode(f) for f in frames], 1),
             "msgspec": rate(lambda: [decode(f) for f in frames], 1)}
    print(f"(c) decode + validate 10k Submit frames: ours {1000 / batch['ours']:.1f} ms "
          f"({10_000 * batch['ours']:,.0f}/s), msgspec {1000 / batch['msgspec']:.1f} ms "
          f"({10_000 * batch['msgspec']:,.0f}/s), {batch['msgspec'] / batch['ours']:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
