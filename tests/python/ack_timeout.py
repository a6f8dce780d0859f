"""Ack timeout: a message received and neither acknowledged nor nacked is
redelivered once the consumer's ack timeout (10 s, the C++ client's minimum)
passes, with redelivery count 1; acknowledged messages are not redelivered.
Uses a Shared subscription (Pulsar counts redeliveries on Shared and
Key_Shared subscriptions)."""

import pulsar

import compat
from compat import check_eq


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("ack-timeout")
        consumer = client.subscribe(
            name,
            "sub",
            consumer_type=pulsar.ConsumerType.Shared,
            unacked_messages_timeout_ms=10_000,
            initial_position=pulsar.InitialPosition.Earliest,
        )
        producer = compat.producer(client, name)
        payloads = [compat.payload(args.seed, i) for i in range(4)]
        compat.send_all(producer, payloads)

        for i in range(4):
            msg = compat.receive(consumer, f"message {i}")
            check_eq(msg.data(), payloads[i], f"message {i}")
            if i == 1:
                forgotten = compat.id_tuple(msg.message_id())
            else:
                consumer.acknowledge(msg)

        # Redelivered after 10 s (+ the client's 1 s tick); allow 30 s.
        msg = compat.receive(consumer, "redelivery of the unacknowledged message 1", 30_000)
        check_eq(msg.data(), payloads[1], "redelivered payload")
        check_eq(compat.id_tuple(msg.message_id()), forgotten, "redelivered message id")
        check_eq(msg.redelivery_count(), 1, "redelivery count after the ack timeout")
        consumer.acknowledge(msg)
        compat.expect_silence(consumer, "after the redelivered message was acknowledged", 2_000)
        producer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__, lambda p: p.set_defaults(timeout=150))
