"""Token authentication and role authorization with the official client
(`pulsar.AuthenticationToken`) and raw frames, against a standalone started
with --authentication-enabled --authorization-enabled (tests/tests/auth.rs
mints the tokens with `strata admin tokens create` and sets up the tenants).

Tokens (--token NAME=JWT):
  app      produce + consume on the namespace of --topic-a
  reader   consume only on that namespace
  app_b    produce + consume on the namespace of --topic-b (tenant B)
  expired  the app role, already expired
  wrong    the app role, signed with another key

What must hold (as with Apache Pulsar):
  - a valid token produces and consumes;
  - an expired, wrongly signed, malformed or missing token makes producer
    creation fail; on the wire CONNECT is answered with ERROR
    AuthenticationError and the connection is closed (the C++-based client
    takes any answer to CONNECT but CONNECTED as a failed connection and
    retries until its operation timeout, so it reports Timeout, as it does
    against Apache Pulsar; the raw CONNECT checks the error code); after
    each, a valid client still produces and consumes;
  - `reader` subscribes but cannot produce (AuthorizationError);
  - `app` (tenant A) cannot look up, produce to, subscribe to or list
    tenant B's topics: the client raises AuthorizationError, LOOKUP is
    answered Failed/AuthorizationError, PRODUCER, SUBSCRIBE and
    GET_TOPICS_OF_NAMESPACE are answered ERROR AuthorizationError;
  - `app_b` does all of that on tenant B (so the refusals are about roles,
    not about a missing namespace).
"""

import uuid

import pulsar

import compat
import pulsar_frames as pf
from compat import check, check_eq

RAW_TIMEOUT_S = 10.0
# Clients that must fail: a short operation timeout bounds their retries.
FAILING_OPERATION_TIMEOUT_S = 5


def tokens(args):
    out = {}
    for item in args.token or []:
        name, _, value = item.partition("=")
        out[name] = value
    for name in ("app", "reader", "app_b", "expired", "wrong"):
        check(name in out, f"missing --token {name}=...")
    return out


def client(args, token, **overrides):
    auth = None if token is None else pulsar.AuthenticationToken(token)
    return compat.client(args, authentication=auth, **overrides)


def round_trip(args, token, topic, what):
    c = client(args, token)
    try:
        sub = f"sub-{uuid.uuid4().hex[:8]}"
        consumer = c.subscribe(topic, sub, initial_position=pulsar.InitialPosition.Earliest)
        producer = compat.producer(c, topic)
        data = f"{what} {uuid.uuid4().hex}".encode()
        producer.send(data)
        while True:
            msg = compat.receive(consumer, f"the message of {what}")
            consumer.acknowledge(msg)
            if msg.data() == data:
                break
    finally:
        c.close()
    print(f"ok: {what}", flush=True)


def expect_refused(what, call, allowed):
    """`call()` must raise one of `allowed`; returns the exception."""
    try:
        call()
    except allowed as e:
        print(f"ok: {what}: {type(e).__name__}: {e}", flush=True)
        return e
    except Exception as e:  # noqa: BLE001 - reported as a mismatch
        compat.fail(f"{what}: expected {[a.__name__ for a in allowed]}, got {type(e).__name__}: {e}")
    compat.fail(f"{what}: succeeded, but must be refused")


def raw(args):
    return pf.RawConnection.to(args.service_url, timeout=RAW_TIMEOUT_S)


def expect_connect_refused(args, what, token, method="token"):
    """CONNECT with these credentials: ERROR AuthenticationError, then closed."""
    conn = raw(args)
    try:
        conn.send_command(
            pf.connect(
                auth_method_name=method,
                auth_data=None if token is None else token,
            )
        )
        frames = conn.expect_closed(RAW_TIMEOUT_S)
    except TimeoutError:
        compat.fail(f"raw CONNECT with {what}: the connection stayed open")
    finally:
        conn.close()
    check(frames, f"raw CONNECT with {what}: closed without an ERROR")
    err = frames[0]
    check_eq(pf.TYPE_NAMES.get(err.type, err.type), "ERROR", f"raw CONNECT with {what}: answer")
    code = pf.first(err.body, 2)
    check_eq(pf.SERVER_ERRORS.get(code, code), "AuthenticationError", f"raw CONNECT with {what}: error")
    print(f"ok: raw CONNECT with {what}: {pf.first(err.body, 3, b'').decode()}", flush=True)


def error_code(frame, what, want_type):
    check_eq(pf.TYPE_NAMES.get(frame.type, frame.type), want_type, f"{what}: answer")


def case_valid(args, t):
    round_trip(args, t["app"], args.topic_a, "a valid token")
    conn = raw(args)
    try:
        conn.handshake(token=t["app"])
    finally:
        conn.close()


def case_bad_tokens(args, t):
    bad = [
        ("an expired token", t["expired"]),
        ("a token signed with another key", t["wrong"]),
        ("a malformed token", "not-a.jwt.token"),
        ("no token", None),
    ]
    for what, token in bad:
        c = client(args, token, operation_timeout_seconds=FAILING_OPERATION_TIMEOUT_S)
        try:
            expect_refused(
                f"create_producer with {what}",
                lambda: c.create_producer(args.topic_a, send_timeout_millis=3000),
                (pulsar.AuthenticationError, pulsar.ConnectError, pulsar.Timeout),
            )
        finally:
            c.close()
        if token is None:
            expect_connect_refused(args, what, None, method=None)
        else:
            expect_connect_refused(args, what, token)
        round_trip(args, t["app"], args.topic_a, f"a valid client after {what}")
    expect_connect_refused(args, "auth method 'basic'", "user:pass", method="basic")


def case_consume_only(args, t):
    c = client(args, t["reader"])
    try:
        consumer = c.subscribe(args.topic_a, "reader-sub", initial_position=pulsar.InitialPosition.Earliest)
        consumer.close()
        print("ok: the consume-only role subscribes", flush=True)
        expect_refused(
            "create_producer with the consume-only role",
            lambda: c.create_producer(args.topic_a),
            (pulsar.AuthorizationError,),
        )
    finally:
        c.close()
    conn = raw(args)
    try:
        conn.handshake(token=t["reader"])
        conn.send_command(pf.producer(args.topic_a, producer_id=1, request_id=7))
        f = conn.read_frame()
        error_code(f, "raw PRODUCER with the consume-only role", "ERROR")
        check_eq(pf.first(f.body, 1), 7, "raw PRODUCER refusal: request id")
        check_eq(pf.first(f.body, 2), pf.AUTHORIZATION_ERROR, "raw PRODUCER refusal: error")
    finally:
        conn.close()


def case_other_tenant(args, t):
    c = client(args, t["app"])
    try:
        expect_refused(
            "partitioned metadata of tenant B's topic",
            lambda: c.get_topic_partitions(args.topic_b),
            (pulsar.AuthorizationError,),
        )
        expect_refused(
            "producing to tenant B's topic",
            lambda: c.create_producer(args.topic_b),
            (pulsar.AuthorizationError,),
        )
        expect_refused(
            "subscribing to tenant B's topic",
            lambda: c.subscribe(args.topic_b, "intruder"),
            (pulsar.AuthorizationError,),
        )
    finally:
        c.close()
    conn = raw(args)
    try:
        conn.handshake(token=t["app"])
        conn.send_command(pf.lookup(args.topic_b, request_id=11))
        f = conn.read_frame()
        error_code(f, "raw LOOKUP of tenant B's topic", "LOOKUP_RESPONSE")
        check_eq(pf.first(f.body, 3), pf.LOOKUP_FAILED, "raw LOOKUP refusal: response")
        check_eq(pf.first(f.body, 6), pf.AUTHORIZATION_ERROR, "raw LOOKUP refusal: error")
        conn.send_command(pf.producer(args.topic_b, producer_id=1, request_id=12))
        f = conn.read_frame()
        error_code(f, "raw PRODUCER on tenant B's topic", "ERROR")
        check_eq(pf.first(f.body, 2), pf.AUTHORIZATION_ERROR, "raw PRODUCER refusal: error")
        conn.send_command(pf.subscribe(args.topic_b, "intruder", consumer_id=1, request_id=13))
        f = conn.read_frame()
        error_code(f, "raw SUBSCRIBE on tenant B's topic", "ERROR")
        check_eq(pf.first(f.body, 2), pf.AUTHORIZATION_ERROR, "raw SUBSCRIBE refusal: error")
        conn.send_command(pf.get_topics_of_namespace(args.namespace_b, request_id=14))
        f = conn.read_frame()
        error_code(f, "raw GET_TOPICS_OF_NAMESPACE of tenant B", "ERROR")
        check_eq(pf.first(f.body, 2), pf.AUTHORIZATION_ERROR, "raw topic list refusal: error")
        # The refusals did not cost the connection its own namespace.
        conn.send_command(pf.lookup(args.topic_a, request_id=15))
        f = conn.read_frame()
        error_code(f, "raw LOOKUP of tenant A's topic", "LOOKUP_RESPONSE")
        check(pf.first(f.body, 6) is None, f"raw LOOKUP of tenant A's topic failed: {f}")
    finally:
        conn.close()
    print("ok: tenant B's topics are refused to tenant A's role", flush=True)
    round_trip(args, t["app_b"], args.topic_b, "tenant B's own role on tenant B")
    conn = raw(args)
    try:
        conn.handshake(token=t["app_b"])
        conn.send_command(pf.get_topics_of_namespace(args.namespace_b, request_id=21))
        f = conn.read_frame()
        error_code(f, "raw GET_TOPICS_OF_NAMESPACE by tenant B's role", "GET_TOPICS_OF_NAMESPACE_RESPONSE")
    finally:
        conn.close()


CASES = [
    ("valid", case_valid),
    ("bad_tokens", case_bad_tokens),
    ("consume_only", case_consume_only),
    ("other_tenant", case_other_tenant),
]


def add_args(p):
    p.add_argument("--token", action="append", help="NAME=JWT")
    p.add_argument("--topic-a", required=True)
    p.add_argument("--topic-b", required=True)
    p.add_argument("--namespace-b", required=True)
    p.add_argument("--case", action="append", choices=[n for n, _ in CASES])
    p.set_defaults(timeout=240)


def run(args):
    t = tokens(args)
    for name, case in CASES:
        if args.case and name not in args.case:
            continue
        print(f"--- {name}", flush=True)
        case(args, t)


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
