"""Keys, ordering keys, properties, event time, producer name and publish
time round-trip exactly, with and without batching; a message sent without
them has none."""

import time

import pulsar

import compat
from compat import check, check_eq

PROPERTIES = [
    {},
    {"a": "1"},
    {"unicode": "grüße ✓ 日本", "empty": "", "k=v": "x:y", "long": "v" * 1000},
]


def run_case(client, args, batching):
    case = f"batching={batching}"
    name = compat.topic(f"fields-{'batch' if batching else 'single'}")
    consumer = client.subscribe(name, "sub", initial_position=pulsar.InitialPosition.Earliest)
    producer_name = f"compat-producer-{'batch' if batching else 'single'}"
    producer = compat.producer(
        client,
        name,
        producer_name=producer_name,
        batching_enabled=batching,
        batching_max_publish_delay_ms=20,
    )
    check_eq(producer.producer_name(), producer_name, f"{case}: producer name")
    messages = []
    for i in range(12):
        options = {}
        if i % 4 != 0:
            options["partition_key"] = f"key-{i % 5}-ключ"
            options["properties"] = PROPERTIES[i % 3]
            options["event_timestamp"] = 1_700_000_000_000 + i
        if i % 4 == 3:
            options["ordering_key"] = f"order-{i}"
        messages.append((compat.payload(args.seed, i, 512), options))
    before = int(time.time() * 1000)
    compat.send_all(producer, messages)
    after = int(time.time() * 1000)

    for i, (data, options) in enumerate(messages):
        msg = compat.receive(consumer, f"{case}: message {i}")
        what = f"{case}: message {i}"
        check_eq(msg.data(), data, f"{what}: payload")
        check_eq(msg.partition_key(), options.get("partition_key", ""), f"{what}: key")
        check_eq(msg.properties(), options.get("properties", {}), f"{what}: properties")
        check_eq(msg.event_timestamp(), options.get("event_timestamp", 0), f"{what}: event time")
        if "ordering_key" in options:
            got = msg.ordering_key()
            got = got.decode() if isinstance(got, bytes) else got
            check_eq(got, options["ordering_key"], f"{what}: ordering key")
        check_eq(msg.producer_name(), producer_name, f"{what}: producer name")
        check_eq(msg.topic_name(), name, f"{what}: topic name")
        # The client stamps the publish time; it must come back unchanged
        # (so within the window the sends happened in).
        check(
            before <= msg.publish_timestamp() <= after,
            f"{what}: publish time {msg.publish_timestamp()} outside [{before}, {after}]",
        )
        consumer.acknowledge(msg)
    compat.expect_silence(consumer, f"{case}: after all messages")
    producer.close()
    consumer.close()


def run(args):
    client = compat.client(args)
    try:
        run_case(client, args, batching=False)
        run_case(client, args, batching=True)
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
