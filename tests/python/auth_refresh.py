"""Token refresh (AUTH_CHALLENGE / AUTH_RESPONSE) on long-lived connections,
against a standalone started with --authentication-enabled and a short
--authentication-refresh-check-seconds (tests/tests/auth.rs). Tokens are
minted as needed with `strata admin tokens create` (--strata-bin,
--secret-key), a few seconds long.

Cases:
  refresh  the official client with a token supplier that mints a fresh
           short token on every call: a producer and a consumer keep
           working across several expiries, every message sent is
           acknowledged and received (the broker challenges, the client
           answers with a fresh token; tests/tests/auth.rs checks in the
           metrics that no connection was closed for its token);
  stale    a supplier that always gives the same short token: once it has
           expired the broker's challenge gets an expired token back, the
           connection is closed and reconnecting is refused, so sends fail;
  raw      by hand: the broker's AUTH_CHALLENGE names method "token" with
           data "PulsarAuthRefresh"; answering with a fresh token keeps the
           connection; not answering, answering with another role's token,
           or not announcing supports_auth_refresh gets ERROR
           AuthenticationError and the connection closed.
"""

import subprocess
import threading
import time
import uuid

import pulsar

import compat
import pulsar_frames as pf
from compat import check, check_eq

# Lifetime of the short tokens, and how long the refresh case runs.
SHORT_S = 4
REFRESH_RUN_S = 14
# Bound on how long the broker may take to challenge or close once a token
# expired: its refresh check runs every second; generous for slow machines.
REACT_S = 20


def mint(args, subject, expiry):
    cmd = [
        args.strata_bin,
        "admin",
        "tokens",
        "create",
        "--secret-key",
        args.secret_key,
        "--subject",
        subject,
    ]
    if expiry is not None:
        cmd += ["--expiry", expiry]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, f"`{' '.join(cmd)}` failed: {out.stderr}")
    return out.stdout.strip()


class Supplier:
    """A token supplier for pulsar.AuthenticationToken that counts calls."""

    def __init__(self, make):
        self.make = make
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
        return self.make()


def case_refresh(args):
    supplier = Supplier(lambda: mint(args, "app", f"{SHORT_S}s"))
    c = compat.client(args, authentication=pulsar.AuthenticationToken(supplier))
    topic = compat.topic("refresh")
    try:
        consumer = c.subscribe(topic, "sub", initial_position=pulsar.InitialPosition.Earliest)
        producer = compat.producer(c, topic)
        sent = []
        started = time.monotonic()
        while time.monotonic() - started < REFRESH_RUN_S:
            data = f"m-{len(sent)}".encode()
            producer.send(data)
            sent.append(data)
            time.sleep(0.5)
        got = []
        while len(got) < len(sent):
            msg = compat.receive(consumer, f"message {len(got)} of {len(sent)}")
            consumer.acknowledge(msg)
            got.append(msg.data())
        check_eq(got, sent, "messages received across token expiries")
        check(
            supplier.calls >= 2,
            f"the token supplier was called {supplier.calls} time(s) in {REFRESH_RUN_S}s "
            f"with {SHORT_S}s tokens: no refresh happened",
        )
        print(f"ok: {len(sent)} messages over {REFRESH_RUN_S}s, {supplier.calls} tokens supplied", flush=True)
    finally:
        c.close()


def case_stale(args):
    token = mint(args, "app", f"{SHORT_S}s")
    minted = time.monotonic()
    c = compat.client(args, authentication=pulsar.AuthenticationToken(lambda: token))
    topic = compat.topic("stale")
    try:
        producer = compat.producer(c, topic, send_timeout_millis=3000)
        producer.send(b"before expiry")
        print("ok: sent while the token was valid", flush=True)
        deadline = minted + SHORT_S + REACT_S + 10
        failed = None
        while time.monotonic() < deadline:
            try:
                producer.send(b"after expiry?")
            except (pulsar.Timeout, pulsar.AuthenticationError, pulsar.ConnectError, pulsar.AlreadyClosed) as e:
                failed = e
                break
            time.sleep(0.5)
        check(failed is not None, "sends kept succeeding long after the only token expired")
        print(f"ok: sends fail once the token expired: {type(failed).__name__}", flush=True)
    finally:
        c.close()


def raw_connect(args, token, supports_refresh=True):
    conn = pf.RawConnection.to(args.service_url, timeout=REACT_S)
    conn.handshake(token=token, supports_auth_refresh=supports_refresh)
    return conn


def expect_challenge(conn, what):
    try:
        f = conn.read_frame()
    except (TimeoutError, pf.Closed) as e:
        compat.fail(f"{what}: no AUTH_CHALLENGE after the token expired ({e})")
    check_eq(pf.TYPE_NAMES.get(f.type, f.type), "AUTH_CHALLENGE", f"{what}: frame")
    challenge = pf.decode(pf.first(f.body, 2, b""))
    check_eq(pf.first(challenge, 1), b"token", f"{what}: challenge method")
    check_eq(pf.first(challenge, 2), b"PulsarAuthRefresh", f"{what}: challenge data")


def expect_auth_error_and_close(conn, what):
    try:
        frames = conn.expect_closed(REACT_S)
    except TimeoutError:
        compat.fail(f"{what}: the connection stayed open")
    errors = [f for f in frames if f.type == pf.ERROR]
    check(errors, f"{what}: closed without an ERROR (frames {frames})")
    check_eq(
        pf.SERVER_ERRORS.get(pf.first(errors[0].body, 2)),
        "AuthenticationError",
        f"{what}: error",
    )
    print(f"ok: {what}: {pf.first(errors[0].body, 3, b'').decode()}", flush=True)


def alive(conn, what, request_id):
    topic = f"persistent://public/default/alive-{uuid.uuid4().hex[:8]}"
    conn.send_command(pf.lookup(topic, request_id))
    try:
        f = conn.read_frame()
    except (TimeoutError, pf.Closed) as e:
        compat.fail(f"{what}: the connection is gone ({e})")
    check_eq(pf.TYPE_NAMES.get(f.type, f.type), "LOOKUP_RESPONSE", f"{what}: answer")


def case_raw(args):
    # Answered with a fresh token: the connection stays.
    conn = raw_connect(args, mint(args, "app", "3s"))
    try:
        expect_challenge(conn, "refresh answered")
        conn.send_command(pf.auth_response(mint(args, "app", "1h")))
        time.sleep(3)
        alive(conn, "after answering AUTH_CHALLENGE with a fresh token", 1)
        print("ok: a fresh token in AUTH_RESPONSE keeps the connection", flush=True)
    finally:
        conn.close()

    # Not answered: closed.
    conn = raw_connect(args, mint(args, "app", "3s"))
    try:
        expect_challenge(conn, "refresh unanswered")
        expect_auth_error_and_close(conn, "AUTH_CHALLENGE left unanswered")
    finally:
        conn.close()

    # Answered with another role's token: closed.
    conn = raw_connect(args, mint(args, "app", "3s"))
    try:
        expect_challenge(conn, "refresh with another role")
        conn.send_command(pf.auth_response(mint(args, "someone-else", "1h")))
        expect_auth_error_and_close(conn, "AUTH_RESPONSE with another role's token")
    finally:
        conn.close()

    # A client that cannot refresh: closed at expiry, never challenged.
    conn = raw_connect(args, mint(args, "app", "3s"), supports_refresh=False)
    try:
        try:
            frames = conn.expect_closed(REACT_S)
        except TimeoutError:
            compat.fail("a client without supports_auth_refresh kept its expired connection")
        check(
            all(f.type != pf.AUTH_CHALLENGE for f in frames),
            f"a client without supports_auth_refresh was challenged: {frames}",
        )
        check(
            any(f.type == pf.ERROR for f in frames),
            f"closed without an ERROR: {frames}",
        )
        print("ok: a client without refresh support is closed at expiry", flush=True)
    finally:
        conn.close()

    # A token without expiry is never challenged.
    conn = raw_connect(args, mint(args, "app", None))
    try:
        time.sleep(3)
        alive(conn, "a token without expiry", 2)
    finally:
        conn.close()


CASES = [("refresh", case_refresh), ("stale", case_stale), ("raw", case_raw)]


def add_args(p):
    p.add_argument("--strata-bin", required=True)
    p.add_argument("--secret-key", required=True, help="file:///... of the broker's secret")
    p.add_argument("--case", action="append", choices=[n for n, _ in CASES])
    p.set_defaults(timeout=240)


def run(args):
    for name, case in CASES:
        if args.case and name not in args.case:
            continue
        print(f"--- {name}", flush=True)
        case(args)


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
