"""Seek on a consumer: by message id (the C++ client then delivers from the
message after it, or from it when the consumer is configured with
start_message_id_inclusive; the broker resets the cursor to the message
itself), and by publish time (the first message published at or after the
timestamp; before everything: from the start; after everything: nothing).
Messages continue in order after each seek."""

import time

import pulsar

import compat
from compat import check_eq


def consume_from(consumer, payloads, first, what):
    for i in range(first, len(payloads)):
        msg = compat.receive(consumer, f"{what}: message {i}")
        check_eq(msg.data(), payloads[i], f"{what}: message {i}")
        consumer.acknowledge(msg)
    compat.expect_silence(consumer, f"{what}: after message {len(payloads) - 1}")


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("seek")
        consumer = client.subscribe(
            name, "sub", initial_position=pulsar.InitialPosition.Earliest
        )
        inclusive = client.subscribe(
            name,
            "sub-inclusive",
            initial_position=pulsar.InitialPosition.Earliest,
            start_message_id_inclusive=True,
        )
        producer = compat.producer(client, name)
        payloads = [compat.payload(args.seed, i) for i in range(20)]
        ids = []
        for p in payloads:
            ids.append(producer.send(p))
            # Distinct publish times (milliseconds), so a seek by time has
            # one right answer.
            time.sleep(0.005)

        publish_times = []
        for i in range(20):
            msg = compat.receive(consumer, f"message {i}")
            check_eq(msg.data(), payloads[i], f"message {i}")
            publish_times.append(msg.publish_timestamp())
            consumer.acknowledge(msg)
        consume_from(inclusive, payloads, 0, "second subscription")

        consumer.seek(ids[5])
        consume_from(consumer, payloads, 6, "after seek to message 5")
        inclusive.seek(ids[5])
        consume_from(inclusive, payloads, 5, "after seek to message 5 (inclusive consumer)")
        consumer.seek(pulsar.MessageId.earliest)
        consume_from(consumer, payloads, 0, "after seek to earliest")

        def first_at_or_after(ts):
            return next((i for i, t in enumerate(publish_times) if t >= ts), len(publish_times))

        ts = publish_times[12]
        consumer.seek(ts)
        consume_from(consumer, payloads, first_at_or_after(ts), f"after seek to time {ts} (message 12)")
        ts = publish_times[12] - 1
        consumer.seek(ts)
        consume_from(consumer, payloads, first_at_or_after(ts), f"after seek to time {ts} (just before 12)")
        consumer.seek(publish_times[0] - 60_000)
        consume_from(consumer, payloads, 0, "after seek to a time before every message")
        consumer.seek(publish_times[-1] + 60_000)
        compat.expect_silence(consumer, "after seek to a time after every message")

        # Produce more after the last seek: they arrive, in order.
        more = [compat.payload(args.seed, i) for i in range(20, 25)]
        compat.send_all(producer, more)
        for i, want in enumerate(more, start=20):
            msg = compat.receive(consumer, f"message {i} after the seeks")
            check_eq(msg.data(), want, f"message {i} after the seeks")
            consumer.acknowledge(msg)
        producer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
