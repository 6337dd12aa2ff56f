"""aiortc side of priority-probe.mjs: reads the DCEP priority field of the peer's channels and
opens channels carrying chosen priority values (aiortc itself always sends 0).

Input: one JSON line {"sdp": <offer>}. Output: JSON lines {"answer": sdp}, then
{"open": label, "priority": n} per channel the peer opens. Then it opens one channel per value
in VALUES, labelled with the value, and stays up for a few seconds.
"""

import asyncio
import json
import struct
import sys

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc import rtcsctptransport as sctp

VALUES = [0, 1, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 4096, 65535]
OPEN_FORMAT = "!BBHLHH"

received = sctp.RTCSctpTransport._data_channel_receive


async def spy(self, stream_id, pp_id, data):
    if pp_id == sctp.WEBRTC_DCEP and len(data) >= 12 and data[0] == sctp.DATA_CHANNEL_OPEN:
        _, _, priority, _, label_len, _ = struct.unpack_from(OPEN_FORMAT, data)
        label = data[12 : 12 + label_len].decode()
        print(json.dumps({"open": label, "priority": priority}), flush=True)
    return await received(self, stream_id, pp_id, data)


sctp.RTCSctpTransport._data_channel_receive = spy

# Channel-open messages are written in the order channels are created: give the n-th the n-th
# value of VALUES.
pending = list(VALUES)


def pack(fmt, *args):
    if fmt == OPEN_FORMAT and args[0] == sctp.DATA_CHANNEL_OPEN and pending:
        args = (args[0], args[1], pending.pop(0)) + args[3:]
    return struct.pack(fmt, *args)


sctp.pack = pack


async def main():
    offer = json.loads(sys.stdin.readline())
    pc = RTCPeerConnection()
    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    for value in VALUES:
        pc.createDataChannel(str(value))
    print(json.dumps({"answer": pc.localDescription.sdp}), flush=True)
    await asyncio.sleep(5)
    await pc.close()


asyncio.run(main())
