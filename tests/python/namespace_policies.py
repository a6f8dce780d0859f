"""Namespace policies enforced by the broker, seen by the official client.

One scenario per run (--scenario); each makes its own namespace(s) in tenant
`public` through the admin REST API (--admin-url) and checks:

- rate: a producer in a namespace limited to --rate msg/s is measured at the
  limit +- 10 % over 10 s, while a producer in another namespace on the same
  broker, on its own connection, keeps a rate far above the limit; then the
  limit is raised live (no restart) and the first producer follows it;
- dispatch: a topic dispatch rate paces what a consumer receives;
- hold: a destination_storage backlog quota with producer_request_hold:
  once the backlog is over it, sends wait and time out (nothing is
  refused at once), and a new producer is refused; after the backlog is
  consumed, sending works again;
- exception: the same with producer_exception: sends fail at once with
  ProducerBlockedQuotaExceededException, and so does a new producer;
- eviction: with consumer_backlog_eviction the slowest subscription is
  moved forward to within the quota while producers go on unhindered;
- age: a message_age quota with eviction expires what is older than it;
- ttl: message TTL expires what slow subscriptions did not consume;
- limits: max producers / consumers per topic and per subscription,
  max subscriptions per topic, max topics per namespace, max unacked
  messages per consumer are refused or held with the right error;
- storage: the storage quota (hot + cold bytes) blocks producers.

The broker must run with short check intervals
(--backlog-quota-check-interval 1s --message-expiry-check-interval 1s).
"""

import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import pulsar
from pulsar import exceptions as px

import compat
from compat import check, check_eq, fail

CHECK_S = 1.0  # the broker's check intervals in these tests


def admin(args, method, path, body=None):
    """One admin REST call; returns (status, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        args.admin_url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def ok(args, method, path, body=None):
    status, out = admin(args, method, path, body)
    check(200 <= status < 300, f"{method} {path}: HTTP {status} {out}")
    return out


def namespace(args, label, policies=None):
    ns = f"public/{label}-{uuid.uuid4().hex[:8]}"
    ok(args, "PUT", f"/admin/v2/namespaces/{ns}", policies or {})
    return ns


def stats(args, topic):
    path = topic.replace("persistent://", "")
    return ok(args, "GET", f"/admin/v2/persistent/{path}/stats")


def wait_until(what, cond, timeout=20.0, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    fail(f"timed out waiting for {what}")


def payload(i, size=1000):
    head = f"{i:08d}".encode()
    return head + b"x" * (size - len(head))


# ---------------------------------------------------------------------------


class Pump:
    """Sends as fast as the broker takes it from one producer on its own
    client (own connection), counting receipts per second."""

    def __init__(self, args, topic):
        self.client = compat.client(args)
        self.producer = self.client.create_producer(
            topic,
            batching_enabled=False,
            block_if_queue_full=True,
            max_pending_messages=200,
            send_timeout_millis=0,
        )
        self.acked = 0
        self.errors = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def done(self, res, _msg_id):
        with self.lock:
            if res == pulsar.Result.Ok:
                self.acked += 1
            else:
                self.errors += 1

    def run(self):
        i = 0
        while not self.stop.is_set():
            self.producer.send_async(payload(i, 100), self.done)
            i += 1

    def count(self):
        with self.lock:
            return self.acked

    def close(self):
        self.stop.set()
        self.thread.join(timeout=30)
        self.producer.flush()
        self.client.close()


def measure(pumps, seconds):
    before = [p.count() for p in pumps]
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return [(p.count() - b) / dt for p, b in zip(pumps, before)]


def scenario_rate(args):
    limit = args.rate
    limited = namespace(
        args,
        "rate",
        {"publishMaxMessageRate": {"standalone": {"publishThrottlingRateInMsg": limit}}},
    )
    free = namespace(args, "free")
    a = Pump(args, f"persistent://{limited}/t")
    b = Pump(args, f"persistent://{free}/t")
    try:
        b.thread.start()
        time.sleep(2)
        (b_alone,) = measure([b], 5)
        a.thread.start()
        time.sleep(3)  # past the first period's burst
        a_rate, b_rate = measure([a, b], 10)
        print(f"limit {limit}/s: limited {a_rate:.1f}/s; other namespace {b_rate:.1f}/s (alone {b_alone:.1f}/s)", flush=True)
        check(abs(a_rate - limit) <= 0.1 * limit, f"limited producer at {a_rate:.1f}/s, want {limit} +- 10%")
        check(b_rate >= 5 * limit, f"the other namespace's producer fell to {b_rate:.1f}/s")
        check(b_rate >= 0.4 * b_alone, f"the other namespace's producer fell from {b_alone:.1f}/s to {b_rate:.1f}/s")
        # Live change, no restart: the new limit applies to the loaded topic.
        ok(args, "POST", f"/admin/v2/namespaces/{limited}/publishRate",
           {"publishThrottlingRateInMsg": 2 * limit, "publishThrottlingRateInByte": -1})
        time.sleep(2)
        (a2,) = measure([a], 5)
        print(f"raised to {2 * limit}/s: limited {a2:.1f}/s", flush=True)
        check(abs(a2 - 2 * limit) <= 0.15 * 2 * limit, f"after raising the limit: {a2:.1f}/s, want {2 * limit}")
        check_eq(a.errors + b.errors, 0, "send errors")
    finally:
        a.close()
        b.close()


def scenario_dispatch(args):
    limit = 100
    ns = namespace(args, "dispatch", {"topicDispatchRate": {"standalone": {
        "dispatchThrottlingRateInMsg": limit, "dispatchThrottlingRateInByte": -1,
        "ratePeriodInSecond": 1}}})
    topic = f"persistent://{ns}/t"
    client = compat.client(args)
    try:
        consumer = client.subscribe(topic, "s")
        producer = compat.producer(client, topic)
        for i in range(800):
            producer.send_async(payload(i, 100), None)
        producer.flush()
        times = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6:
            try:
                m = consumer.receive(timeout_millis=2000)
            except px.Timeout:
                break
            times.append(time.monotonic())
            consumer.acknowledge(m)
        # Past the first second's burst, over 4 s.
        window = [t for t in times if t0 + 1.5 <= t < t0 + 5.5]
        rate = len(window) / 4.0
        print(f"dispatch limit {limit}/s: consumer received {rate:.1f}/s", flush=True)
        check(abs(rate - limit) <= 0.15 * limit, f"dispatch at {rate:.1f}/s, want {limit} +- 15%")
    finally:
        client.close()


def quota_setup(args, label, policy, limit_bytes=20_000):
    ns = namespace(args, label)
    ok(args, "POST", f"/admin/v2/namespaces/{ns}/backlogQuota?backlogQuotaType=destination_storage",
       {"limitSize": limit_bytes, "limitTime": -1, "policy": policy})
    topic = f"persistent://{ns}/t"
    return ns, topic


def fill_backlog(client, topic, count=60):
    """A subscription that does not consume, and `count` 1 KB messages."""
    consumer = client.subscribe(topic, "slow", consumer_type=pulsar.ConsumerType.Shared,
                                receiver_queue_size=1)
    producer = compat.producer(client, topic, send_timeout_millis=3000)
    for i in range(count):
        try:
            producer.send(payload(i))
        except (px.ProducerBlockedQuotaExceededException, px.Timeout):
            # The periodic check blocked producers while we filled the
            # backlog past a 20 KB quota: what the policy says.
            check(i > 20, f"producers blocked after only {i} KB")
            break
    return consumer, producer


def creates(client, topic):
    """Whether a producer can be created on `topic` now."""
    try:
        client.create_producer(topic, batching_enabled=False).close()
        return True
    except (px.ProducerBlockedQuotaExceededError, px.ProducerBlockedQuotaExceededException):
        return False


def wait_blocked(client, topic):
    """Until a new producer is refused for the quota; returns the error."""
    def refused():
        try:
            p = client.create_producer(topic, send_timeout_millis=2000, batching_enabled=False)
        except (px.ProducerBlockedQuotaExceededError, px.ProducerBlockedQuotaExceededException) as e:
            return e
        p.close()
        return None
    return wait_until("the backlog quota to block producers", refused, timeout=20, every=CHECK_S / 2)


def scenario_hold(args):
    ns, topic = quota_setup(args, "hold", "producer_request_hold")
    client = compat.client(args, operation_timeout_seconds=5)
    try:
        consumer, producer = fill_backlog(client, topic)
        err = wait_blocked(client, topic)
        check(isinstance(err, px.ProducerBlockedQuotaExceededError),
              f"a new producer got {type(err).__name__}, want ProducerBlockedQuotaExceededError")
        # The existing producer's sends are held, then time out.
        t0 = time.monotonic()
        try:
            producer.send(payload(999))
            fail("a send went through while the backlog quota holds producers")
        except px.Timeout:
            waited = time.monotonic() - t0
        check(waited >= 2.0, f"the send failed after {waited:.1f}s: it was refused, not held")
        print(f"held send timed out after {waited:.1f}s", flush=True)
        # Consume the backlog: producers may send again (the client
        # reconnects on its own).
        ok(args, "POST", f"/admin/v2/persistent/{topic.replace('persistent://', '')}/subscription/slow/skip_all")

        def sends():
            try:
                producer.send(payload(1000))
                return True
            except (px.Timeout, px.ProducerBlockedQuotaExceededError, px.AlreadyClosed, px.NotConnected):
                return False
        wait_until("sends to work again once the backlog is consumed", sends, timeout=60, every=0.5)
        consumer.close()
    finally:
        client.close()


def scenario_exception(args):
    ns, topic = quota_setup(args, "exception", "producer_exception")
    client = compat.client(args, operation_timeout_seconds=5)
    try:
        consumer, producer = fill_backlog(client, topic)
        err = wait_blocked(client, topic)
        check(isinstance(err, px.ProducerBlockedQuotaExceededException),
              f"a new producer got {type(err).__name__}, want ProducerBlockedQuotaExceededException")

        def fails_fast():
            t0 = time.monotonic()
            try:
                producer.send(payload(999))
                return None
            except px.ProducerBlockedQuotaExceededException:
                return time.monotonic() - t0
        took = wait_until("the existing producer's sends to fail", fails_fast, timeout=20)
        check(took < 2.0, f"the send failed after {took:.1f}s, want at once")
        consumer.close()
    finally:
        client.close()


def scenario_eviction(args):
    limit = 20_000
    ns, topic = quota_setup(args, "evict", "consumer_backlog_eviction", limit)
    client = compat.client(args)
    try:
        consumer, producer = fill_backlog(client, topic, count=100)

        def evicted():
            s = stats(args, topic)["subscriptions"]["slow"]
            return s if s["backlogSize"] <= limit * 1.2 and s["msgBacklog"] < 100 else None
        s = wait_until("the slow subscription's backlog to be evicted", evicted, timeout=20)
        print(f"after eviction: backlog {s['msgBacklog']} messages, {s['backlogSize']} bytes", flush=True)
        # Producers were never blocked.
        for i in range(100, 110):
            producer.send(payload(i))
        consumer.close()
        # What is left is the newest messages, in order, ending with the last.
        c2 = client.subscribe(topic, "slow", consumer_type=pulsar.ConsumerType.Shared)
        got = []
        while True:
            try:
                m = c2.receive(timeout_millis=3000)
            except px.Timeout:
                break
            got.append(int(m.data()[:8]))
            c2.acknowledge(m)
        check(got and got[-1] == 109, f"after eviction the subscription got {got[:5]}...{got[-5:]}")
        check(got[0] > 0 and len(got) < 110, f"nothing was evicted: got {len(got)} messages from {got[0]}")
        check_eq(got, sorted(got), "order of what is left")
    finally:
        client.close()


def scenario_age(args):
    ns = namespace(args, "age")
    ok(args, "POST", f"/admin/v2/namespaces/{ns}/backlogQuota?backlogQuotaType=message_age",
       {"limitSize": -1, "limitTime": 3, "policy": "consumer_backlog_eviction"})
    topic = f"persistent://{ns}/t"
    client = compat.client(args)
    try:
        consumer, producer = fill_backlog(client, topic, count=20)
        consumer.close()
        time.sleep(3.5)
        producer.send(payload(20))
        wait_until("messages past the age quota to be evicted",
                   lambda: stats(args, topic)["subscriptions"]["slow"]["msgBacklog"] == 1, timeout=20)
        c2 = client.subscribe(topic, "slow")
        m = compat.receive(c2, "the young message")
        check_eq(int(m.data()[:8]), 20, "the message left after age eviction")
    finally:
        client.close()


def scenario_ttl(args):
    ns = namespace(args, "ttl", {"message_ttl_in_seconds": 2})
    topic = f"persistent://{ns}/t"
    client = compat.client(args)
    try:
        consumer, producer = fill_backlog(client, topic, count=10)
        consumer.close()
        wait_until("the TTL to expire the backlog",
                   lambda: stats(args, topic)["subscriptions"]["slow"]["msgBacklog"] == 0, timeout=20)
        producer.send(payload(10))
        c2 = client.subscribe(topic, "slow")
        m = compat.receive(c2, "a message sent after the expiry")
        check_eq(int(m.data()[:8]), 10, "first message after TTL expiry")
    finally:
        client.close()


def scenario_limits(args):
    ns = namespace(args, "limits", {
        "max_producers_per_topic": 1,
        "max_consumers_per_subscription": 1,
        "max_subscriptions_per_topic": 2,
        "max_topics_per_namespace": 2,
        "max_unacked_messages_per_consumer": 5,
    })
    client = compat.client(args, operation_timeout_seconds=5)
    try:
        t1 = f"persistent://{ns}/one"
        p1 = compat.producer(client, t1)
        try:
            client.create_producer(t1)
            fail("a second producer was admitted past max_producers_per_topic=1")
        except px.ProducerBusy:
            pass
        c1 = client.subscribe(t1, "s1", consumer_type=pulsar.ConsumerType.Shared)
        try:
            client.subscribe(t1, "s1", consumer_type=pulsar.ConsumerType.Shared)
            fail("a second consumer was admitted past max_consumers_per_subscription=1")
        except px.ConsumerBusy:
            pass
        client.subscribe(t1, "s2").close()
        try:
            client.subscribe(t1, "s3")
            fail("a third subscription was admitted past max_subscriptions_per_topic=2")
        except (px.NotAllowedError, px.UnknownError) as e:
            print(f"third subscription refused: {type(e).__name__}", flush=True)
        # max unacked per consumer: 5 messages, then nothing until acks.
        for i in range(12):
            p1.send(payload(i, 100))
        got = []
        while True:
            try:
                got.append(c1.receive(timeout_millis=1500))
            except px.Timeout:
                break
        check_eq(len(got), 5, "messages delivered to a consumer limited to 5 unacked")
        for m in got:
            c1.acknowledge(m)
        more = compat.receive(c1, "a message after the unacked ones were acknowledged")
        check_eq(int(more.data()[:8]), 5, "the next message after acking")
        # Topics: one exists; a second may be made; a third is refused.
        compat.producer(client, f"persistent://{ns}/two").close()
        try:
            client.create_producer(f"persistent://{ns}/three")
            fail("a third topic was created past max_topics_per_namespace=2")
        except (px.NotAllowedError, px.TopicNotFound, px.LookupError) as e:
            print(f"third topic refused: {type(e).__name__}", flush=True)
        # Raising a limit applies live: a second producer is admitted now.
        ok(args, "POST", f"/admin/v2/namespaces/{ns}/maxProducersPerTopic", 2)
        client.create_producer(t1).close()
    finally:
        client.close()


def scenario_storage(args):
    ns = namespace(args, "storage", {"storage_quota": {"limitSize": 30_000, "policy": "producer_exception"}})
    topic = f"persistent://{ns}/t"
    client = compat.client(args, operation_timeout_seconds=5)
    try:
        producer = compat.producer(client, topic, send_timeout_millis=3000)
        sent = 0
        try:
            for i in range(50):
                producer.send(payload(i))
                sent += 1
        except px.ProducerBlockedQuotaExceededException:
            # The periodic check may block the namespace while we fill it
            # past the quota: the send fails at once, as the policy says.
            check(sent * 1000 > 30_000, f"blocked after only {sent} KB of a 30 KB quota")
        err = wait_blocked(client, topic)
        check(isinstance(err, px.ProducerBlockedQuotaExceededException),
              f"a new producer got {type(err).__name__}, want ProducerBlockedQuotaExceededException")
        # Another namespace is not affected.
        other = namespace(args, "roomy")
        compat.producer(client, f"persistent://{other}/t").send(b"fine")
        # Raising the quota lets producers in again.
        ok(args, "POST", f"/admin/v2/namespaces/{ns}/storageQuota", {"limitSize": 10_000_000, "policy": "producer_exception"})
        wait_until("the raised storage quota to admit producers",
                   lambda: creates(client, topic), timeout=20, every=1)
    finally:
        client.close()


SCENARIOS = {
    "rate": scenario_rate,
    "dispatch": scenario_dispatch,
    "hold": scenario_hold,
    "exception": scenario_exception,
    "eviction": scenario_eviction,
    "age": scenario_age,
    "ttl": scenario_ttl,
    "limits": scenario_limits,
    "storage": scenario_storage,
}


def run(args):
    SCENARIOS[args.scenario](args)


def add_args(p):
    p.add_argument("--admin-url", required=True)
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    p.add_argument("--rate", type=int, default=200)


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
