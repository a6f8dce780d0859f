"""Auto topic creation of the partitioned type (the standalone runs with
--auto-topic-creation-type partitioned --default-num-partitions 3): a topic
used for the first time becomes a partitioned topic of 3 partitions, which
producers spread over and a consumer reads from in full."""

import pulsar

import compat
from compat import check_eq


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("auto-partitioned")
        consumer = client.subscribe(name, "sub", consumer_type=pulsar.ConsumerType.Shared)
        check_eq(len(client.get_topic_partitions(name)), 3, "partitions of a topic created on first use")
        producer = compat.producer(
            client, name, message_routing_mode=pulsar.PartitionsRoutingMode.RoundRobinDistribution
        )
        payloads = [compat.payload(args.seed, i, 128) for i in range(30)]
        ids = compat.send_all(producer, payloads)
        check_eq(sorted({i.partition() for i in ids}), [0, 1, 2], "partitions used")
        got = []
        for i in range(len(payloads)):
            msg = compat.receive(consumer, f"message {i}")
            got.append(msg.data())
            consumer.acknowledge(msg)
        check_eq(sorted(got), sorted(payloads), "messages received")
        producer.close()
        consumer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
