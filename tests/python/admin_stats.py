"""The admin REST API against what the official client did: topic stats
(counters, publishers, subscriptions, consumers, backlog, rates),
internalStats (entries, ledgers, cursor positions, individually acknowledged
ranges), lastMessageId, reset cursor by message id and by publish time (a
connected consumer is sent back to the new position), skip N, skip all,
expire messages older than N seconds (one subscription and all), deletes
refused while clients are connected and forced, and a partitioned topic
created through the admin API that the client then produces to and
consumes from (PARTITIONED_METADATA agrees with the record).

Run by tests/tests/admin_rest.rs; by hand:
`python3 tests/python/admin_stats.py --service-url pulsar://127.0.0.1:6650 --admin-url http://127.0.0.1:8080`.
"""

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pulsar

import compat
from compat import check, check_eq, fail

# How long a stats value that follows an asynchronous event (an ack, a
# dispatch, the next stats window) may take to show.
SETTLE_S = 30


class Admin:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def call(self, method, path, body=None):
        """(status, parsed JSON or text) of one request."""
        data = None
        headers = {}
        if body is not None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def get(self, path):
        status, body = self.call("GET", path)
        check_eq(status, 200, f"GET {path} ({body})")
        return body

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        check_eq(status, 204, f"{method} {path} ({answer})")

    def fails(self, method, path, status, reason):
        got, body = self.call(method, path)
        check_eq(got, status, f"{method} {path} ({body})")
        check(reason in (body or {}).get("reason", ""), f"{method} {path}: reason {body} lacks {reason!r}")


def settle(what, probe):
    """Polls `probe` (returns (done, detail)) until done; fails naming `what`."""
    give_up = time.monotonic() + SETTLE_S
    while True:
        done, detail = probe()
        if done:
            return detail
        if time.monotonic() > give_up:
            fail(f"{what}: still {compat.short(detail, 2000)} after {SETTLE_S} s")
        time.sleep(0.2)


def pos(text):
    ledger, entry = text.split(":")
    return int(ledger), int(entry)


def check_stats_and_acks(admin, client, args, name, base):
    consumer = client.subscribe(
        name, "sub", consumer_name="c1", initial_position=pulsar.InitialPosition.Earliest
    )
    producer = compat.producer(client, name, producer_name="p1")
    payloads = [compat.payload(args.seed, i, max_size=512) for i in range(10)]
    ids = [producer.send(p) for p in payloads]
    ledger = ids[0].ledger_id()
    check(all(i.ledger_id() == ledger for i in ids), "the 10 messages span ledgers")
    check_eq([i.entry_id() for i in ids], list(range(ids[0].entry_id(), ids[0].entry_id() + 10)), "entry ids")
    first = ids[0].entry_id()

    stats = admin.get(f"{base}/stats")
    check_eq(stats["msgInCounter"], 10, "msgInCounter")
    payload_bytes = sum(len(p) for p in payloads)
    # Counted as Pulsar does: the message with its metadata.
    check(payload_bytes <= stats["bytesInCounter"] <= payload_bytes + 10 * 256, f"bytesInCounter {stats['bytesInCounter']} for {payload_bytes} payload bytes")
    check(stats["storageSize"] >= stats["bytesInCounter"], f"storageSize {stats['storageSize']} < bytesInCounter")
    check_eq(len(stats["publishers"]), 1, "publishers")
    pub = stats["publishers"][0]
    check_eq((pub["producerName"], pub["msgInCounter"], pub["accessMode"]), ("p1", 10, "Shared"), "publisher")
    check(pub["address"] and pub["connectedSince"], f"publisher address/connectedSince: {pub}")

    def dispatched():
        s = admin.get(f"{base}/stats")
        sub = s["subscriptions"].get("sub", {})
        return s["msgOutCounter"] == 10 and sub.get("unackedMessages") == 10, s

    stats = settle("all 10 dispatched to c1", dispatched)
    sub = stats["subscriptions"]["sub"]
    check_eq((sub["type"], sub["isDurable"], sub["msgBacklog"], sub["msgOutCounter"]), ("Exclusive", True, 10, 10), "subscription")
    check(sub["backlogSize"] > 0, f"backlogSize {sub['backlogSize']}")
    check_eq(len(sub["consumers"]), 1, "consumers")
    c = sub["consumers"][0]
    check_eq((c["consumerName"], c["msgOutCounter"], c["unackedMessages"]), ("c1", 10, 10), "consumer")
    check_eq(stats["bytesOutCounter"], stats["bytesInCounter"], "bytesOutCounter (everything dispatched once)")

    # Rates show within a stats window.
    def rated():
        s = admin.get(f"{base}/stats")
        return s["msgRateIn"] > 0 and s["msgThroughputIn"] > 0 and s["averageMsgSize"] > 0, s

    settle("msgRateIn > 0 after 10 sends", rated)

    # Ack 0..3 and 6: the mark-delete position is 3, 6 is individually acknowledged.
    received = [compat.receive(consumer, f"message {i}") for i in range(10)]
    check_eq([m.data() for m in received], payloads, "received payloads")
    for m in received[:4] + [received[6]]:
        consumer.acknowledge(m)

    def acked():
        s = admin.get(f"{base}/stats")
        i = admin.get(f"{base}/internalStats")
        return s["subscriptions"]["sub"]["msgBacklog"] == 5 and i["cursors"]["sub"]["markDeletePosition"] == f"{ledger}:{first + 3}", (s, i)

    stats, internal = settle("backlog 5 after acking 5", acked)
    cur = internal["cursors"]["sub"]
    check_eq(cur["individuallyDeletedMessages"], f"[({ledger}:{first + 5}..{ledger}:{first + 6}]]", "individuallyDeletedMessages")
    check_eq(stats["subscriptions"]["sub"]["unackedMessages"], 5, "unackedMessages after 5 acks")
    check_eq(internal["numberOfEntries"], 10, "numberOfEntries")
    check_eq(internal["entriesAddedCounter"], 10, "entriesAddedCounter")
    check_eq(internal["lastConfirmedEntry"], f"{ledger}:{first + 9}", "lastConfirmedEntry")
    check_eq(internal["state"], "LedgerOpened", "state")
    led = [l for l in internal["ledgers"] if l["ledgerId"] == ledger]
    check(len(led) == 1 and led[0]["entries"] >= 10 and not led[0]["offloaded"], f"ledgers {internal['ledgers']}")
    check_eq(internal["totalSize"], stats["storageSize"], "totalSize = storageSize")

    last = admin.get(f"{base}/lastMessageId")
    check_eq(last, {"ledgerId": ledger, "entryId": first + 9, "partitionIndex": -1, "batchIndex": -1}, "lastMessageId")

    # The metrics page follows the same counters.
    status, metrics = admin.call("GET", "/metrics")
    check_eq(status, 200, "GET /metrics")
    line = f'strata_broker_topic_msg_in_total{{namespace="public/default",topic="{name}"}} 10'
    check(line in metrics.splitlines(), f"/metrics lacks {line!r}")

    # Reset by publish time with the consumer connected: it is sent back and
    # receives message 7 on again.
    for m in received[4:]:
        consumer.acknowledge(m)
    settle("backlog 0", lambda: (admin.get(f"{base}/stats")["subscriptions"]["sub"]["msgBacklog"] == 0, None))
    reset_time = received[7].publish_timestamp()
    # Messages published in the same millisecond as message 7 come back too.
    expected_first = min(i for i in range(10) if received[i].publish_timestamp() >= reset_time)
    admin.ok("POST", f"{base}/subscription/sub/resetcursor/{reset_time}")
    seen = set()
    give_up = time.monotonic() + SETTLE_S
    while not {7, 8, 9} <= seen:
        check(time.monotonic() < give_up, f"after the reset to message 7's time, received only {sorted(seen)}")
        try:
            m = consumer.receive(timeout_millis=1000)
        except pulsar.Timeout:
            continue
        seen.add(payloads.index(m.data()))
        consumer.acknowledge(m)
    check(min(seen) >= expected_first, f"reset to message 7's time redelivered {sorted(seen)}")

    # Deleting the subscription with its consumer connected needs force.
    admin.fails("DELETE", f"{base}/subscription/sub", 412, "has connected consumers")
    consumer.close()
    return producer, ids, payloads, ledger, first


def check_cursor_operations(admin, client, args, name, base, producer, ids, payloads, ledger, first):
    def backlog(expected, what):
        def probe():
            s = admin.get(f"{base}/stats")
            return s["subscriptions"]["sub"]["msgBacklog"] == expected, s["subscriptions"]["sub"]

        settle(what, probe)

    def cursor():
        return admin.get(f"{base}/internalStats")["cursors"]["sub"]

    # Reset by message id (no consumer): everything before message 2 acked.
    admin.ok("POST", f"{base}/subscription/sub/resetcursor", {"ledgerId": ledger, "entryId": first + 2})
    backlog(8, "backlog after a reset to message 2")
    check_eq(pos(cursor()["markDeletePosition"]), (ledger, first + 1), "markDeletePosition after the reset")
    consumer = client.subscribe(name, "sub", consumer_name="c2")
    m = compat.receive(consumer, "message 2 after the reset")
    check_eq(m.data(), payloads[2], "first message after the reset to message 2")
    consumer.close()

    # Earliest, then skip 3, then skip all.
    admin.ok("POST", f"{base}/subscription/sub/resetcursor", {"ledgerId": -1, "entryId": -1})
    backlog(10, "backlog after a reset to the earliest")
    admin.ok("POST", f"{base}/subscription/sub/skip/3")
    backlog(7, "backlog after skipping 3")
    check_eq(pos(cursor()["markDeletePosition"]), (ledger, first + 2), "markDeletePosition after skipping 3")
    admin.ok("POST", f"{base}/subscription/sub/skip_all")
    backlog(0, "backlog after skip_all")
    admin.ok("POST", f"{base}/subscription/sub/resetcursor", {"ledgerId": ledger, "entryId": first + 4, "isExcluded": True})
    backlog(5, "backlog after an excluded reset to message 4")

    # Expiry: the 10 old messages, then 3 new ones well apart in time.
    admin.ok("POST", f"{base}/subscription/sub/resetcursor", {"ledgerId": -1, "entryId": -1})
    admin.ok("PUT", f"{base}/subscription/other", {"ledgerId": -1, "entryId": -1})
    backlog(10, "backlog after a reset to the earliest")
    old_end = time.time()
    admin.ok("POST", f"{base}/subscription/sub/expireMessages/3600")
    backlog(10, "backlog after expiring messages older than an hour")
    while time.time() - old_end < 6:
        time.sleep(0.2)
    new_start = time.time()
    for i in range(10, 13):
        producer.send(compat.payload(args.seed, i, max_size=64))
    # Cut halfway between the old and the new messages (3 s from each).
    seconds = round(time.time() - (old_end + new_start) / 2)
    admin.ok("POST", f"{base}/subscription/sub/expireMessages/{seconds}")
    backlog(3, "backlog after expiring the old messages")
    admin.ok("POST", f"{base}/all_subscription/expireMessages/0")
    backlog(0, "backlog after expiring everything on all subscriptions")
    other = admin.get(f"{base}/stats")["subscriptions"]["other"]
    check_eq(other["msgBacklog"], 0, "backlog of the other subscription after expiring all")
    check_eq(sorted(admin.get(f"{base}/subscriptions")), ["other", "sub"], "subscriptions")
    admin.ok("DELETE", f"{base}/subscription/other")


def check_deletes(admin, client, name, base, producer):
    consumer = client.subscribe(name, "busy", consumer_name="c3")
    admin.fails("DELETE", f"{base}/subscription/busy", 412, "has connected consumers")
    admin.ok("DELETE", f"{base}/subscription/busy?force=true")
    admin.fails("DELETE", base, 412, "has connected producers or consumers")
    admin.ok("DELETE", f"{base}?force=true")
    consumer.close()
    producer.close()
    status, body = admin.call("GET", f"{base}/internalStats")
    # The client may have reconnected (and recreated the topic) before it closed.
    check(status == 404 or (status == 200 and body["numberOfEntries"] == 0), f"after the forced delete: {status} {body}")


def check_partitioned(admin, client, args):
    local = f"admin-parted-{args.seed % 100000}-{int(time.time() * 1000) % 100000}"
    name = f"persistent://public/default/{local}"
    base = f"/admin/v2/persistent/public/default/{urllib.parse.quote(local)}"
    admin.ok("PUT", f"{base}/partitions", "3")
    check_eq(client.get_topic_partitions(name), [f"{name}-partition-{i}" for i in range(3)], "partitions the client sees")
    consumer = client.subscribe(name, "psub", initial_position=pulsar.InitialPosition.Earliest)
    producer = compat.producer(
        client, name, message_routing_mode=pulsar.PartitionsRoutingMode.RoundRobinDistribution
    )
    payloads = [compat.payload(args.seed, 100 + i, max_size=128) for i in range(9)]
    ids = [producer.send(p) for p in payloads]
    check_eq(sorted({i.partition() for i in ids}), [0, 1, 2], "partitions the messages went to")
    got = sorted(compat.receive(consumer, f"message {i}").data() for i in range(9))
    check_eq(got, sorted(payloads), "messages of the partitioned topic")
    stats = admin.get(f"{base}/partitioned-stats")
    check_eq(stats["msgInCounter"], 9, "partitioned msgInCounter")
    check_eq(stats["metadata"], {"partitions": 3}, "partitioned metadata")
    check_eq(sorted(stats["partitions"]), [f"{name}-partition-{i}" for i in range(3)], "per-partition stats")
    check_eq(sum(p["msgInCounter"] for p in stats["partitions"].values()), 9, "per-partition msgInCounter")
    check_eq(len(stats["publishers"]), 3, "a publisher per partition")
    check_eq(stats["subscriptions"]["psub"]["msgOutCounter"], 9, "partitioned msgOutCounter")
    admin.fails("DELETE", f"{base}/partitions", 412, "has connected producers or consumers")
    # Growing the topic: the record and PARTITIONED_METADATA agree.
    admin.ok("POST", f"{base}/partitions", "4")
    check_eq(len(client.get_topic_partitions(name)), 4, "partitions after growing to 4")
    producer.close()
    consumer.close()
    admin.ok("DELETE", f"{base}/partitions?force=true")
    check_eq(admin.get(f"{base}/partitions"), {"partitions": 0}, "partitions after the delete")


def run(args):
    admin = Admin(args.admin_url)
    check_eq(admin.get("/admin/v2/brokers/health"), "ok", "health")
    client = compat.client(args)
    try:
        name = compat.topic("admin-stats")
        local = name.rsplit("/", 1)[1]
        base = f"/admin/v2/persistent/public/default/{urllib.parse.quote(local)}"
        producer, ids, payloads, ledger, first = check_stats_and_acks(admin, client, args, name, base)
        check_cursor_operations(admin, client, args, name, base, producer, ids, payloads, ledger, first)
        check_deletes(admin, client, name, base, producer)
        check_partitioned(admin, client, args)
    finally:
        client.close()


def add_args(p):
    p.add_argument("--admin-url", required=True, help="http://host:port")


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
