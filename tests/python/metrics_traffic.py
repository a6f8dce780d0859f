"""Traffic for the /metrics test (tests/tests/metrics.rs): sends
`--messages` messages without batching (so each is one SEND and one ledger
entry), receives and acknowledges every one, byte-exact and in order. The
test then scrapes /metrics and checks the counters grew by at least that."""

import compat
import pulsar


def add_args(p):
    p.add_argument("--messages", type=int, default=200)


def run(args):
    client = compat.client(args)
    try:
        name = compat.topic("metrics")
        consumer = client.subscribe(
            name, "sub", initial_position=pulsar.InitialPosition.Earliest
        )
        producer = compat.producer(client, name)
        payloads = [compat.payload(args.seed, i, max_size=1024) for i in range(args.messages)]
        compat.send_all(producer, payloads)
        for i, want in enumerate(payloads):
            msg = compat.receive(consumer, f"message {i}")
            compat.check_eq(compat.index_of(msg.data()), i, "message order")
            compat.check(msg.data() == want, f"message {i}: payload differs")
            consumer.acknowledge(msg)
        producer.close()
        consumer.close()
        print(f"sent and received {args.messages} messages on {name}", flush=True)
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
