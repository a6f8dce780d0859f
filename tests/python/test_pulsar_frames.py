"""Unit tests of pulsar_frames.py: known bytes (varints, CRC32C test
vectors, a CONNECT frame worked out by hand), round trips, and frames of the
official client (pulsar-client) captured by a tiny fake broker, which must
decode, carry a checksum our CRC32C reproduces, and re-encode to the same
bytes. Needs no Strata process:

    python3 -m unittest tests/python/test_pulsar_frames.py
"""

import os
import socket
import struct
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pulsar_frames as pf  # noqa: E402


class KnownBytes(unittest.TestCase):
    def test_varint(self):
        self.assertEqual(pf.varint(0), b"\x00")
        self.assertEqual(pf.varint(1), b"\x01")
        self.assertEqual(pf.varint(127), b"\x7f")
        self.assertEqual(pf.varint(128), b"\x80\x01")
        self.assertEqual(pf.varint(300), b"\xac\x02")
        self.assertEqual(pf.varint(-1), b"\xff" * 9 + b"\x01")
        for n in (0, 1, 300, 2**32, 2**63 - 1):
            self.assertEqual(pf.read_varint(pf.varint(n), 0), (n, len(pf.varint(n))))
        self.assertEqual(pf.signed64(pf.read_varint(pf.varint(-1), 0)[0]), -1)

    def test_crc32c_vectors(self):
        # The check value of CRC-32C, and the RFC 3720 (iSCSI) vectors.
        self.assertEqual(pf.crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(pf.crc32c(b""), 0)
        self.assertEqual(pf.crc32c(bytes(32)), 0x8A9136AA)
        self.assertEqual(pf.crc32c(b"\xff" * 32), 0x62A8AB43)
        self.assertEqual(pf.crc32c(bytes(range(32))), 0x46DD794E)

    def test_connect_frame(self):
        # BaseCommand{type: CONNECT(2), connect(2): {client_version(1): "x",
        # protocol_version(4): 19}}
        command = b"\x08\x02" + b"\x12\x05" + b"\x0a\x01x" + b"\x20\x13"
        self.assertEqual(pf.connect("x", 19), command)
        self.assertEqual(pf.simple_frame(command), b"\x00\x00\x00\x0d\x00\x00\x00\x09" + command)

    def test_payload_frame_round_trip(self):
        command = pf.send(producer_id=3, sequence_id=9)
        metadata = pf.message_metadata("p", 9, 1234, {"k": "v"}, "key")
        frame = pf.payload_frame(command, metadata, b"hello")
        (total,) = struct.unpack_from(">I", frame, 0)
        self.assertEqual(total, len(frame) - 4)
        parsed = pf.parse_frame(frame[4:])
        self.assertEqual(parsed.type, pf.SEND)
        self.assertEqual(parsed.body, {1: [3], 2: [9]})
        self.assertEqual(pf.decode(pf.decode(pf.send(3, 9, 5))[6][0]), {1: [3], 2: [9], 3: [5]})
        self.assertEqual(parsed.metadata, metadata)
        self.assertEqual(parsed.payload, b"hello")
        self.assertEqual(parsed.checksum, pf.crc32c(frame[4 + 4 + len(command) + 6 :]))
        md = pf.decode(metadata)
        self.assertEqual(md[1], [b"p"])
        self.assertEqual(pf.decode(md[4][0]), {1: [b"k"], 2: [b"v"]})
        self.assertEqual(md[6], [b"key"])
        bad = pf.payload_frame(command, metadata, b"hello", checksum=parsed.checksum ^ 1)
        self.assertEqual(len(bad), len(frame))
        self.assertNotEqual(bad, frame)


class FakeBroker:
    """Just enough of a broker for the official client to create a producer,
    send and close; records every frame it gets (raw and parsed)."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.url = f"pulsar://127.0.0.1:{self.listener.getsockname()[1]}"
        self.frames = []  # (raw frame bytes, Frame)
        self.errors = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while True:
                while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">I", buf, 0)[0]:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                total = struct.unpack_from(">I", buf, 0)[0]
                raw, buf = buf[: 4 + total], buf[4 + total :]
                frame = pf.parse_frame(raw[4:])
                self.frames.append((raw, frame))
                reply = self._answer(frame)
                if reply is not None:
                    conn.sendall(pf.simple_frame(reply))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            conn.close()

    def _answer(self, f):
        b, first = f.body, pf.first
        if f.type == pf.CONNECT:
            return pf.base_command(pf.CONNECTED, pf.f_bytes(1, "fake") + pf.f_varint(2, 19))
        if f.type == pf.PARTITIONED_METADATA:
            body = pf.f_varint(1, 0) + pf.f_varint(2, first(b, 2)) + pf.f_varint(3, 0)
            return pf.base_command(pf.PARTITIONED_METADATA_RESPONSE, body)
        if f.type == pf.LOOKUP:
            body = (
                pf.f_bytes(1, self.url)
                + pf.f_varint(3, 1)
                + pf.f_varint(4, first(b, 2))
                + pf.f_bool(5, True)
            )
            return pf.base_command(pf.LOOKUP_RESPONSE, body)
        if f.type == pf.PRODUCER:
            body = pf.f_varint(1, first(b, 3)) + pf.f_bytes(2, "fake-producer") + pf.f_varint(3, -1)
            return pf.base_command(pf.PRODUCER_SUCCESS, body)
        if f.type == pf.SEND:
            msg_id = pf.f_varint(1, 7) + pf.f_varint(2, first(b, 2))
            body = pf.f_varint(1, first(b, 1)) + pf.f_varint(2, first(b, 2)) + pf.f_msg(3, msg_id)
            return pf.base_command(pf.SEND_RECEIPT, body)
        if f.type == pf.CLOSE_PRODUCER:
            return pf.base_command(pf.SUCCESS, pf.f_varint(1, first(b, 2)))
        if f.type == pf.PING:
            return pf.pong()
        return None

    def close(self):
        self.stop = True
        self.listener.close()


class OfficialClientFrames(unittest.TestCase):
    def test_frames_of_the_official_client(self):
        import pulsar

        broker = FakeBroker()
        try:
            client = pulsar.Client(
                broker.url,
                operation_timeout_seconds=10,
                logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
            )
            producer = client.create_producer(
                "persistent://public/default/frames", batching_enabled=False, send_timeout_millis=10_000
            )
            msg_id = producer.send(b"hello frames", properties={"a": "b"}, partition_key="k1")
            self.assertEqual((msg_id.ledger_id(), msg_id.entry_id()), (7, 0))
            producer.close()
            client.close()
        finally:
            broker.close()
        self.assertEqual(broker.errors, [])
        by_type = {}
        for raw, f in broker.frames:
            by_type.setdefault(f.type, []).append((raw, f))

        (_, connect), *_ = by_type[pf.CONNECT]
        self.assertTrue(pf.first(connect.body, 1).startswith(b"Pulsar-CPP-v"), connect.body)
        self.assertGreaterEqual(pf.first(connect.body, 4), 19)

        (raw, send), = by_type[pf.SEND]
        self.assertEqual(send.payload, b"hello frames")
        # Our CRC32C reproduces the client's checksum ...
        checked = struct.pack(">I", len(send.metadata)) + send.metadata + send.payload
        self.assertEqual(pf.crc32c(checked), send.checksum)
        # ... and our framing rebuilds the client's frame byte for byte.
        self.assertEqual(pf.payload_frame(send.raw_command, send.metadata, send.payload), raw)
        md = pf.decode(send.metadata)
        self.assertEqual(pf.first(md, 1), b"fake-producer")
        self.assertEqual(pf.first(md, 2), pf.first(send.body, 2))
        self.assertEqual(pf.first(md, 6), b"k1")
        self.assertEqual(pf.decode(pf.first(md, 4)), {1: [b"a"], 2: [b"b"]})
        # Our SEND command encodes the fields the client set the same way.
        self.assertEqual(
            pf.send(pf.first(send.body, 1), pf.first(send.body, 2), pf.first(send.body, 3)),
            send.raw_command,
        )

        (_, prod), = by_type[pf.PRODUCER]
        self.assertEqual(pf.first(prod.body, 1), b"persistent://public/default/frames")
        # Our PRODUCER command encodes topic, producer id and request id as
        # the client does (the client adds more fields after them).
        ours = pf.decode(pf.first(pf.decode(pf.producer("persistent://public/default/frames", 4, 5)), 5))
        self.assertEqual(ours, {1: [b"persistent://public/default/frames"], 2: [4], 3: [5]})
        theirs = pf.first(pf.decode(prod.raw_command), 5)
        head = pf.f_bytes(1, "persistent://public/default/frames") + pf.f_varint(2, pf.first(prod.body, 2))
        self.assertTrue(theirs.startswith(head), theirs)


if __name__ == "__main__":
    unittest.main()
