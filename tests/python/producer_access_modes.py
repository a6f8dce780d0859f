"""Producer access modes: Shared producers coexist; Exclusive refuses a
second producer and is refused while others exist; WaitForExclusive waits
until the topic is free; ExclusiveWithFencing takes the topic from the
producers on it, whose later sends fail."""

import threading
import time

import pulsar

import compat
from compat import check, check_eq

Mode = pulsar.ProducerAccessMode


def expect_refused(c, name, mode, what):
    try:
        p = compat.producer(c, name, access_mode=mode)
    except pulsar.PulsarException as e:
        print(f"{what}: refused with {type(e).__name__}", flush=True)
        return
    p.close()
    compat.fail(f"{what}: the producer was admitted")


def run(args):
    c = compat.client(args)

    # Shared + Shared; then Exclusive is refused while they are there.
    name = compat.topic("access-shared")
    a = compat.producer(c, name, access_mode=Mode.Shared)
    b = compat.producer(c, name, access_mode=Mode.Shared)
    a.send(b"from-a")
    b.send(b"from-b")
    expect_refused(c, name, Mode.Exclusive, "exclusive beside shared producers")
    a.close()
    b.close()

    # Exclusive first: Shared and a second Exclusive are refused.
    name = compat.topic("access-exclusive")
    ex = compat.producer(c, name, access_mode=Mode.Exclusive)
    expect_refused(c, name, Mode.Shared, "shared beside an exclusive producer")
    expect_refused(c, name, Mode.Exclusive, "second exclusive producer")
    ex.send(b"exclusive")
    ex.close()
    # Once it is gone, another exclusive producer gets the topic.
    ex2 = compat.producer(c, name, access_mode=Mode.Exclusive)
    ex2.send(b"exclusive-2")
    ex2.close()

    # WaitForExclusive: blocks while another producer holds the topic.
    name = compat.topic("access-wait")
    holder = compat.producer(c, name, access_mode=Mode.Exclusive)
    got = {}

    def waiter():
        started = time.monotonic()
        p = compat.producer(c, name, access_mode=Mode.WaitForExclusive)
        got["waited"] = time.monotonic() - started
        p.send(b"after-wait")
        got["producer"] = p

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    time.sleep(1.5)
    check("producer" not in got, "WaitForExclusive producer was admitted while the topic was held")
    holder.close()
    t.join(timeout=compat.OPERATION_TIMEOUT_S)
    check("producer" in got, "WaitForExclusive producer never got the topic")
    check(got["waited"] >= 1.0, f"waited only {got['waited']:.2f}s")
    got["producer"].close()

    # ExclusiveWithFencing: takes over; the fenced producer's sends fail.
    name = compat.topic("access-fencing")
    old = compat.producer(c, name, access_mode=Mode.Shared, send_timeout_millis=3000)
    old.send(b"before-fence")
    new = compat.producer(c, name, access_mode=Mode.ExclusiveWithFencing)
    new.send(b"after-fence")
    try:
        old.send(b"must-fail")
    except pulsar.PulsarException as e:
        print(f"fenced producer's send failed with {type(e).__name__}", flush=True)
    else:
        compat.fail("a fenced producer could still send")
    new.close()

    consumer = c.subscribe(
        name, "check", initial_position=pulsar.InitialPosition.Earliest
    )
    seen = []
    while True:
        try:
            msg = consumer.receive(timeout_millis=compat.SILENCE_MS)
        except pulsar.Timeout:
            break
        seen.append(msg.data())
        consumer.acknowledge(msg)
    check_eq(seen, [b"before-fence", b"after-fence"], "messages on the fenced topic")
    c.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
