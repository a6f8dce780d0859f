"""get_last_message_id on a consumer and has_message_available on readers:
an empty topic has nothing available; after producing, the last message id
is the id of the last message sent; a reader from earliest has messages
available until it read the last one; a reader from latest has none until
something new is produced."""

import pulsar

import compat
from compat import check, check_eq


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("last-message-id")
        consumer = client.subscribe(name, "sub", initial_position=pulsar.InitialPosition.Earliest)
        empty_reader = client.create_reader(name, pulsar.MessageId.earliest)
        check(not empty_reader.has_message_available(), "empty topic: reader from earliest has a message available")
        empty_last = consumer.get_last_message_id()
        check(
            empty_last.entry_id() < 0,
            f"empty topic: last message id {compat.id_tuple(empty_last)} names an entry",
        )

        producer = compat.producer(client, name)
        payloads = [compat.payload(args.seed, i) for i in range(5)]
        ids = [producer.send(p) for p in payloads]
        check_eq(
            compat.id_tuple(consumer.get_last_message_id())[:2],
            compat.id_tuple(ids[-1])[:2],
            "last message id (ledger, entry) after 5 sends",
        )

        check(empty_reader.has_message_available(), "after 5 sends: reader from earliest has nothing available")
        for i in range(5):
            check(empty_reader.has_message_available(), f"before reading message {i}: nothing available")
            msg = compat.read_next(empty_reader, f"message {i}")
            check_eq(msg.data(), payloads[i], f"message {i}")
        check(not empty_reader.has_message_available(), "after reading all 5: a message is available")

        latest = client.create_reader(name, pulsar.MessageId.latest)
        check(not latest.has_message_available(), "reader from latest: a message is available before any new one")
        from_middle = client.create_reader(name, ids[2])
        check(from_middle.has_message_available(), "reader after message 2: nothing available")

        payloads.append(compat.payload(args.seed, 5))
        ids.append(producer.send(payloads[5]))
        check_eq(
            compat.id_tuple(consumer.get_last_message_id())[:2],
            compat.id_tuple(ids[-1])[:2],
            "last message id after the 6th send",
        )
        check(latest.has_message_available(), "reader from latest: nothing available after a new send")
        msg = compat.read_next(latest, "message 5 on the reader from latest")
        check_eq(msg.data(), payloads[5], "message 5 on the reader from latest")
        check(not latest.has_message_available(), "reader from latest: still a message available after reading it")
        check(empty_reader.has_message_available(), "reader from earliest: the 6th message is not available")

        # A consumer that consumed everything: the last id still names the
        # last message (it is about the topic, not the subscription).
        for i in range(6):
            consumer.acknowledge(compat.receive(consumer, f"message {i} on the consumer"))
        check_eq(
            compat.id_tuple(consumer.get_last_message_id())[:2],
            compat.id_tuple(ids[-1])[:2],
            "last message id after consuming everything",
        )
        for r in (empty_reader, latest, from_middle):
            r.close()
        producer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
