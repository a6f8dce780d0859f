"""Key_Shared subscription with three stable consumers: all messages of a
key go to exactly one consumer, in publish order; every message arrives
exactly once; the keys are spread over more than one consumer."""

import time

import pulsar

import compat
from compat import check, check_eq

KEYS = 30
PER_KEY = 20


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("key-shared")
        consumers = [
            client.subscribe(
                name,
                "sub",
                consumer_type=pulsar.ConsumerType.KeyShared,
                consumer_name=f"key-shared-{i}",
                receiver_queue_size=20,
                initial_position=pulsar.InitialPosition.Earliest,
            )
            for i in range(3)
        ]
        producer = compat.producer(client, name)
        # Keys interleaved: message j of key k is b"key-k:j".
        messages = [
            (f"key-{k}:{j}".encode(), {"partition_key": f"key-{k}"})
            for j in range(PER_KEY)
            for k in range(KEYS)
        ]
        compat.send_all(producer, messages)
        sent = len(messages)

        owner = {}  # key -> consumer index
        seen = {}  # key -> [j...]
        total = 0
        give_up = time.monotonic() + 60
        while total < sent and time.monotonic() < give_up:
            for i, c in enumerate(consumers):
                try:
                    msg = c.receive(timeout_millis=50)
                except pulsar.Timeout:
                    continue
                key = msg.partition_key()
                text = msg.data().decode()
                check(text.startswith(key + ":"), f"message {text!r} carries key {key!r}")
                j = int(text.split(":")[1])
                if owner.setdefault(key, i) != i:
                    compat.fail(
                        f"key {key} delivered to consumer {i} after consumer {owner[key]} "
                        "(consumers were stable)"
                    )
                seen.setdefault(key, []).append(j)
                total += 1
                c.acknowledge(msg)
        check_eq(total, sent, "messages received")
        for k in range(KEYS):
            check_eq(seen.get(f"key-{k}"), list(range(PER_KEY)), f"messages of key-{k} (order)")
        used = sorted(set(owner.values()))
        check(len(used) > 1, f"all {KEYS} keys went to consumer(s) {used}")
        for c in consumers:
            compat.expect_silence(c, "after every message was acknowledged", 500)
        spread = [sum(1 for v in owner.values() if v == i) for i in range(3)]
        print(f"{KEYS} keys spread over the consumers as {spread}", flush=True)
        producer.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
