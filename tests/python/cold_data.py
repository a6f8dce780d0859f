"""Tiered-storage data checks, in one of three modes:

- produce: sends messages --start..--start+--count-1 (payload i is a
  deterministic function of the seed and i, --size bytes), batched,
  waits for every receipt;
- consume: a new subscription from earliest must receive exactly messages
  0..--count-1, in order, each byte-identical, and nothing after them;
- tail: produces --count messages paced at --rate while a consumer that
  subscribed before the first send receives them; checks every message
  arrives exactly once, in order, byte-identical.

Prints "produced N" / "consumed N" / "tailed N" at the end."""

import random
import threading
import time

import pulsar

import compat
from compat import check, check_eq


def add_args(p):
    p.add_argument("--mode", choices=["produce", "consume", "tail"], required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--subscription", default="cold-check")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--rate", type=float, default=2000.0, help="tail mode: messages per second")
    p.add_argument(
        "--from-any",
        action="store_true",
        help="consume: the first message may be any index (older ones were deleted by retention); "
        "from it on every message up to --count-1 must follow",
    )
    p.set_defaults(timeout=600)


def data(seed, i, size):
    rng = random.Random(seed * 7_919 + i)
    prefix = b"m%08d:" % i
    return prefix + rng.randbytes(max(0, size - len(prefix)))


def produce(client, args, first, count, rate=None):
    producer = compat.producer(
        client,
        args.topic,
        batching_enabled=True,
        batching_max_messages=1000,
        batching_max_allowed_size_in_bytes=1 << 20,
        batching_max_publish_delay_ms=5,
        max_pending_messages=5000,
        block_if_queue_full=True,
        send_timeout_millis=60_000,
    )
    lock = threading.Lock()
    state = {"ok": 0, "bad": None}

    def cb(res, _id):
        with lock:
            if res == pulsar.Result.Ok:
                state["ok"] += 1
            elif state["bad"] is None:
                state["bad"] = str(res)

    started = time.monotonic()
    for i in range(first, first + count):
        producer.send_async(data(args.seed, i, args.size), cb)
        if rate:
            ahead = (i - first + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            if state["ok"] == count or state["bad"]:
                break
        time.sleep(0.05)
    check(state["bad"] is None, f"a send failed: {state['bad']}")
    check_eq(state["ok"], count, "acknowledged sends")
    producer.close()


def check_stream(consumer, args, first, count, what):
    for i in range(first, first + count):
        msg = compat.receive(consumer, f"{what}: message {i}", timeout_ms=60_000)
        got = msg.data()
        if got != data(args.seed, i, args.size):
            compat.fail(f"{what}: message {i} differs: got {compat.short(got)} id={msg.message_id()}")
        consumer.acknowledge(msg)
    compat.expect_silence(consumer, f"{what}: after the last message")


def run(args):
    client = compat.client(args, operation_timeout_seconds=60)
    if args.mode == "produce":
        produce(client, args, args.start, args.count)
        print(f"produced {args.count}", flush=True)
    elif args.mode == "consume":
        consumer = client.subscribe(
            args.topic,
            args.subscription,
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=1000,
        )
        first = 0
        if args.from_any:
            msg = compat.receive(consumer, "consume: the first message", timeout_ms=60_000)
            first = compat.index_of(msg.data())
            check(msg.data() == data(args.seed, first, args.size), f"message {first} differs")
            consumer.acknowledge(msg)
            first += 1
        check_stream(consumer, args, first, args.count - first, "consume")
        consumer.close()
        print(f"consumed {args.count - (first - 1 if args.from_any else 0)} first={first - 1 if args.from_any else 0}", flush=True)
    else:
        consumer = client.subscribe(
            args.topic,
            args.subscription,
            initial_position=pulsar.InitialPosition.Latest,
            receiver_queue_size=1000,
        )
        errors = []

        def send():
            try:
                produce(client, args, args.start, args.count, rate=args.rate)
            except SystemExit as e:  # compat.fail exits
                errors.append(f"producer exited: {e}")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        t = threading.Thread(target=send)
        t.start()
        check_stream(consumer, args, args.start, args.count, "tail")
        t.join()
        check(not errors, f"producer failed: {errors}")
        consumer.close()
        print(f"tailed {args.count}", flush=True)
    client.close()


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
