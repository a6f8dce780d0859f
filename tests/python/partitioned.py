"""Partitioned topics: created through the admin REST API, produced to with
the client's round-robin and key-hash routing, consumed by Exclusive,
Shared and Failover subscriptions over every partition, read by a reader,
grown from 4 to 6 partitions; a partition past the count is refused."""

import json
import urllib.error
import urllib.request

import pulsar

import compat
from compat import check, check_eq

PARTITIONS = 4


def rest(admin_url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(admin_url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rest_path(topic_name):
    return "/admin/v2/persistent/" + topic_name[len("persistent://"):]


def partition_of(msg):
    """The partition a received message came from, by its topic name and
    by its id, which must agree."""
    name = msg.topic_name()
    check("-partition-" in name, f"message topic {name} is not a partition")
    index = int(name.rsplit("-partition-", 1)[1])
    check_eq(msg.message_id().partition(), index, f"id partition of a message from {name}")
    return index


def receive_all(consumer, count, what):
    got = []
    for i in range(count):
        msg = compat.receive(consumer, f"{what}: message {i} of {count}")
        got.append(msg)
        consumer.acknowledge(msg)
    return got


def run(args):
    admin = args.admin_url
    client = compat.client(args)
    try:
        name = compat.topic("partitioned")
        status, body = rest(admin, "PUT", rest_path(name) + "/partitions", PARTITIONS)
        check_eq(status, 204, f"create partitioned topic ({body})")
        status, body = rest(admin, "GET", rest_path(name) + "/partitions")
        check_eq((status, body["partitions"]), (200, PARTITIONS), "partition count")
        check_eq(
            len(client.get_topic_partitions(name)), PARTITIONS, "partitions seen by the client"
        )

        exclusive = client.subscribe(name, "excl", consumer_type=pulsar.ConsumerType.Exclusive)
        shared = client.subscribe(name, "shared", consumer_type=pulsar.ConsumerType.Shared)
        failover = [
            client.subscribe(
                name, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name=f"fo-{i}"
            )
            for i in range(2)
        ]

        # Round robin: messages without a key spread over every partition.
        rr = compat.producer(
            client, name, message_routing_mode=pulsar.PartitionsRoutingMode.RoundRobinDistribution
        )
        payloads = [compat.payload(args.seed, i, 256) for i in range(40)]
        ids = compat.send_all(rr, payloads)
        used = sorted({i.partition() for i in ids})
        check_eq(used, list(range(PARTITIONS)), "partitions used by round robin")

        # Key hash: every message of a key goes to one partition, with and
        # without batching.
        keyed = compat.producer(
            client, name, message_routing_mode=pulsar.PartitionsRoutingMode.UseSinglePartition
        )
        batched = compat.producer(client, name, batching_enabled=True, batching_max_messages=8)
        key_payloads = []
        for round_ in range(5):
            for k in range(10):
                key_payloads.append((compat.payload(args.seed, 100 + round_ * 10 + k, 64), {"partition_key": f"key-{k}"}))
        key_ids = compat.send_all(keyed, key_payloads) + compat.send_all(batched, key_payloads)
        by_key = {}
        for (_, opts), msg_id in zip(key_payloads * 2, key_ids):
            by_key.setdefault(opts["partition_key"], set()).add(msg_id.partition())
        for key, parts in by_key.items():
            check_eq(len(parts), 1, f"partitions holding key {key}")
        check(len({min(p) for p in by_key.values()}) > 1, "keys all hashed to one partition")

        total = len(payloads) + 2 * len(key_payloads)

        # Exclusive: everything, in order within each partition.
        got = receive_all(exclusive, total, "exclusive")
        per_partition = {}
        for msg in got:
            per_partition.setdefault(partition_of(msg), []).append(compat.id_tuple(msg.message_id()))
        for p, seq in per_partition.items():
            check_eq(seq, sorted(seq), f"order within partition {p}")
        check_eq(
            sorted(m.data() for m in got if m.partition_key() == ""),
            sorted(payloads),
            "unkeyed payloads received",
        )
        compat.expect_silence(exclusive, "exclusive after everything")

        # Shared: everything exactly once.
        got = receive_all(shared, total, "shared")
        check_eq(len({compat.id_tuple(m.message_id()) for m in got}), total, "distinct shared messages")
        compat.expect_silence(shared, "shared after everything")

        # Failover: each partition active on one of the two consumers; the
        # union is everything, each partition seen by one consumer only.
        seen = {0: set(), 1: set()}
        ids_seen = set()
        deadline_empty = 0
        while len(ids_seen) < total and deadline_empty < 2:
            progressed = False
            for i, c in enumerate(failover):
                try:
                    msg = c.receive(timeout_millis=1500)
                except pulsar.Timeout:
                    continue
                c.acknowledge(msg)
                seen[i].add(partition_of(msg))
                ids_seen.add(compat.id_tuple(msg.message_id()))
                progressed = True
            deadline_empty = 0 if progressed else deadline_empty + 1
        check_eq(len(ids_seen), total, "messages received by the failover pair")
        check(seen[0] and seen[1], f"failover partitions per consumer: {seen}")
        check(not (seen[0] & seen[1]), f"a partition active on both failover consumers: {seen}")

        # A reader over the partitioned topic reads every partition.
        reader = client.create_reader(name, pulsar.MessageId.earliest)
        read = set()
        for i in range(total):
            msg = compat.read_next(reader, f"partitioned reader: message {i}")
            partition_of(msg)
            read.add(compat.id_tuple(msg.message_id()))
        check_eq(len(read), total, "distinct messages read")
        compat.expect_silence(reader, "reader after everything")
        reader.close()

        # A partition can be used directly; one past the count cannot.
        # (The client numbers ids of a producer made on a partition -1.)
        direct = compat.producer(client, f"{name}-partition-1")
        direct.send(b"m00000999:direct")
        direct.close()
        msg = compat.receive(exclusive, "the message sent to partition 1 directly")
        check_eq((msg.data(), partition_of(msg)), (b"m00000999:direct", 1), "direct message")
        exclusive.acknowledge(msg)
        try:
            compat.producer(client, f"{name}-partition-{PARTITIONS + 3}")
            compat.fail("a producer on a partition past the count was accepted")
        except pulsar.PulsarException:
            pass

        # Growing the topic: a new producer uses the new partitions too.
        status, body = rest(admin, "POST", rest_path(name) + "/partitions", PARTITIONS + 2)
        check_eq(status, 204, f"update partitions ({body})")
        status, body = rest(admin, "POST", rest_path(name) + "/partitions", 2)
        check(status in (400, 409, 412), f"shrinking partitions: status {status} ({body})")
        grown = compat.producer(
            client, name, message_routing_mode=pulsar.PartitionsRoutingMode.RoundRobinDistribution
        )
        grown_ids = compat.send_all(grown, [compat.payload(args.seed, 500 + i, 32) for i in range(30)])
        check_eq(
            sorted({i.partition() for i in grown_ids}), list(range(PARTITIONS + 2)), "partitions after growing"
        )
        for c in [exclusive, shared, *failover]:
            c.close()
        for p in (rr, keyed, batched, grown):
            p.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(
        run,
        __doc__,
        lambda p: p.add_argument("--admin-url", required=True, help="http://host:port"),
    )
