"""Exclusive subscription: a second consumer on the same subscription is
rejected with ConsumerBusy (not a timeout), a consumer on another
subscription of the topic is accepted, and once the first consumer closes a
new one takes over and gets what the first left unacknowledged."""

import pulsar

import compat
from compat import check_eq


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("exclusive")
        first = client.subscribe(
            name,
            "sub",
            consumer_type=pulsar.ConsumerType.Exclusive,
            initial_position=pulsar.InitialPosition.Earliest,
        )
        try:
            second = client.subscribe(name, "sub", consumer_type=pulsar.ConsumerType.Exclusive)
        except pulsar.ConsumerBusy:
            second = None
        except pulsar.Timeout:
            compat.fail("second exclusive consumer: the broker did not answer (Timeout)")
        except pulsar.PulsarException as e:
            compat.fail(f"second exclusive consumer: expected ConsumerBusy, got {type(e).__name__}: {e}")
        if second is not None:
            compat.fail("second exclusive consumer on the same subscription was accepted")
        # A Shared consumer cannot join an Exclusive subscription either.
        try:
            client.subscribe(name, "sub", consumer_type=pulsar.ConsumerType.Shared)
            compat.fail("a Shared consumer joined a subscription with an Exclusive consumer")
        except pulsar.Timeout:
            compat.fail("Shared consumer on an Exclusive subscription: the broker did not answer")
        except pulsar.PulsarException:
            pass
        other = client.subscribe(
            name,
            "other-sub",
            consumer_type=pulsar.ConsumerType.Exclusive,
            initial_position=pulsar.InitialPosition.Earliest,
        )

        producer = compat.producer(client, name)
        payloads = [compat.payload(args.seed, i) for i in range(10)]
        compat.send_all(producer, payloads)

        for i in range(5):
            msg = compat.receive(first, f"message {i} on the first consumer")
            check_eq(msg.data(), payloads[i], f"first consumer, message {i}")
            first.acknowledge(msg)
        for i in range(10):
            msg = compat.receive(other, f"message {i} on the other subscription")
            check_eq(msg.data(), payloads[i], f"other subscription, message {i}")
            other.acknowledge(msg)
        first.close()

        taker = client.subscribe(name, "sub", consumer_type=pulsar.ConsumerType.Exclusive)
        for i in range(5, 10):
            msg = compat.receive(taker, f"message {i} on the consumer that took over")
            check_eq(msg.data(), payloads[i], f"consumer that took over, message {i}")
            taker.acknowledge(msg)
        compat.expect_silence(taker, "consumer that took over, after message 9")
        producer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
