"""Crash test, producer side: creates the subscription (so it exists before
the crash), then sends messages 0..count-1 asynchronously, paced, and
appends the index of every message the broker ACKNOWLEDGED to --acked-file
(one line each, flushed at once, in acknowledgement order). The test
SIGKILLs the broker meanwhile: the first failed send stops the producer,
which then waits (bounded) for every outstanding callback and exits 0.
Exits 1 if nothing was acknowledged, or if acknowledgements came out of
order. Prints "sent N, acknowledged A, failed F" at the end."""

import threading
import time

import pulsar

import compat
from compat import check


def add_args(p):
    p.add_argument("--topic", required=True)
    p.add_argument("--subscription", required=True)
    p.add_argument("--acked-file", required=True)
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=2_000, help="messages per second")
    p.add_argument("--batching", action="store_true")
    p.set_defaults(timeout=180)


def run(args):
    client = compat.client(args)
    consumer = client.subscribe(
        args.topic,
        args.subscription,
        initial_position=pulsar.InitialPosition.Earliest,
    )
    consumer.close()
    producer = compat.producer(
        client,
        args.topic,
        batching_enabled=args.batching,
        batching_max_publish_delay_ms=5,
        max_pending_messages=500,
        block_if_queue_full=True,
        send_timeout_millis=5_000,
    )
    lock = threading.Lock()
    state = {"acked": 0, "failed": 0, "last_acked": -1, "error": None, "order": None}
    acked_file = open(args.acked_file, "a", buffering=1)

    def callback_for(i):
        def cb(res, _msg_id):
            with lock:
                if res == pulsar.Result.Ok:
                    if i <= state["last_acked"] and state["order"] is None:
                        state["order"] = f"message {i} acknowledged after {state['last_acked']}"
                    state["last_acked"] = max(state["last_acked"], i)
                    state["acked"] += 1
                    acked_file.write(f"{i}\n")
                    acked_file.flush()
                else:
                    state["failed"] += 1
                    if state["error"] is None:
                        state["error"] = f"message {i}: {res}"

        return cb

    sent = 0
    started = time.monotonic()
    for i in range(args.count):
        with lock:
            if state["error"] is not None:
                break
        # Pacing keeps the run long enough for the test to crash the broker
        # in the middle of it.
        ahead = i / args.rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        try:
            producer.send_async(compat.payload(args.seed, i, 256), callback_for(i))
        except pulsar.PulsarException as e:
            with lock:
                state["error"] = state["error"] or f"send_async of {i}: {e!r}"
            break
        sent += 1

    # Every outstanding send ends in an ack or a failure within the send
    # timeout (the broker is down, so nothing is resent).
    give_up = time.monotonic() + 30
    while True:
        with lock:
            done = state["acked"] + state["failed"]
        if done >= sent or time.monotonic() > give_up:
            break
        time.sleep(0.05)
    acked_file.close()
    with lock:
        summary = dict(state)
    print(
        f"sent {sent}, acknowledged {summary['acked']}, failed {summary['failed']}; "
        f"first error: {summary['error']}",
        flush=True,
    )
    check(summary["order"] is None, f"acknowledgements out of order: {summary['order']}")
    check(summary["acked"] > 0, "nothing was acknowledged")
    check(
        summary["acked"] + summary["failed"] == sent,
        f"{sent - summary['acked'] - summary['failed']} sends never completed",
    )
    # Closing may wait for a broker that is gone; the process exits anyway.
    try:
        producer.close()
    except pulsar.PulsarException:
        pass
    try:
        client.close()
    except pulsar.PulsarException:
        pass


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
