"""luzia-web's side of the broker: control requests, the PUB events, and the health socket.

One asyncio event loop (uvicorn's) serves every browser, so everything here is asyncio on
pyzmq's zmq.asyncio sockets: one DEALER carries every page's requests (each answer is
matched to its request by `req`), one SUB takes the broker's events and hands each to
every open event stream, and a ROUTER answers the supervisor's health ping from the same
loop (a loop that is stuck stops answering, and the supervisor restarts us).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Any

import zmq
import zmq.asyncio

from luzia import __version__, keys, protocol, rpc
from luzia.client import HINT, _listening
from luzia.config import Config
from luzia.errors import BadRequest, BrokerUnreachable, ProtocolError, error_for_code
from luzia.service import SocketFiles

log = logging.getLogger(__name__)

TIMEOUT = 5.0              # seconds a page waits for the broker
QUEUE_MAX = 256            # events buffered per stream; past that the stream is told to reload


class BrokerLink:
    """Control requests from many concurrent pages over one DEALER socket."""

    def __init__(self, cfg: Config, ctx: zmq.asyncio.Context, timeout: float = TIMEOUT) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.endpoint = cfg.endpoints.control
        self.timeout = timeout
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[protocol.Reply]] = {}
        self.sock: zmq.asyncio.Socket | None = None
        self.reader: asyncio.Task[None] | None = None

    def _socket(self) -> zmq.asyncio.Socket:
        if self.sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE + 64)
            keys.secure_client(sock, self.cfg, self.endpoint)
            sock.connect(self.endpoint)
            self.sock = sock
            self.reader = asyncio.get_running_loop().create_task(self._read(sock))
        return self.sock

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames = await sock.recv_multipart()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            try:
                reply = protocol.decode(frames, expect=(protocol.Reply,))
            except ProtocolError as exc:
                log.warning("dropped a bad reply from the broker: %s", exc)
                continue
            assert isinstance(reply, protocol.Reply)     # decode's expect= guarantees it
            future = self.waiting.pop(reply.req, None)
            if future is not None and not future.done():
                future.set_result(reply)

    async def call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        """One request; its result, or the LuziaError its reply names, or BrokerUnreachable."""
        if self.endpoint.startswith("ipc://") and not _listening(self.endpoint[6:]):
            self.reset()
            raise BrokerUnreachable(f"broker not reachable at {self.endpoint}; {HINT}")
        sock = self._socket()
        req = next(self.ids)
        future: asyncio.Future[protocol.Reply] = asyncio.get_running_loop().create_future()
        self.waiting[req] = future
        args = {k: v for k, v in args.items() if v is not None and v != [] and v != ""}
        try:
            await sock.send_multipart(protocol.encode(protocol.Request(
                req=req, op=op, args=args, protocol=protocol.PROTOCOL)))
            reply = await asyncio.wait_for(future, timeout or self.timeout)
        except TimeoutError:
            self.reset()        # requests queued for a broker that went away are dropped with it
            raise BrokerUnreachable(f"the broker did not answer {op} within "
                                    f"{timeout or self.timeout:.0f}s") from None
        finally:
            self.waiting.pop(req, None)
        if not reply.ok:
            raise error_for_code(reply.code, reply.error)
        return reply.result

    def reset(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            self.reader = None
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None
        for future in self.waiting.values():
            if not future.done():
                future.cancel()
        self.waiting.clear()


CLOSED = "closed"           # what a subscription gets once luzia-web is stopping
TIMED_OUT = "timed out"    # what it gets when nothing came in time


class Events:
    """The broker's PUB events, fanned out to every open event stream (server-sent events)."""

    def __init__(self, cfg: Config, ctx: zmq.asyncio.Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.subscriptions: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.received = 0

    def start(self) -> None:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE + 64)
        sock.setsockopt(zmq.SUBSCRIBE, b"job.")
        sock.setsockopt(zmq.SUBSCRIBE, b"agent.")
        keys.secure_client(sock, self.cfg, self.cfg.endpoints.events)
        sock.connect(self.cfg.endpoints.events)
        self.task = asyncio.get_running_loop().create_task(self._pump(sock))

    async def _pump(self, sock: zmq.asyncio.Socket) -> None:
        try:
            while True:
                frames = await sock.recv_multipart()
                try:
                    event = protocol.decode_event(frames)
                except ProtocolError as exc:
                    log.debug("dropped a bad event: %s", exc)
                    continue
                self.received += 1
                self.publish({"topic": event.topic, **event.data})
        except (zmq.ZMQError, asyncio.CancelledError):
            pass
        finally:
            sock.close(0)

    def publish(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscriptions):
            sub.put(event)

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        if self.closed:
            sub.put(CLOSED)
        return sub

    def stop(self) -> None:
        self.closed = True
        if self.task is not None:
            self.task.cancel()
        for sub in list(self.subscriptions):
            sub.put(CLOSED)


class Subscription:
    """One browser's share of the events: a bounded queue; when it falls QUEUE_MAX behind,
    what it missed becomes one None (reload the whole view)."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        events.subscriptions.add(self)

    def put(self, item: Any) -> None:
        if self.queue.qsize() >= QUEUE_MAX - 1 and item is not CLOSED:
            while not self.queue.empty():
                self.queue.get_nowait()
            item = None
        self.queue.put_nowait(item)

    async def get(self, timeout: float) -> Any:
        """The next event, None (missed some), CLOSED, or TIMED_OUT after `timeout` seconds."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return TIMED_OUT

    def close(self) -> None:
        self.events.subscriptions.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



class Health:
    """Answers the supervisor's `ping` on `ipc://<run dir>/web` from the web server's loop."""

    def __init__(self, endpoint: str, ctx: zmq.asyncio.Context) -> None:
        self.endpoint = endpoint
        self.ctx = ctx
        self.began = time.monotonic()
        self.bad = rpc.BadFrames(log, "the health socket")
        self.task: asyncio.Task[None] | None = None
        self.files = SocketFiles(log)

    def start(self) -> None:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 65536)
        self.files.bind(sock, self.endpoint)
        self.task = asyncio.get_running_loop().create_task(self._serve(sock))

    async def _serve(self, sock: zmq.asyncio.Socket) -> None:
        try:
            while True:
                self.files.check(time.monotonic())     # its file deleted: bound again
                if not await sock.poll(int(SocketFiles.EVERY * 1000)):
                    continue
                frames = await sock.recv_multipart()
                try:
                    req = rpc.parse(frames)
                except ProtocolError as exc:
                    self.bad.drop(str(exc))
                    continue
                reply = rpc.answer(req, self._op)
                await sock.send_multipart([frames[0], *protocol.encode(reply)])
        except (zmq.ZMQError, asyncio.CancelledError):
            pass
        finally:
            sock.close(0)
            if self.endpoint.startswith("ipc://"):
                try:
                    os.unlink(self.endpoint[6:])
                except OSError:
                    pass

    def _op(self, op: str, args: dict[str, Any]) -> Any:
        if op != "ping":
            raise BadRequest(f"unknown operation {op!r}; known: ping")
        return {"pid": os.getpid(), "version": __version__, "name": "web",
                "uptime": round(time.monotonic() - self.began, 3)}

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

