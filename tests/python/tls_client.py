"""A client over TLS (`pulsar+ssl://`), or one that must be refused.

--expect ok: with the given trust file (and client certificate, through
AuthenticationTLS), the partitioned metadata and the lookup of a fresh topic
answer, and messages produced (batched and not) are consumed once, byte-exact
and in order.

--expect refused: creating a producer fails with a connection error or a
timeout (an untrusted server, a missing client certificate, a plain
`pulsar://` client on the TLS port...), within a bounded time; nothing else
counts as a refusal (a bad option, say).
"""

import time

import pulsar

import compat
from compat import check_eq

# A refused client retries until its operation timeout: keep it short.
REFUSED_OPERATION_TIMEOUT_S = 5


def add_args(p):
    p.add_argument("--expect", choices=["ok", "refused"], required=True)
    p.add_argument("--trust-certs", help="CA file the client trusts")
    p.add_argument("--cert", help="client certificate (AuthenticationTLS)")
    p.add_argument("--key", help="client private key (AuthenticationTLS)")
    p.add_argument("--messages", type=int, default=200)


def make_client(args, **overrides):
    options = dict(tls_validate_hostname=False, tls_allow_insecure_connection=False)
    if args.trust_certs:
        options["tls_trust_certs_file_path"] = args.trust_certs
    if args.cert:
        options["authentication"] = pulsar.AuthenticationTLS(args.cert, args.key)
    options.update(overrides)
    return compat.client(args, **options)


def expect_ok(args):
    client = make_client(args)
    try:
        name = compat.topic("tls")
        # PARTITIONED_METADATA, then LOOKUP (subscribe) over the TLS connection.
        check_eq(client.get_topic_partitions(name), [name], "partitions of a new topic")
        consumer = client.subscribe(
            name, "tls-sub", initial_position=pulsar.InitialPosition.Earliest
        )
        payloads = [compat.payload(args.seed, i) for i in range(args.messages)]
        half = len(payloads) // 2
        single = compat.producer(client, name)
        compat.send_all(single, payloads[:half])
        batched = compat.producer(
            client,
            name,
            batching_enabled=True,
            batching_max_messages=20,
            batching_max_publish_delay_ms=10,
        )
        compat.send_all(batched, payloads[half:])
        for i, want in enumerate(payloads):
            msg = compat.receive(consumer, f"message {i}")
            check_eq(msg.data(), want, f"message {i}")
            consumer.acknowledge(msg)
        compat.expect_silence(consumer, f"after all {len(payloads)} messages")
        # A reader on a second topic: one more lookup on the same client.
        other = compat.topic("tls-reader")
        p = compat.producer(client, other)
        p.send(b"over tls")
        reader = client.create_reader(other, pulsar.MessageId.earliest)
        check_eq(compat.read_next(reader, "the reader's message").data(), b"over tls", "reader")
        print(f"{len(payloads)} messages round-tripped over {args.service_url}", flush=True)
    finally:
        client.close()


def expect_refused(args):
    client = make_client(args, operation_timeout_seconds=REFUSED_OPERATION_TIMEOUT_S)
    started = time.monotonic()
    try:
        client.create_producer(compat.topic("tls-refused"), send_timeout_millis=5_000)
    except (pulsar.ConnectError, pulsar.Timeout) as e:
        print(
            f"refused as expected after {time.monotonic() - started:.1f}s: "
            f"{type(e).__name__}: {e}",
            flush=True,
        )
        return
    finally:
        client.close()
    compat.fail("the producer was created: the client was not refused")


def run(args):
    if args.expect == "ok":
        expect_ok(args)
    else:
        expect_refused(args)


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
