"""Subscription cursor across a broker restart, in two phases run by the
test around the restart.

--phase before: subscribes, produces --count messages, receives them all,
acknowledges (individually) the first --acked and a few more further on
(holes), and closes the consumer (which flushes the acknowledgements).

--phase after: subscribes again and checks what the subscription delivers:
with --exact (after a clean SIGTERM stop) exactly the messages that were not
acknowledged, in order, and nothing else; without it (after SIGKILL, when the
last acknowledgements may not have been persisted) every unacknowledged
message, in order, and possibly some acknowledged ones again, in order."""

import pulsar

import compat
from compat import check, check_eq


def add_args(p):
    p.add_argument("--phase", choices=["before", "after"], required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--subscription", default="cursor-sub")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--acked", type=int, default=40)
    p.add_argument("--exact", action="store_true")


def acknowledged(args):
    """The indexes phase `before` acknowledges: a prefix, then holes."""
    holes = {args.acked + 5, args.acked + 10, args.acked + 11, args.count - 1}
    return set(range(args.acked)) | {i for i in holes if i < args.count}


def subscribe(client, args):
    return client.subscribe(
        args.topic,
        args.subscription,
        consumer_type=pulsar.ConsumerType.Exclusive,
        initial_position=pulsar.InitialPosition.Earliest,
    )


def before(client, args):
    consumer = subscribe(client, args)
    producer = compat.producer(client, args.topic)
    payloads = [compat.payload(args.seed, i) for i in range(args.count)]
    compat.send_all(producer, payloads)
    producer.close()
    acks = acknowledged(args)
    for i in range(args.count):
        msg = compat.receive(consumer, f"message {i}")
        check_eq(msg.data(), payloads[i], f"message {i}")
        if i in acks:
            consumer.acknowledge(msg)
    consumer.close()
    print(f"acknowledged {len(acks)} of {args.count} messages", flush=True)


def after(client, args):
    acks = acknowledged(args)
    unacked = [i for i in range(args.count) if i not in acks]
    consumer = subscribe(client, args)
    received = []
    while True:
        try:
            msg = consumer.receive(timeout_millis=compat.RECEIVE_TIMEOUT_MS if not received else 2_000)
        except pulsar.Timeout:
            break
        i = compat.index_of(msg.data())
        check_eq(msg.data(), compat.payload(args.seed, i), f"payload of message {i}")
        received.append(i)
        consumer.acknowledge(msg)
    print(f"after the restart: {len(received)} messages: {received}", flush=True)
    if args.exact:
        check_eq(received, unacked, "messages delivered after a clean restart (the unacknowledged ones)")
    else:
        check_eq(received, sorted(set(received)), "messages delivered after the crash (order, no duplicates)")
        missing = [i for i in unacked if i not in set(received)]
        check(not missing, f"unacknowledged messages not delivered after the crash: {missing}")


def run(args):
    client = compat.client(args)
    try:
        (before if args.phase == "before" else after)(client, args)
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
