"""Pulsar's `tls` authentication (`pulsar.AuthenticationTLS`: the role is
the subject CN of the client certificate) against a standalone started with
--authentication-enabled --authentication-providers tls
--authorization-enabled --tls-require-trusted-client-cert
(tests/tests/auth/tls_method.rs makes the certificates and the grants).

--expect ok: the certificate's role has produce and consume on the
namespace of --topic: messages produced (batched and not) are consumed
once, byte-exact and in order; on --other-topic (a namespace where it has
no grant) producing and subscribing raise AuthorizationError.

--expect unauthorized: the role has no grant anywhere: the connection is
accepted (the certificate is trusted), but producing to and subscribing on
--topic raise AuthorizationError.

--expect refused: no client certificate (or an untrusted one): the TLS
handshake fails, so creating a producer fails with ConnectError or Timeout
within a bounded time.
"""

import time

import pulsar

import compat
from compat import check_eq

# A refused client retries until its operation timeout: keep it short.
REFUSED_OPERATION_TIMEOUT_S = 5


def add_args(p):
    p.add_argument("--expect", choices=["ok", "unauthorized", "refused"], required=True)
    p.add_argument("--trust-certs", required=True, help="CA file the client trusts")
    p.add_argument("--cert", help="client certificate (AuthenticationTLS)")
    p.add_argument("--key", help="client private key (AuthenticationTLS)")
    p.add_argument("--topic", required=True)
    p.add_argument("--other-topic", help="a topic of a namespace without grants")
    p.add_argument("--messages", type=int, default=100)


def make_client(args, **overrides):
    options = dict(
        tls_trust_certs_file_path=args.trust_certs,
        tls_validate_hostname=False,
        tls_allow_insecure_connection=False,
    )
    if args.cert:
        options["authentication"] = pulsar.AuthenticationTLS(args.cert, args.key)
    options.update(overrides)
    return compat.client(args, **options)


def expect_authorization_error(what, call):
    try:
        call()
    except pulsar.AuthorizationError as e:
        print(f"ok: {what}: AuthorizationError: {e}", flush=True)
        return
    except Exception as e:  # noqa: BLE001 - reported as a mismatch
        compat.fail(f"{what}: expected AuthorizationError, got {type(e).__name__}: {e}")
    compat.fail(f"{what}: succeeded, but the role has no grant")


def expect_ok(args):
    client = make_client(args)
    try:
        consumer = client.subscribe(
            args.topic, "tls-auth-sub", initial_position=pulsar.InitialPosition.Earliest
        )
        payloads = [compat.payload(args.seed, i) for i in range(args.messages)]
        half = len(payloads) // 2
        compat.send_all(compat.producer(client, args.topic), payloads[:half])
        batched = compat.producer(
            client,
            args.topic,
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
        print(f"ok: {len(payloads)} messages round-tripped as the certificate's role", flush=True)
        if args.other_topic:
            expect_authorization_error(
                "producing outside the granted namespace",
                lambda: client.create_producer(args.other_topic),
            )
            expect_authorization_error(
                "subscribing outside the granted namespace",
                lambda: client.subscribe(args.other_topic, "intruder"),
            )
    finally:
        client.close()


def expect_unauthorized(args):
    client = make_client(args)
    try:
        expect_authorization_error(
            "producing without a grant", lambda: client.create_producer(args.topic)
        )
        expect_authorization_error(
            "subscribing without a grant", lambda: client.subscribe(args.topic, "intruder")
        )
    finally:
        client.close()


def expect_refused(args):
    client = make_client(args, operation_timeout_seconds=REFUSED_OPERATION_TIMEOUT_S)
    started = time.monotonic()
    try:
        client.create_producer(args.topic, send_timeout_millis=5_000)
    except (pulsar.ConnectError, pulsar.Timeout) as e:
        print(
            f"ok: refused after {time.monotonic() - started:.1f}s: {type(e).__name__}: {e}",
            flush=True,
        )
        return
    finally:
        client.close()
    compat.fail("the producer was created: the client was not refused")


def run(args):
    {"ok": expect_ok, "unauthorized": expect_unauthorized, "refused": expect_refused}[
        args.expect
    ](args)


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
