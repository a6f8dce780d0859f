"""Shared helpers of the Pulsar client compatibility scripts.

Every scenario script in this directory runs against a live `strata
standalone` with the official Python client (`pulsar-client`, which wraps the
Apache C++ client), exits 0 when everything matched, and exits 1 with a line
starting `FAIL:` when something did not. Every client call is bounded (operation
and receive timeouts), and a watchdog (`--timeout`) dumps every thread's stack
and exits 1 if the script as a whole hangs, so a broken broker fails fast.

The scripts are driven by `tests/tests/pulsar_python.rs`; each can also be run
by hand: `python3 tests/python/<script>.py --service-url pulsar://127.0.0.1:6650`.
"""

import argparse
import faulthandler
import random
import sys
import time
import traceback
import uuid

PULSAR_CLIENT_VERSION = "3.13.0"

try:
    import pulsar
except ImportError as e:  # pragma: no cover - environment problem
    print(
        f"FAIL: cannot import the Pulsar client ({e}); install it with "
        f"`python3 -m pip install pulsar-client=={PULSAR_CLIENT_VERSION}` "
        "(scripts/test.sh does this)",
        flush=True,
    )
    sys.exit(2)

if pulsar.__version__ != PULSAR_CLIENT_VERSION:
    print(
        f"warning: pulsar-client {pulsar.__version__} is installed; these tests "
        f"target {PULSAR_CLIENT_VERSION}",
        flush=True,
    )

# Bounds on client calls: a broker that does not answer makes a call fail
# within these, never hang.
OPERATION_TIMEOUT_S = 15
CONNECTION_TIMEOUT_MS = 5_000
SEND_TIMEOUT_MS = 15_000
# How long a message that must arrive may take, and how long to wait to be
# sure that one that must not arrive does not.
RECEIVE_TIMEOUT_MS = 10_000
SILENCE_MS = 1_500


class Failure(Exception):
    """A mismatch between what Pulsar semantics require and what happened."""


def fail(message):
    raise Failure(message)


def check(condition, message):
    if not condition:
        raise Failure(message)


def check_eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {short(got)}, want {short(want)}")


def short(value, limit=300):
    """A readable, bounded description: long byte strings as their first
    bytes and length, lists element by element."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) <= 24:
            return repr(bytes(value))
        return f"{bytes(value[:16])!r}...({len(value)} bytes)"
    if isinstance(value, (list, tuple)):
        text = "[" + ", ".join(short(v, 60) for v in value[:20])
        text += f", ... ({len(value)} items)]" if len(value) > 20 else "]"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def parser(description):
    """An argument parser with the options every script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--service-url", required=True, help="pulsar://host:port")
    p.add_argument(
        "--timeout",
        type=float,
        default=120,
        help="watchdog: dump stacks and exit 1 after this many seconds",
    )
    p.add_argument("--seed", type=int, default=20260501, help="payload RNG seed")
    return p


def main(run, description, add_args=None):
    """Parses arguments, arms the watchdog and runs `run(args)`; exits 0 on
    success, 1 on a Failure or any exception, with a clear message."""
    p = parser(description)
    if add_args is not None:
        add_args(p)
    args = p.parse_args()
    name = sys.argv[0].rsplit("/", 1)[-1]
    # Runs in its own thread, so it fires even while the main thread is
    # blocked inside the C++ client.
    faulthandler.dump_traceback_later(args.timeout, exit=True)
    started = time.monotonic()
    try:
        run(args)
    except Failure as e:
        print(f"FAIL: {name}: {e}", flush=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - any client error fails the scenario
        traceback.print_exc()
        print(f"FAIL: {name}: unexpected {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    finally:
        faulthandler.cancel_dump_traceback_later()
    print(f"OK: {name} ({time.monotonic() - started:.1f}s)", flush=True)


def client(args, **overrides):
    """A client with bounded operation and connection timeouts; the C++
    client's own log goes to stderr at WARN level and above."""
    options = dict(
        operation_timeout_seconds=OPERATION_TIMEOUT_S,
        connection_timeout_ms=CONNECTION_TIMEOUT_MS,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
    )
    options.update(overrides)
    return pulsar.Client(args.service_url, **options)


def topic(name):
    """A fresh persistent topic in public/default."""
    return f"persistent://public/default/{name}-{uuid.uuid4().hex[:10]}"


def producer(c, topic_name, **overrides):
    options = dict(send_timeout_millis=SEND_TIMEOUT_MS, batching_enabled=False)
    options.update(overrides)
    return c.create_producer(topic_name, **options)


def receive(consumer, what, timeout_ms=RECEIVE_TIMEOUT_MS):
    """The next message; a Failure naming `what` if none comes in time."""
    try:
        return consumer.receive(timeout_millis=timeout_ms)
    except pulsar.Timeout:
        fail(f"no message within {timeout_ms} ms: expected {what}")


def read_next(reader, what, timeout_ms=RECEIVE_TIMEOUT_MS):
    try:
        return reader.read_next(timeout_millis=timeout_ms)
    except pulsar.Timeout:
        fail(f"reader: no message within {timeout_ms} ms: expected {what}")


def expect_silence(receiver, what, timeout_ms=SILENCE_MS):
    """Checks that nothing arrives within `timeout_ms` (a consumer or a
    reader)."""
    try:
        if isinstance(receiver, pulsar.Reader):
            msg = receiver.read_next(timeout_millis=timeout_ms)
        else:
            msg = receiver.receive(timeout_millis=timeout_ms)
    except pulsar.Timeout:
        return
    fail(f"{what}: unexpected message {short(msg.data())} id={msg.message_id()}")


def payload(seed, index, max_size=2048):
    """A deterministic payload for message `index`: a readable prefix, then
    random bytes (or a compressible run, every third message)."""
    rng = random.Random(seed * 1_000_003 + index)
    prefix = b"m%08d:" % index
    size = rng.randint(0, max_size)
    if index % 3 == 0:
        body = bytes([rng.randrange(256)]) * size
    else:
        body = rng.randbytes(size)
    return prefix + body


def index_of(data):
    """The index in a payload made by `payload` (or made as b"m%08d...")."""
    check(data[:1] == b"m" and data[9:10] == b":", f"not a test payload: {short(data)}")
    return int(data[1:9])


def id_tuple(message_id):
    """(ledger, entry, batch index, partition) of a MessageId, comparable."""
    return (
        message_id.ledger_id(),
        message_id.entry_id(),
        message_id.batch_index(),
        message_id.partition(),
    )


def send_all(prod, payloads, **send_kwargs):
    """Sends asynchronously, waits for every callback (bounded), checks every
    send succeeded; returns the message ids in order. An element of
    `payloads` is bytes, or (bytes, dict of send options for that message)."""
    results = [None] * len(payloads)

    def callback_for(i):
        def cb(res, msg_id):
            results[i] = (res, msg_id)

        return cb

    for i, p in enumerate(payloads):
        options = dict(send_kwargs)
        if isinstance(p, tuple):
            p, extra = p
            options.update(extra)
        prod.send_async(p, callback_for(i), **options)
    prod.flush()
    give_up = time.monotonic() + SEND_TIMEOUT_MS / 1000 + 5
    while any(r is None for r in results):
        check(
            time.monotonic() < give_up,
            f"{sum(r is None for r in results)} send callbacks never came",
        )
        time.sleep(0.01)
    for i, (res, _) in enumerate(results):
        check_eq(res, pulsar.Result.Ok, f"send of message {i}")
    return [msg_id for _, msg_id in results]
