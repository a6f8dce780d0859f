"""Failover subscription with two consumers: exactly one (the active one)
gets the messages, in order; when it closes, the other takes over and gets
what the first left unacknowledged and everything produced later, in order."""

import time

import pulsar

import compat
from compat import check, check_eq


def drain(consumers, want, deadline_s):
    """Receives from all consumers (round-robin, short timeouts) until `want`
    messages came or the deadline passed; returns {consumer index: [msg]}."""
    got = {i: [] for i in range(len(consumers))}
    give_up = time.monotonic() + deadline_s
    while sum(len(v) for v in got.values()) < want and time.monotonic() < give_up:
        for i, c in enumerate(consumers):
            try:
                got[i].append(c.receive(timeout_millis=100))
            except pulsar.Timeout:
                pass
    return got


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("failover")
        consumers = [
            client.subscribe(
                name,
                "sub",
                consumer_type=pulsar.ConsumerType.Failover,
                consumer_name=f"failover-{i}",
                initial_position=pulsar.InitialPosition.Earliest,
            )
            for i in range(2)
        ]
        producer = compat.producer(client, name)
        payloads = [compat.payload(args.seed, i) for i in range(40)]
        compat.send_all(producer, payloads[:20])

        got = drain(consumers, 20, 20)
        busy = [i for i, msgs in got.items() if msgs]
        total = sum(len(v) for v in got.values())
        check(total == 20, f"received {total} of 20 messages")
        check(len(busy) == 1, f"messages went to {len(busy)} consumers, expected only the active one")
        active = busy[0]
        check_eq(
            [compat.index_of(m.data()) for m in got[active]],
            list(range(20)),
            "messages on the active consumer (order)",
        )
        for i, m in enumerate(got[active]):
            check_eq(m.data(), payloads[i], f"message {i} on the active consumer")
        # The active consumer acknowledges only the first 12, then leaves.
        for m in got[active][:12]:
            consumers[active].acknowledge(m)
        # Nothing reaches the standby meanwhile.
        compat.expect_silence(consumers[1 - active], "standby consumer while the active one is connected")
        consumers[active].close()

        standby = consumers[1 - active]
        compat.send_all(producer, payloads[20:])
        for i in range(12, 40):
            msg = compat.receive(standby, f"message {i} on the consumer that took over")
            check_eq(msg.data(), payloads[i], f"message {i} after the failover")
            standby.acknowledge(msg)
        compat.expect_silence(standby, "after message 39")
        producer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
