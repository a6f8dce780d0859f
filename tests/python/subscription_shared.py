"""Shared subscription with three consumers: the messages are spread over
the consumers and, being acknowledged, each is delivered exactly once; the
unacknowledged messages of a consumer that closes go to the others."""

import time

import pulsar

import compat
from compat import check, check_eq


def subscribe(client, name, i):
    return client.subscribe(
        name,
        "sub",
        consumer_type=pulsar.ConsumerType.Shared,
        consumer_name=f"shared-{i}",
        receiver_queue_size=10,
        initial_position=pulsar.InitialPosition.Earliest,
    )


def drain(consumers, want, deadline_s, ack=True):
    """Round-robin receive with short timeouts until `want` messages came or
    the deadline passed; returns {consumer index: [message index]}."""
    got = {i: [] for i in range(len(consumers))}
    give_up = time.monotonic() + deadline_s
    while sum(len(v) for v in got.values()) < want and time.monotonic() < give_up:
        for i, c in enumerate(consumers):
            try:
                msg = c.receive(timeout_millis=50)
            except pulsar.Timeout:
                continue
            got[i].append(compat.index_of(msg.data()))
            if ack:
                c.acknowledge(msg)
    return got


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("shared")
        consumers = [subscribe(client, name, i) for i in range(3)]
        producer = compat.producer(client, name)
        n = 300
        compat.send_all(producer, [compat.payload(args.seed, i, 256) for i in range(n)])

        got = drain(consumers, n, 60)
        every = sorted(i for v in got.values() for i in v)
        check_eq(every, list(range(n)), "message indexes received over all consumers")
        counts = [len(got[i]) for i in range(3)]
        check(all(c > 0 for c in counts), f"messages not spread over the consumers: {counts}")
        for i in range(3):
            check_eq(got[i], sorted(got[i]), f"consumer {i}: its messages in publish order")
        for c in consumers:
            compat.expect_silence(c, "after every message was acknowledged", 500)
        print(f"{n} messages spread as {counts}", flush=True)

        # A consumer that leaves with unacknowledged messages: they go to the
        # others. The others hold at most 2 x 10 (their receiver queues) while
        # nobody reads them, so the first one must get some of 30.
        compat.send_all(producer, [compat.payload(args.seed, i, 256) for i in range(n, n + 30)])
        leaver = consumers[0]
        held = [compat.index_of(compat.receive(leaver, "a message for the leaving consumer").data())]
        while True:
            try:
                held.append(compat.index_of(leaver.receive(timeout_millis=300).data()))
            except pulsar.Timeout:
                break
        leaver.close()
        rest = drain(consumers[1:], 30, 60)
        every = sorted(i for v in rest.values() for i in v)
        check_eq(
            every,
            list(range(n, n + 30)),
            f"after consumer 0 left holding {held} unacknowledged: messages received by the others",
        )
        for c in consumers[1:]:
            compat.expect_silence(c, "after the redelivered messages", 500)
        producer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
