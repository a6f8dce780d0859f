"""Produce and consume, without and with batching, uncompressed and with every
compression codec (LZ4, ZLIB, ZSTD, SNAPPY): every message arrives once,
byte-exact and in order, and nothing else arrives."""

import pulsar

import compat
from compat import check, check_eq, short

COMPRESSIONS = [
    pulsar.CompressionType.NONE,
    pulsar.CompressionType.LZ4,
    pulsar.CompressionType.ZLib,
    pulsar.CompressionType.ZSTD,
    pulsar.CompressionType.SNAPPY,
]


def run_case(client, args, batching, compression):
    case = f"batching={batching} compression={compression.name}"
    name = compat.topic(f"produce-consume-{'batch' if batching else 'single'}-{compression.name}")
    consumer = client.subscribe(
        name, "sub", initial_position=pulsar.InitialPosition.Earliest
    )
    producer = compat.producer(
        client,
        name,
        batching_enabled=batching,
        batching_max_messages=50,
        batching_max_publish_delay_ms=20,
        compression_type=compression,
    )
    # Empty, small, compressible and random payloads, and one of 1 MiB
    # (above the batch size limit, so it goes alone even when batching).
    payloads = [compat.payload(args.seed, i, max_size=4096) for i in range(300)]
    # An empty payload, except with compression: the C++ client cannot
    # decompress an empty compressed payload (zlib fails on it), whatever
    # the broker does.
    payloads[7] = b"" if compression == pulsar.CompressionType.NONE else b"x"
    payloads[150] = compat.payload(args.seed, 150, max_size=0) + bytes(range(256)) * 4096
    compat.send_all(producer, payloads)

    batched = 0
    for i, want in enumerate(payloads):
        msg = compat.receive(consumer, f"message {i} ({case})")
        got = msg.data()
        if got != want:
            compat.fail(
                f"{case}: message {i}: payload differs: got {len(got)} bytes "
                f"{short(got[:40])}, want {len(want)} bytes {short(want[:40])}"
            )
        if msg.message_id().batch_index() >= 0:
            batched += 1
        consumer.acknowledge(msg)
    compat.expect_silence(consumer, f"{case}: after all {len(payloads)} messages")
    if batching:
        # Proves the batch path was exercised (the client batches async sends).
        check(batched > 0, f"{case}: no message came from a batch")
    else:
        check_eq(batched, 0, f"{case}: messages from batches")
    producer.close()
    consumer.close()
    print(f"{case}: {len(payloads)} messages round-tripped ({batched} batched)", flush=True)


def run(args):
    client = compat.client(args)
    try:
        for batching in (False, True):
            for compression in COMPRESSIONS:
                run_case(client, args, batching, compression)
    finally:
        client.close()


if __name__ == "__main__":
    compat.main(run, __doc__)
