"""Unsubscribe, pattern (regex) subscriptions, which list the topics of a
namespace, and protocol-version negotiation: CONNECTED always carries
`server_version` and the lower of the two protocol versions. GET_SCHEMA
for a topic without a stored schema answers with the request id and an
error code (no schema registry yet), and the connection stays usable."""

import re
import uuid

import pulsar

import compat
import pulsar_frames as pf
from compat import check, check_eq


def check_unsubscribe(c):
    name = compat.topic("unsubscribe")
    p = compat.producer(c, name)
    consumer = c.subscribe(name, "sub")
    p.send(b"m1")
    check_eq(compat.receive(consumer, "m1").data(), b"m1", "first message")
    # m1 is not acknowledged: if UNSUBSCRIBE kept the cursor, a new
    # subscription of that name would get m1 again.
    consumer.unsubscribe()
    consumer = c.subscribe(name, "sub")
    p.send(b"m2")
    check_eq(compat.receive(consumer, "m2").data(), b"m2", "after re-subscribing")
    consumer.close()

    # With another consumer connected, unsubscribe is refused.
    a = c.subscribe(name, "shared", consumer_type=pulsar.ConsumerType.Shared)
    b = c.subscribe(name, "shared", consumer_type=pulsar.ConsumerType.Shared)
    try:
        a.unsubscribe()
    except pulsar.PulsarException as e:
        print(f"unsubscribe beside another consumer refused: {type(e).__name__}", flush=True)
    else:
        compat.fail("unsubscribe succeeded while another consumer was connected")
    b.close()
    a.unsubscribe()
    p.close()


def check_pattern(c):
    tag = uuid.uuid4().hex[:8]
    names = [f"persistent://public/default/pattern-{tag}-{i}" for i in range(3)]
    for n in names:
        p = compat.producer(c, n)
        p.send(n.encode())
        p.close()
    other = compat.producer(c, f"persistent://public/default/other-{tag}")
    other.send(b"not matched")
    other.close()
    consumer = c.subscribe(
        re.compile(f"persistent://public/default/pattern-{tag}-.*"),
        "pattern-sub",
        initial_position=pulsar.InitialPosition.Earliest,
    )
    got = sorted(compat.receive(consumer, f"message {i}").data() for i in range(len(names)))
    check_eq(got, sorted(n.encode() for n in names), "messages of the matching topics")
    compat.expect_silence(consumer, "after the matching topics' messages")
    consumer.close()


def check_versions(args):
    for offered, want in [(10, 10), (99, 21)]:
        conn = pf.RawConnection.to(args.service_url)
        try:
            conn.send_command(pf.connect(protocol_version=offered))
            frame = conn.read_frame()
            check_eq(frame.type, pf.CONNECTED, f"CONNECT(v{offered}) answered with {frame}")
            server_version = pf.first(frame.body, 1)
            check(server_version, f"CONNECTED without server_version: {frame}")
            check_eq(pf.first(frame.body, 2), want, f"protocol version offered {offered}")
        finally:
            conn.close()


def check_get_schema(args):
    conn = pf.RawConnection.to(args.service_url)
    try:
        conn.handshake()
        # GET_SCHEMA (34) { request_id: 7, topic }
        conn.send_command(
            pf.base_command(34, pf.f_varint(1, 7) + pf.f_bytes(2, compat.topic("schema")))
        )
        frame = conn.read_frame()
        check_eq(frame.type, 35, f"GET_SCHEMA answered with {frame}")
        check_eq(pf.first(frame.body, 1), 7, "GET_SCHEMA_RESPONSE request id")
        check(pf.first(frame.body, 2) is not None, f"no error code for a missing schema: {frame}")
        conn.send_command(pf.ping())
        check_eq(conn.read_frame(answer_pings=False).type, pf.PONG, "PING after GET_SCHEMA")
    finally:
        conn.close()


def run(args):
    c = compat.client(args)
    check_unsubscribe(c)
    check_pattern(c)
    c.close()
    check_versions(args)
    check_get_schema(args)


if __name__ == "__main__":
    compat.main(run, __doc__)
