"""Bad input on the Pulsar port, sent over raw sockets with hand-built frames
(pulsar_frames.py), and invalid topic names through the official client.
After every case an official client on the same broker still produces and
consumes, and a fresh raw connection still completes CONNECT.

What each case expects (as the Apache Pulsar broker does):
  huge frame size ............ the connection is closed (nothing allocated)
  garbage bytes .............. the connection is closed
  command before CONNECT ..... the connection is closed, or the command is
                               answered with an error; never a success
  unknown command type ....... the connection is closed, or the command is
                               ignored/refused and the connection still
                               answers PING
  SEND with a wrong checksum . SEND_ERROR(ChecksumError) for that sequence id,
                               the producer keeps working, and the corrupt
                               message is not stored
  invalid topic name (raw) ... ERROR(InvalidTopicName) for that request
  invalid topic name (client)  an exception, not a hang
"""

import random
import struct
import time

import pulsar

import compat
import pulsar_frames as pf
from compat import check, check_eq

TIMEOUT_S = 10.0


def connection(args):
    return pf.RawConnection.to(args.service_url, timeout=TIMEOUT_S)


def healthy(args, after):
    """An official client still produces and consumes, and a raw CONNECT is
    still answered."""
    client = compat.client(args)
    try:
        name = compat.topic("healthy")
        consumer = client.subscribe(name, "sub", initial_position=pulsar.InitialPosition.Earliest)
        producer = compat.producer(client, name)
        data = f"still serving after {after}".encode()
        producer.send(data)
        msg = compat.receive(consumer, f"the message sent after {after}")
        check_eq(msg.data(), data, f"round trip after {after}")
        consumer.acknowledge(msg)
    finally:
        client.close()
    raw = connection(args)
    try:
        raw.handshake()
    finally:
        raw.close()
    print(f"ok: {after}", flush=True)


def expect_closed(conn, what):
    try:
        frames = conn.expect_closed(TIMEOUT_S)
    except TimeoutError:
        compat.fail(f"{what}: the broker kept the connection open for {TIMEOUT_S}s")
    for f in frames:
        check(
            f.type in (pf.ERROR, pf.SEND_ERROR),
            f"{what}: the broker answered {f} before closing the connection",
        )
    return frames


def case_huge_frame(args):
    for size, label in ((0x7FFF_FFF0, "2 GiB"), (64 << 20, "64 MiB")):
        conn = connection(args)
        try:
            conn.handshake()
            # Only the header and a little of the promised body: a broker
            # that waits for (or allocates) the rest instead of refusing the
            # size fails here.
            conn.send_raw(struct.pack(">II", size, 16) + b"\x08\x12" + bytes(100))
            expect_closed(conn, f"frame of {label}")
        finally:
            conn.close()
        healthy(args, f"a frame claiming {label}")


def garbage_protobuf(seed, n):
    """`n` seeded random bytes that do not decode as protobuf."""
    rng = random.Random(seed)
    while True:
        data = rng.randbytes(n)
        try:
            pf.decode(data)
        except (ValueError, struct.error):
            return data


def case_garbage(args):
    garbage = garbage_protobuf(args.seed, 196)
    cases = [
        ("an HTTP request", False, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("a frame of random bytes before CONNECT", False, struct.pack(">II", 200, 196) + garbage),
        ("a frame of random bytes after CONNECT", True, struct.pack(">II", 200, 196) + garbage),
        ("a command size larger than the frame", True, struct.pack(">II", 8, 1000) + b"\x08\x12\x92\x01"),
        ("an empty frame", True, struct.pack(">I", 0) + pf.simple_frame(pf.ping())),
    ]
    for what, connected, data in cases:
        conn = connection(args)
        try:
            if connected:
                conn.handshake()
            conn.send_raw(data)
            expect_closed(conn, what)
        finally:
            conn.close()
        healthy(args, what)


def case_before_connect(args):
    topic = compat.topic("before-connect")
    metadata = pf.message_metadata("nobody", 0, int(time.time() * 1000))
    cases = [
        ("PRODUCER before CONNECT", pf.simple_frame(pf.producer(topic, 1, 1)), {pf.ERROR}),
        (
            "LOOKUP before CONNECT",
            pf.simple_frame(pf.lookup(topic, 1)),
            {pf.ERROR, pf.LOOKUP_RESPONSE},
        ),
        (
            "SEND before CONNECT",
            pf.payload_frame(pf.send(1, 0), metadata, b"sneaky"),
            {pf.ERROR, pf.SEND_ERROR},
        ),
    ]
    for what, data, allowed in cases:
        conn = connection(args)
        try:
            conn.send_raw(data)
            try:
                frame = conn.read_frame()
            except pf.Closed:
                frame = None
            except TimeoutError:
                compat.fail(f"{what}: neither answered nor closed within {TIMEOUT_S}s")
            if frame is not None:
                check(frame.type in allowed, f"{what}: answered with {frame}")
                if frame.type == pf.LOOKUP_RESPONSE:
                    # CommandLookupTopicResponse.response: Failed = 2.
                    check_eq(pf.first(frame.body, 3), 2, f"{what}: lookup response type (Failed)")
        finally:
            conn.close()
        healthy(args, what)
    # Nothing was stored by the SEND before CONNECT.
    expect_topic_holds(args, topic, [])


def still_answers_ping(conn, what):
    """True if the connection answers PING with PONG (skipping ERROR
    frames), False if the broker closed it; fails if it does neither."""
    try:
        conn.send_command(pf.ping())
        while True:
            frame = conn.read_frame(answer_pings=True)
            if frame.type == pf.PONG:
                return True
            check(frame.type == pf.ERROR, f"{what}: unexpected answer {frame}")
    except pf.Closed:
        return False
    except TimeoutError:
        compat.fail(f"{what}: the connection neither answered PING nor closed within {TIMEOUT_S}s")


def case_unknown_command(args):
    cases = [
        ("an unknown command type (99)", pf.base_command(99, b"")),
        ("an unknown command type (1000) with a body", pf.base_command(1000, pf.f_varint(1, 7))),
        ("a BaseCommand without a type", pf.f_msg(5, pf.f_bytes(1, "x"))),
        ("an empty BaseCommand", b""),
        ("PRODUCER without its body", pf.base_command(pf.PRODUCER)),
        ("SEND without a payload", pf.send(1, 0)),
    ]
    for what, command in cases:
        conn = connection(args)
        try:
            conn.handshake()
            conn.send_command(command)
            kept = still_answers_ping(conn, what)
            print(f"{what}: connection {'kept' if kept else 'closed'}", flush=True)
        finally:
            conn.close()
        healthy(args, what)


def expect_topic_holds(args, topic, want):
    """A reader from the earliest message of `topic` reads exactly `want`."""
    client = compat.client(args)
    try:
        reader = client.create_reader(topic, pulsar.MessageId.earliest)
        for i, data in enumerate(want):
            msg = compat.read_next(reader, f"stored message {i} of {topic}")
            check_eq(msg.data(), data, f"stored message {i} of {topic}")
        compat.expect_silence(reader, f"{topic} after its {len(want)} stored message(s)")
    finally:
        client.close()


def case_bad_checksum(args):
    topic = compat.topic("bad-checksum")
    conn = connection(args)
    try:
        conn.handshake()
        conn.send_command(pf.producer(topic, producer_id=1, request_id=1))
        frame = conn.read_frame()
        check_eq(frame.type, pf.PRODUCER_SUCCESS, f"PRODUCER answered with {frame}")
        name = pf.first(frame.body, 2).decode()

        def send(seq, data, corrupt):
            metadata = pf.message_metadata(name, seq, int(time.time() * 1000))
            command = pf.send(1, seq)
            good = pf.payload_frame(command, metadata, data)
            if not corrupt:
                conn.send_raw(good)
                return
            crc = struct.unpack_from(">I", good, 4 + 4 + len(command) + 2)[0]
            conn.send_raw(pf.payload_frame(command, metadata, data, checksum=crc ^ 0x0100_0000))

        send(0, b"corrupt", corrupt=True)
        frame = conn.read_frame()
        check_eq(frame.type, pf.SEND_ERROR, f"SEND with a wrong checksum answered with {frame}")
        check_eq(pf.first(frame.body, 1), 1, "SEND_ERROR producer id")
        check_eq(pf.first(frame.body, 2), 0, "SEND_ERROR sequence id")
        error = pf.first(frame.body, 3)
        check_eq(
            pf.SERVER_ERRORS.get(error, error),
            "ChecksumError",
            f"SEND_ERROR error ({pf.first(frame.body, 4)!r})",
        )

        send(1, b"good", corrupt=False)
        frame = conn.read_frame()
        check_eq(frame.type, pf.SEND_RECEIPT, f"a correct SEND after the bad one answered with {frame}")
        check_eq(pf.first(frame.body, 2), 1, "SEND_RECEIPT sequence id")

        conn.send_command(pf.close_producer(1, 2))
        frame = conn.read_frame()
        check_eq(frame.type, pf.SUCCESS, f"CLOSE_PRODUCER answered with {frame}")
    except (pf.Closed, TimeoutError) as e:
        compat.fail(f"bad checksum: {e}")
    finally:
        conn.close()
    expect_topic_holds(args, topic, [b"good"])
    healthy(args, "a SEND with a wrong checksum")


def case_invalid_topic_raw(args):
    names = ["persistent://public/default/", "bogus://public/default/t", "persistent://public", ""]
    conn = connection(args)
    try:
        conn.handshake()
        for request_id, name in enumerate(names, start=10):
            conn.send_command(pf.producer(name, producer_id=request_id, request_id=request_id))
            try:
                frame = conn.read_frame()
            except (pf.Closed, TimeoutError) as e:
                compat.fail(f"PRODUCER on topic {name!r}: {e} (expected ERROR InvalidTopicName)")
            check_eq(frame.type, pf.ERROR, f"PRODUCER on topic {name!r} answered with {frame}")
            check_eq(pf.first(frame.body, 1), request_id, f"ERROR request id for topic {name!r}")
            error = pf.first(frame.body, 2)
            check_eq(pf.SERVER_ERRORS.get(error, error), "InvalidTopicName", f"ERROR for topic {name!r}")
    finally:
        conn.close()
    healthy(args, "PRODUCER on invalid topic names")


def case_invalid_topic_client(args):
    client = compat.client(args, operation_timeout_seconds=10)
    try:
        attempts = [
            ("producer", lambda n: client.create_producer(n)),
            ("consumer", lambda n: client.subscribe(n, "sub")),
            ("reader", lambda n: client.create_reader(n, pulsar.MessageId.earliest)),
        ]
        names = [
            "bogus://public/default/t",
            "persistent://public/default/",
            "persistent://public/no-such-namespace/t",
            "persistent://no-such-tenant/default/t",
        ]
        for kind, attempt in attempts:
            for name in names:
                started = time.monotonic()
                try:
                    attempt(name)
                except pulsar.PulsarException as e:
                    print(
                        f"{kind} on {name!r}: {type(e).__name__} after "
                        f"{time.monotonic() - started:.1f}s",
                        flush=True,
                    )
                    continue
                compat.fail(f"{kind} on invalid or nonexistent topic {name!r} was accepted")
    finally:
        client.close()
    healthy(args, "invalid topic names through the client")


CASES = [
    ("huge_frame", case_huge_frame),
    ("garbage", case_garbage),
    ("before_connect", case_before_connect),
    ("unknown_command", case_unknown_command),
    ("bad_checksum", case_bad_checksum),
    ("invalid_topic_raw", case_invalid_topic_raw),
    ("invalid_topic_client", case_invalid_topic_client),
]


def add_args(p):
    p.add_argument(
        "--case",
        action="append",
        choices=[name for name, _ in CASES],
        help="run only these cases (default: all)",
    )
    p.set_defaults(timeout=300)


def run(args):
    healthy(args, "nothing (baseline)")
    for name, case in CASES:
        if args.case and name not in args.case:
            continue
        print(f"--- {name}", flush=True)
        case(args)


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
