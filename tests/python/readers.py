"""Readers: from the earliest message, from the latest (only what is
produced afterwards), and from a specific message id, exclusive (the
default: starts after it) and inclusive (starts at it), also with an id that
went through serialize/deserialize. Message ids read back equal the ids the
producer got."""

import pulsar

import compat
from compat import check_eq


def read_exactly(reader, payloads, ids, first, what):
    """Reads messages first..len-1 and checks payload and id; then silence."""
    for i in range(first, len(payloads)):
        msg = compat.read_next(reader, f"{what}: message {i}")
        check_eq(msg.data(), payloads[i], f"{what}: message {i}")
        check_eq(compat.id_tuple(msg.message_id()), compat.id_tuple(ids[i]), f"{what}: id of message {i}")
    compat.expect_silence(reader, f"{what}: after message {len(payloads) - 1}")


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("readers")
        producer = compat.producer(client, name)
        payloads = [compat.payload(args.seed, i) for i in range(10)]
        ids = [producer.send(p) for p in payloads]
        ledgers_entries = [compat.id_tuple(i)[:2] for i in ids]
        check_eq(ledgers_entries, sorted(set(ledgers_entries)), "send ids increase and are distinct")

        earliest = client.create_reader(name, pulsar.MessageId.earliest)
        read_exactly(earliest, payloads, ids, 0, "reader from earliest")

        latest = client.create_reader(name, pulsar.MessageId.latest)
        compat.expect_silence(latest, "reader from latest before anything new was produced")

        after = client.create_reader(name, ids[4])
        inclusive = client.create_reader(name, ids[4], start_message_id_inclusive=True)
        restored = pulsar.MessageId.deserialize(ids[4].serialize())
        after_restored = client.create_reader(name, restored)
        inclusive_restored = client.create_reader(name, restored, start_message_id_inclusive=True)
        last_inclusive = client.create_reader(name, ids[9], start_message_id_inclusive=True)

        payloads.append(compat.payload(args.seed, 10))
        ids.append(producer.send(payloads[10]))
        read_exactly(earliest, payloads, ids, 10, "reader from earliest, new message")
        read_exactly(latest, payloads, ids, 10, "reader from latest")
        read_exactly(after, payloads, ids, 5, "reader from message 4, exclusive")
        read_exactly(inclusive, payloads, ids, 4, "reader from message 4, inclusive")
        read_exactly(after_restored, payloads, ids, 5, "reader from deserialized id 4, exclusive")
        read_exactly(inclusive_restored, payloads, ids, 4, "reader from deserialized id 4, inclusive")
        read_exactly(last_inclusive, payloads, ids, 9, "reader from message 9, inclusive")
        for r in (earliest, latest, after, inclusive, after_restored, inclusive_restored, last_inclusive):
            r.close()
        producer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
