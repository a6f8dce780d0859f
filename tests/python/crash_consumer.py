"""Crash test, consumer side (after the broker was SIGKILLed during
crash_producer.py and restarted): reads the subscription crash_producer.py
created and checks that every message the broker had acknowledged to the
producer (--acked-file) is delivered, byte-exact, and that what is delivered
is in publish order with no duplicates. Messages that were sent but not
acknowledged may or may not appear (in order). The subscription must have
survived: it is opened with initial position Latest, so a subscription
re-created after the restart would deliver nothing."""

import pulsar

import compat
from compat import check, check_eq


def add_args(p):
    p.add_argument("--topic", required=True)
    p.add_argument("--subscription", required=True)
    p.add_argument("--acked-file", required=True)
    p.add_argument("--count", type=int, default=100_000)
    p.set_defaults(timeout=180)


def run(args):
    with open(args.acked_file) as f:
        acked = [int(line) for line in f.read().split("\n") if line.strip()]
    check(acked, "the acked file is empty: the producer never got an acknowledgement")
    check_eq(acked, sorted(set(acked)), "acknowledged indexes (increasing, distinct)")
    client = compat.client(args)
    try:
        consumer = client.subscribe(
            args.topic,
            args.subscription,
            initial_position=pulsar.InitialPosition.Latest,
            receiver_queue_size=1000,
        )
        received = []
        last_acked = acked[-1]
        while True:
            # Generous while acknowledged messages are still missing; then a
            # short wait for unacknowledged extras.
            timeout = 30_000 if not received or received[-1] < last_acked else 3_000
            try:
                msg = consumer.receive(timeout_millis=timeout)
            except pulsar.Timeout:
                break
            i = compat.index_of(msg.data())
            check(0 <= i < args.count, f"message index {i} was never sent")
            check_eq(msg.data(), compat.payload(args.seed, i, 256), f"payload of message {i}")
            if received and i <= received[-1]:
                compat.fail(
                    f"message {i} delivered after message {received[-1]} "
                    f"(order broken or duplicate; {len(received)} received so far)"
                )
            received.append(i)
            consumer.acknowledge(msg)
        got = set(received)
        missing = [i for i in acked if i not in got]
        extra = len(received) - (len(acked) - len(missing))
        print(
            f"acknowledged to the producer {len(acked)} (0..{last_acked}), delivered "
            f"{len(received)}, of which {extra} were not acknowledged to the producer",
            flush=True,
        )
        if missing:
            hint = " (was the subscription lost?)" if not received else ""
            compat.fail(
                f"{len(missing)} acknowledged messages lost{hint}: first {missing[:10]}, "
                f"delivered range {received[:1]}..{received[-1:]}"
            )
        consumer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
