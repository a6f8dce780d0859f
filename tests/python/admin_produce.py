"""Produces --count messages (no batching) to --topic for the `strata
admin` tests (tests/tests/admin_cli.rs), which then read the topic's stats
through the CLI. Prints `LAST <ledger>:<entry> <partition>` with the id of
the last message (partition -1 on a non-partitioned topic)."""

import compat


def run(args):
    client = compat.client(args)
    try:
        producer = compat.producer(client, args.topic)
        payloads = [compat.payload(args.seed, i, max_size=256) for i in range(args.count)]
        last = compat.send_all(producer, payloads)[-1]
        print(f"LAST {last.ledger_id()}:{last.entry_id()} {last.partition()}", flush=True)
        producer.close()
    finally:
        client.close()


def add_args(p):
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)


if __name__ == "__main__":
    compat.main(run, __doc__, add_args)
