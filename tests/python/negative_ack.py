"""Negative acknowledgement: a nacked message is redelivered (after the
client's nack delay) with its redelivery count raised by one each time, the
other messages are not redelivered, and once acknowledged it stays away.
Uses a Shared subscription (Pulsar counts redeliveries on Shared and
Key_Shared subscriptions)."""

import pulsar

import compat
from compat import check_eq


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("negative-ack")
        consumer = client.subscribe(
            name,
            "sub",
            consumer_type=pulsar.ConsumerType.Shared,
            negative_ack_redelivery_delay_ms=500,
            initial_position=pulsar.InitialPosition.Earliest,
        )
        producer = compat.producer(client, name)
        payloads = [compat.payload(args.seed, i) for i in range(5)]
        compat.send_all(producer, payloads)

        for i in range(5):
            msg = compat.receive(consumer, f"message {i}")
            check_eq(msg.data(), payloads[i], f"message {i}")
            check_eq(msg.redelivery_count(), 0, f"redelivery count of message {i} (first delivery)")
            if i == 2:
                consumer.negative_acknowledge(msg)
                nacked_id = compat.id_tuple(msg.message_id())
            else:
                consumer.acknowledge(msg)

        for attempt in (1, 2, 3):
            msg = compat.receive(consumer, f"redelivery {attempt} of nacked message 2")
            check_eq(msg.data(), payloads[2], f"redelivery {attempt}: payload")
            check_eq(compat.id_tuple(msg.message_id()), nacked_id, f"redelivery {attempt}: message id")
            check_eq(msg.redelivery_count(), attempt, f"redelivery {attempt}: redelivery count")
            if attempt < 3:
                consumer.negative_acknowledge(msg)
            else:
                consumer.acknowledge(msg)
        compat.expect_silence(consumer, "after the nacked message was acknowledged", 2_000)

        # Nack of several messages at once; each comes back once.
        more = [compat.payload(args.seed, i) for i in range(5, 10)]
        compat.send_all(producer, more)
        for i in range(5, 10):
            msg = compat.receive(consumer, f"message {i}")
            check_eq(msg.data(), more[i - 5], f"message {i}")
            consumer.negative_acknowledge(msg)
        back = {}
        for _ in range(5):
            msg = compat.receive(consumer, "a redelivered message of 5..9")
            back[compat.index_of(msg.data())] = msg.redelivery_count()
            consumer.acknowledge(msg)
        check_eq(back, {i: 1 for i in range(5, 10)}, "redelivered messages -> redelivery count")
        compat.expect_silence(consumer, "after all were acknowledged", 2_000)
        producer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
