"""Broker-entry metadata reaches only the clients that ask for it: a raw
client whose CONNECT does not announce `supports_broker_entry_metadata`
receives each message exactly as the producer sent it (starting with the
0x0e01 checksum header), one that announces it receives the 0x0e02 prefix
with the broker timestamp and the message index in front of the same bytes.
The official client (which announces support) still reads the messages.
An ACK that carries a request id gets an ACK_RESPONSE with that id (with
an error for an unknown consumer), and acknowledged messages stay
acknowledged."""

import time

import pulsar

import compat
import pulsar_frames as pf
from compat import check, check_eq


def read_messages(args, topic, sub, announce, count, ack=False):
    conn = pf.RawConnection.to(args.service_url)
    try:
        conn.handshake(broker_entry_metadata=announce)
        conn.send_command(pf.subscribe(topic, sub, consumer_id=1, request_id=1))
        frame = conn.read_frame()
        check_eq(frame.type, pf.SUCCESS, f"SUBSCRIBE answered with {frame}")
        conn.send_command(pf.flow(1, 100))
        out = []
        while len(out) < count:
            frame = conn.read_frame()
            if frame.type != pf.MESSAGE:
                continue
            out.append(frame)
        if ack:
            for i, frame in enumerate(out):
                msg_id = pf.decode(pf.first(frame.body, 2))
                conn.send_command(
                    pf.ack(1, pf.first(msg_id, 1), pf.first(msg_id, 2), request_id=100 + i)
                )
                reply = conn.read_frame()
                check_eq(reply.type, pf.ACK_RESPONSE, f"ACK with a request id answered with {reply}")
                check_eq(pf.first(reply.body, 6), 100 + i, "ACK_RESPONSE request id")
                check(pf.first(reply.body, 4) is None, f"ACK_RESPONSE carries an error: {reply}")
            conn.send_command(pf.ack(77, 1, 0, request_id=200))
            reply = conn.read_frame()
            check_eq(reply.type, pf.ACK_RESPONSE, f"ACK for an unknown consumer answered with {reply}")
            check(pf.first(reply.body, 4) is not None, "ACK for an unknown consumer got no error")
        return out
    finally:
        conn.close()


def run(args):
    topic = compat.topic("broker-entry-metadata")
    before = int(time.time() * 1000)
    c = compat.client(args)
    p = compat.producer(c, topic)
    payloads = [b"first", b"second", b"third"]
    for data in payloads:
        p.send(data)
    p.close()
    after = int(time.time() * 1000)

    plain = read_messages(args, topic, "plain", announce=False, count=3, ack=True)
    for i, frame in enumerate(plain):
        check(
            frame.broker_entry_metadata is None,
            f"message {i} carries broker-entry metadata to a client that did not ask",
        )
        check_eq(frame.payload, payloads[i], f"payload of message {i} (plain client)")
        check_eq(
            pf.crc32c(len(frame.metadata).to_bytes(4, "big") + frame.metadata + frame.payload),
            frame.checksum,
            f"checksum of message {i} as the producer sent it",
        )

    rich = read_messages(args, topic, "rich", announce=True, count=3)
    for i, frame in enumerate(rich):
        check(
            frame.broker_entry_metadata is not None,
            f"message {i} lacks broker-entry metadata for a client that asked",
        )
        fields = pf.decode(frame.broker_entry_metadata)
        timestamp = pf.first(fields, 1)
        index = pf.first(fields, 2)
        check(
            timestamp is not None and before - 1000 <= timestamp <= after + 1000,
            f"broker timestamp {timestamp} outside [{before}, {after}]",
        )
        check_eq(index, i, f"broker index of message {i}")
        check_eq(frame.payload, payloads[i], f"payload of message {i} (announcing client)")
        check_eq(frame.checksum, plain[i].checksum, f"checksum of message {i}")

    # The raw subscription acknowledged everything: nothing comes again.
    again = c.subscribe(topic, "plain")
    compat.expect_silence(again, "the subscription whose messages were all acknowledged")
    again.close()

    consumer = c.subscribe(topic, "official", initial_position=pulsar.InitialPosition.Earliest)
    for i, want in enumerate(payloads):
        msg = compat.receive(consumer, f"message {i} (official client)")
        check_eq(msg.data(), want, f"message {i} (official client)")
    c.close()
    print("broker-entry metadata only where announced", flush=True)


if __name__ == "__main__":
    compat.main(run, __doc__)
