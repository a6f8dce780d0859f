"""1,000 topics open at once from one client: a producer on each (all kept
open), one message each, then one consumer subscribed to all 1,000 topics
gets every message exactly once, each from its own topic."""

import time

import pulsar

import compat
from compat import check, check_eq


def run(args):
    client = compat.client(args)
    try:
        base = compat.topic("many")
        names = [f"{base}-{i:04d}" for i in range(args.topics)]
        started = time.monotonic()
        producers = [compat.producer(client, n) for n in names]
        print(f"{len(producers)} producers created in {time.monotonic() - started:.1f}s", flush=True)
        results = {}

        def callback_for(i):
            def cb(res, _msg_id):
                results[i] = res

            return cb

        for i, p in enumerate(producers):
            p.send_async(b"m%08d:%s" % (i, names[i].encode()), callback_for(i))
        for p in producers:
            p.flush()
        give_up = time.monotonic() + compat.SEND_TIMEOUT_MS / 1000 + 10
        while len(results) < len(producers) and time.monotonic() < give_up:
            time.sleep(0.01)
        check_eq(len(results), len(producers), "send callbacks")
        bad = {i: r for i, r in results.items() if r != pulsar.Result.Ok}
        check(not bad, f"{len(bad)} sends failed, e.g. {list(bad.items())[:5]}")

        consumer = client.subscribe(
            names,
            "sub",
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=10,
        )
        seen = set()
        for _ in range(len(names)):
            msg = compat.receive(consumer, f"a message ({len(seen)} of {len(names)} so far)", 30_000)
            i = compat.index_of(msg.data())
            check(i not in seen, f"message of topic {i} delivered twice")
            check_eq(msg.data(), b"m%08d:%s" % (i, names[i].encode()), f"payload of topic {i}")
            check_eq(msg.topic_name(), names[i], f"topic of message {i}")
            seen.add(i)
            consumer.acknowledge(msg)
        compat.expect_silence(consumer, "after one message per topic")
        consumer.close()
        for p in producers:
            p.close()
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(
        run,
        __doc__,
        lambda p: (
            p.add_argument("--topics", type=int, default=1000),
            p.set_defaults(timeout=300),
        ),
    )
