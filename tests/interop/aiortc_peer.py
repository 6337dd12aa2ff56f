"""An aiortc WebRTC peer running the interop/benchmark script of peer-logic.js.

Same command line and JSON-lines protocol as runtime/examples/webrtc_peer.rs:
    python aiortc_peer.py --role offerer|answerer [--mode interop|bench]
        [--bulk-mib 16] [--msg 65536] [--rtt 200] [--pair]
aiortc gathers every candidate before it returns from setLocalDescription, so its description
carries them and it sends no candidate signals; it accepts trickled ones.
"""

import argparse
import asyncio
import json
import re
import resource
import statistics
import sys
import threading
import time
import zlib

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

SIZES = [0, 1, 16 * 1024, 64 * 1024, 256 * 1024]
INDEXED = 100
STEP_LIMIT = 120.0
HIGH_WATER = 1024 * 1024


def pattern(n, seed):
    return bytes(((j * 131 + seed * 7 + (j >> 8)) & 255) for j in range(n))


def indexed(k):
    return k.to_bytes(4, "big") + pattern(1020, k)


def bulk_chunk(base, k, n):
    c = bytearray(base[:n])
    if len(base) >= 4:
        head = k.to_bytes(4, "big")[: min(4, n)]
        c[: len(head)] = head
    return bytes(c)


class Chan:
    def __init__(self, dc):
        self.dc = dc
        self.queue = asyncio.Queue()
        self.opened = asyncio.Event()
        self.closed = False
        if dc.readyState == "open":
            self.opened.set()
        dc.on("open", self.opened.set)
        dc.on("message", lambda m: self.queue.put_nowait(m.encode() if isinstance(m, str) else bytes(m)))

        @dc.on("close")
        def _closed():
            self.closed = True

    async def recv(self, what):
        try:
            return await asyncio.wait_for(self.queue.get(), STEP_LIMIT)
        except asyncio.TimeoutError:
            raise RuntimeError(f"timed out waiting for {what}") from None

    async def send(self, data):
        deadline = time.monotonic() + STEP_LIMIT
        while self.dc.bufferedAmount > HIGH_WATER:
            if self.closed or time.monotonic() > deadline:
                raise RuntimeError("send: channel closed or stuck")
            await asyncio.sleep(0.002)
        self.dc.send(bytes(data))


class Peer:
    def __init__(self, role, mode, bulk, msg, rtt, send_signal):
        self.role, self.mode, self.bulk, self.msg, self.rtt = role, mode, bulk, msg, rtt
        self.send_signal = send_signal
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.remote_set = False
        self.early = []
        self.remote_max = 65536
        self.incoming = asyncio.Queue()
        self.pc.on("datachannel", lambda dc: self.incoming.put_nowait(Chan(dc)))

    def note_remote(self, sdp):
        m = re.search(r"a=max-message-size:(\d+)", sdp)
        self.remote_max = int(m.group(1)) if m else 65536
        if self.remote_max == 0:
            self.remote_max = 256 * 1024

    async def handle_signal(self, s):
        kind = s.get("type")
        if kind in ("offer", "answer"):
            self.note_remote(s["sdp"])
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=s["sdp"], type=kind))
            self.remote_set = True
            for c in self.early:
                await self.add_candidate(c)
            self.early = []
            if kind == "offer":
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                self.send_signal({"type": "answer", "sdp": self.pc.localDescription.sdp})
        elif kind == "candidate":
            if self.remote_set:
                await self.add_candidate(s["candidate"])
            else:
                self.early.append(s["candidate"])

    async def add_candidate(self, c):
        line = c.get("candidate", "")
        if not line:
            return
        cand = candidate_from_sdp(line.split(":", 1)[1] if line.startswith("candidate:") else line)
        cand.sdpMid = c.get("sdpMid")
        cand.sdpMLineIndex = c.get("sdpMLineIndex")
        await self.pc.addIceCandidate(cand)

    async def open_channels(self, specs):
        t0 = time.perf_counter()
        chans = {}
        if self.role == "offerer":
            for label, kw in specs:
                chans[label] = Chan(self.pc.createDataChannel(label, **kw))
            await self.pc.setLocalDescription(await self.pc.createOffer())
            self.send_signal({"type": "offer", "sdp": self.pc.localDescription.sdp})
        else:
            while len(chans) < len(specs):
                ch = await asyncio.wait_for(self.incoming.get(), 30)
                chans[ch.dc.label] = ch
        await asyncio.wait_for(asyncio.gather(*(c.opened.wait() for c in chans.values())), 30)
        return chans, (time.perf_counter() - t0) * 1e3

    def max_message(self):
        return min(self.remote_max, 256 * 1024)

    async def interop(self):
        chans, connect_ms = await self.open_channels(
            [
                ("reliable", {"ordered": True}),
                ("unordered", {"ordered": False}),
                ("lossy", {"ordered": False, "maxRetransmits": 0}),
            ]
        )
        reliable, unordered, lossy = chans["reliable"], chans["unordered"], chans["lossy"]
        mx = self.max_message()
        sizes = [s for s in SIZES if s <= mx]
        chunk = min(self.msg, mx)
        bulk = self.bulk
        base = pattern(chunk, 0)
        crc, left, k = 0, bulk, 0
        while left > 0:
            n = min(left, chunk)
            crc = zlib.crc32(bulk_chunk(base, k, n), crc)
            left -= n
            k += 1
        sent = {
            "sizes": sizes,
            "crcs": [zlib.crc32(pattern(s, i)) for i, s in enumerate(sizes)],
            "bulkBytes": bulk,
            "bulkCrc": crc,
            "unordered": INDEXED,
            "lossy": INDEXED,
        }

        async def sending():
            await reliable.send(json.dumps({"sizes": sizes, "bulk": bulk, "chunk": chunk}).encode())
            for i, s in enumerate(sizes):
                await reliable.send(pattern(s, i))
            for k in range(INDEXED):
                await unordered.send(indexed(k))
                await lossy.send(indexed(k))
            left, k = bulk, 0
            while left > 0:
                n = min(left, chunk)
                await reliable.send(bulk_chunk(base, k, n))
                left -= n
                k += 1

        def check_indexed(m):
            k = int.from_bytes(m[:4], "big") if len(m) >= 4 else -1
            return k if k >= 0 and m == indexed(k) else None

        async def unordered_recv():
            seen, intact, ooo, last = set(), True, False, -1
            while len(seen) < INDEXED:
                k = check_indexed(await unordered.recv("unordered messages"))
                if k is None:
                    intact = False
                    break
                ooo = ooo or k < last
                last = k
                seen.add(k)
            return len(seen), intact, ooo

        send_task = asyncio.ensure_future(sending())
        uno_task = asyncio.ensure_future(unordered_recv())
        header = json.loads(await reliable.recv("header"))
        got_sizes, got_crcs = [], []
        for _ in header["sizes"]:
            m = await reliable.recv("a sized message")
            got_sizes.append(len(m))
            got_crcs.append(zlib.crc32(m))
        got, crc = 0, 0
        while got < header["bulk"]:
            m = await reliable.recv("bulk")
            got += len(m)
            crc = zlib.crc32(m, crc)
        uno = await uno_task
        await send_task
        for _ in range(100):
            if lossy.queue.qsize() >= INDEXED:
                break
            await asyncio.sleep(0.02)
        seen, lossy_intact = set(), True
        while not lossy.queue.empty():
            k = check_indexed(lossy.queue.get_nowait())
            if k is None:
                lossy_intact = False
            else:
                seen.add(k)
        deadline = time.monotonic() + STEP_LIMIT
        while reliable.dc.bufferedAmount > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return {
            "stack": "aiortc",
            "connectMs": connect_ms,
            "remoteMaxMessageSize": mx,
            "sent": sent,
            "received": {
                "sizes": got_sizes,
                "crcs": got_crcs,
                "bulkBytes": got,
                "bulkCrc": crc,
                "unordered": uno[0],
                "unorderedIntact": uno[1],
                "unorderedOutOfOrder": uno[2],
                "lossy": len(seen),
                "lossyIntact": lossy_intact,
            },
        }

    async def bench(self):
        chans, connect_ms = await self.open_channels([("bench", {"ordered": True})])
        ch = chans["bench"]
        if self.role == "offerer":
            msg = min(self.msg, self.max_message())
            await ch.send(json.dumps({"bulk": self.bulk, "msg": msg, "rtt": self.rtt}).encode())
            payload = pattern(msg, 0)
            t1 = time.perf_counter()
            left = self.bulk
            while left > 0:
                n = min(left, msg)
                await ch.send(payload[:n])
                left -= n
            done = await ch.recv("bulk confirmation")
            elapsed = time.perf_counter() - t1
            if len(done) != 1:
                raise RuntimeError("unexpected confirmation")
            ping, rtts = pattern(1024, 1), []
            for _ in range(self.rtt):
                t = time.perf_counter()
                await ch.send(ping)
                echo = await ch.recv("echo")
                rtts.append((time.perf_counter() - t) * 1e6)
                if echo != ping:
                    raise RuntimeError("echo differs")
            return {
                "connectMs": connect_ms,
                "bulkMBps": self.bulk / elapsed / 1e6,
                "msg": msg,
                "rttUs": statistics.median(rtts) if rtts else None,
            }
        header = json.loads(await ch.recv("header"))
        got = 0
        while got < header["bulk"]:
            got += len(await ch.recv("bulk"))
        await ch.send(b"!")
        for _ in range(header["rtt"]):
            await ch.send(await ch.recv("ping"))
        return {"received": got}

    async def run(self):
        try:
            return await (self.bench() if self.mode == "bench" else self.interop())
        except Exception as e:  # the report carries the failure to the driver
            return {"error": f"{type(e).__name__}: {e}"}


def usage():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpuS": ru.ru_utime + ru.ru_stime, "peakRssKiB": ru.ru_maxrss}


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", default="offerer")
    ap.add_argument("--mode", default="interop")
    ap.add_argument("--bulk-mib", type=float, default=16)
    ap.add_argument("--msg", type=int, default=65536)
    ap.add_argument("--rtt", type=int, default=200)
    ap.add_argument("--pair", action="store_true")
    a = ap.parse_args()
    bulk = int(a.bulk_mib * 1048576)
    loop = asyncio.get_running_loop()
    if a.pair:
        peers = {}

        def relay(to):
            return lambda s: loop.create_task(peers[to].handle_signal(s))

        peers["a"] = Peer("offerer", a.mode, bulk, a.msg, a.rtt, relay("b"))
        peers["b"] = Peer("answerer", a.mode, bulk, a.msg, a.rtt, relay("a"))
        ra, rb = await asyncio.gather(peers["a"].run(), peers["b"].run())
        ra.update(usage())
        out({"report": ra, "answerer": rb})
        await peers["a"].pc.close()
        await peers["b"].pc.close()
        return
    peer = Peer(a.role, a.mode, bulk, a.msg, a.rtt, lambda s: out({"signal": s}))
    lines = asyncio.Queue()

    def read_stdin():
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read_stdin, daemon=True).start()

    async def feed():
        while (line := await lines.get()) is not None:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "signal" in msg:
                try:
                    await peer.handle_signal(msg["signal"])
                except Exception as e:  # a bad signal is reported, not fatal
                    print(f"signal refused: {e}", file=sys.stderr)

    feeder = asyncio.ensure_future(feed())
    report = await peer.run()
    report.update(usage())
    out({"report": report})
    await feeder
    await peer.pc.close()


if __name__ == "__main__":
    asyncio.run(main())
