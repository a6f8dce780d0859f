"""Hand-built Pulsar binary protocol frames, for sending what no client
would (bad_input.py), with no protobuf dependency.

Frame layouts (all integers big-endian):

    simple:  [total_size u32][command_size u32][BaseCommand]
    payload: [total_size u32][command_size u32][BaseCommand]
             [magic 0x0e01 u16][crc32c u32][metadata_size u32][MessageMetadata][payload]

total_size counts every byte after itself; the CRC32C (Castagnoli) covers
everything after the checksum field (metadata size, metadata, payload).

Only the protobuf fields the tests need are encoded; field numbers are those
of PulsarApi.proto. `test_pulsar_frames.py` checks the encoders against
known bytes and against frames the official client sends.
"""

import socket
import struct
import time

# BaseCommand.Type values.
CONNECT = 2
CONNECTED = 3
SUBSCRIBE = 4
PRODUCER = 5
SEND = 6
SEND_RECEIPT = 7
SEND_ERROR = 8
MESSAGE = 9
FLOW = 11
SUCCESS = 13
ERROR = 14
CLOSE_PRODUCER = 15
PRODUCER_SUCCESS = 17
PING = 18
PONG = 19
PARTITIONED_METADATA = 21
PARTITIONED_METADATA_RESPONSE = 22
LOOKUP = 23
LOOKUP_RESPONSE = 24
ACK = 10
GET_TOPICS_OF_NAMESPACE = 32
GET_TOPICS_OF_NAMESPACE_RESPONSE = 33
AUTH_CHALLENGE = 36
AUTH_RESPONSE = 37
ACK_RESPONSE = 38

TYPE_NAMES = {
    v: k
    for k, v in dict(globals()).items()
    if k.isupper() and isinstance(v, int) and (2 <= v <= 24 or 32 <= v <= 38)
}

# ServerError values.
SERVER_ERRORS = {
    0: "UnknownError",
    1: "MetadataError",
    2: "PersistenceError",
    3: "AuthenticationError",
    4: "AuthorizationError",
    5: "ConsumerBusy",
    6: "ServiceNotReady",
    9: "ChecksumError",
    10: "UnsupportedVersionError",
    11: "TopicNotFound",
    12: "SubscriptionNotFound",
    13: "ConsumerNotFound",
    14: "TooManyRequests",
    17: "InvalidTopicName",
    22: "NotAllowedError",
}
AUTHENTICATION_ERROR = 3
AUTHORIZATION_ERROR = 4
CHECKSUM_ERROR = 9
INVALID_TOPIC_NAME = 17
# CommandLookupTopicResponse.LookupType
LOOKUP_FAILED = 2

MAGIC_CRC32C = 0x0E01
MAGIC_BROKER_ENTRY_METADATA = 0x0E02
PROTOCOL_VERSION = 19

# --------------------------------------------------------------------------
# protobuf wire format
# --------------------------------------------------------------------------

VARINT = 0
LEN = 2


def varint(n):
    """Base-128 varint; negative numbers as 64-bit two's complement (int32
    and int64 fields encode that way)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire_type):
    return varint((field << 3) | wire_type)


def f_varint(field, n):
    return key(field, VARINT) + varint(n)


def f_bool(field, b):
    return f_varint(field, 1 if b else 0)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return key(field, LEN) + varint(len(data)) + data


def f_msg(field, encoded):
    return f_bytes(field, encoded)


def read_varint(buf, pos):
    """(value, next position); raises ValueError on a truncated varint."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def decode(buf):
    """A protobuf message as {field number: [values]}: varints as ints,
    length-delimited fields as bytes, fixed32/64 as ints."""
    fields = {}
    pos = 0
    while pos < len(buf):
        k, pos = read_varint(buf, pos)
        field, wire_type = k >> 3, k & 7
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire_type == LEN:
            n, pos = read_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated length-delimited field")
            value, pos = bytes(buf[pos : pos + n]), pos + n
        elif wire_type == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire_type == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        fields.setdefault(field, []).append(value)
    return fields


def first(fields, field, default=None):
    values = fields.get(field)
    return values[0] if values else default


def signed64(n):
    return n - (1 << 64) if n >= 1 << 63 else n


# --------------------------------------------------------------------------
# CRC32C (Castagnoli, reflected polynomial 0x82F63B78)
# --------------------------------------------------------------------------

_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------


def base_command(type_, field_body=None):
    """BaseCommand{type, <field number == type>: body}; body None for a
    command without one."""
    out = f_varint(1, type_)
    if field_body is not None:
        out += f_msg(type_, field_body)
    return out


def connect(
    client_version="strata-compat-raw",
    protocol_version=PROTOCOL_VERSION,
    broker_entry_metadata=False,
    auth_method_name=None,
    auth_data=None,
    supports_auth_refresh=False,
):
    body = f_bytes(1, client_version) + f_varint(4, protocol_version)
    if auth_data is not None:
        body += f_bytes(3, auth_data)
    if auth_method_name is not None:
        body += f_bytes(5, auth_method_name)
    flags = b""
    if supports_auth_refresh:
        # feature_flags (10) { supports_auth_refresh (1): true }
        flags += f_bool(1, True)
    if broker_entry_metadata:
        # feature_flags (10) { supports_broker_entry_metadata (2): true }
        flags += f_bool(2, True)
    if flags:
        body += f_msg(10, flags)
    return base_command(CONNECT, body)


def auth_response(auth_data, auth_method_name="token"):
    """AUTH_RESPONSE { response (2): AuthData { method (1), data (2) } }."""
    auth = f_bytes(1, auth_method_name) + f_bytes(2, auth_data)
    return base_command(AUTH_RESPONSE, f_bytes(1, "strata-compat-raw") + f_msg(2, auth))


def get_topics_of_namespace(namespace, request_id):
    return base_command(GET_TOPICS_OF_NAMESPACE, f_varint(1, request_id) + f_bytes(2, namespace))


def subscribe(topic, subscription, consumer_id, request_id, earliest=True):
    """A durable Exclusive subscription (sub type 0)."""
    body = (
        f_bytes(1, topic)
        + f_bytes(2, subscription)
        + f_varint(3, 0)
        + f_varint(4, consumer_id)
        + f_varint(5, request_id)
    )
    if earliest:
        body += f_varint(13, 1)
    return base_command(SUBSCRIBE, body)


def ack(consumer_id, ledger_id, entry_id, request_id=None):
    """An individual ACK of one message id; with a request id the broker
    must answer ACK_RESPONSE."""
    body = f_varint(1, consumer_id) + f_varint(2, 0) + f_msg(3, f_varint(1, ledger_id) + f_varint(2, entry_id))
    if request_id is not None:
        body += f_varint(8, request_id)
    return base_command(ACK, body)


def flow(consumer_id, permits):
    return base_command(FLOW, f_varint(1, consumer_id) + f_varint(2, permits))


def ping():
    return base_command(PING, b"")


def pong():
    return base_command(PONG, b"")


def lookup(topic, request_id):
    return base_command(LOOKUP, f_bytes(1, topic) + f_varint(2, request_id))


def producer(topic, producer_id, request_id, producer_name=None):
    body = f_bytes(1, topic) + f_varint(2, producer_id) + f_varint(3, request_id)
    if producer_name is not None:
        body += f_bytes(4, producer_name)
    return base_command(PRODUCER, body)


def close_producer(producer_id, request_id):
    return base_command(CLOSE_PRODUCER, f_varint(1, producer_id) + f_varint(2, request_id))


def send(producer_id, sequence_id, num_messages=None):
    """CommandSend; num_messages (default 1) is only written when given, as
    the official client does for a message that is not a batch."""
    body = f_varint(1, producer_id) + f_varint(2, sequence_id)
    if num_messages is not None:
        body += f_varint(3, num_messages)
    return base_command(SEND, body)


def message_metadata(producer_name, sequence_id, publish_time, properties=None, partition_key=None):
    out = f_bytes(1, producer_name) + f_varint(2, sequence_id) + f_varint(3, publish_time)
    for k, v in (properties or {}).items():
        out += f_msg(4, f_bytes(1, k) + f_bytes(2, v))
    if partition_key is not None:
        out += f_bytes(6, partition_key)
    return out


# --------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------


def simple_frame(command):
    return struct.pack(">II", 4 + len(command), len(command)) + command


def payload_frame(command, metadata, payload, checksum=None):
    """A payload frame; `checksum` overrides the computed CRC32C."""
    checked = struct.pack(">I", len(metadata)) + metadata + payload
    crc = crc32c(checked) if checksum is None else checksum
    tail = struct.pack(">HI", MAGIC_CRC32C, crc) + checked
    return struct.pack(">II", 4 + len(command) + len(tail), len(command)) + command + tail


class Frame:
    """A decoded frame: the command type, its body fields, and for payload
    frames the checksum, metadata and payload."""

    def __init__(self, type_, body, raw_command, checksum=None, metadata=None, payload=None):
        self.type = type_
        self.body = body
        self.raw_command = raw_command
        self.checksum = checksum
        self.metadata = metadata
        self.payload = payload
        self.broker_entry_metadata = None

    def __repr__(self):
        return f"Frame({TYPE_NAMES.get(self.type, self.type)}, body={self.body})"


def parse_frame(frame_body):
    """Parses what follows the total size field of one frame."""
    (cmd_size,) = struct.unpack_from(">I", frame_body, 0)
    if 4 + cmd_size > len(frame_body):
        raise ValueError("command size larger than the frame")
    raw = frame_body[4 : 4 + cmd_size]
    base = decode(raw)
    type_ = first(base, 1)
    body = decode(first(base, type_, b"")) if type_ is not None else {}
    rest = frame_body[4 + cmd_size :]
    if not rest:
        return Frame(type_, body, raw)
    broker_entry_metadata = None
    if struct.unpack_from(">H", rest, 0)[0] == MAGIC_BROKER_ENTRY_METADATA:
        (bem_size,) = struct.unpack_from(">I", rest, 2)
        broker_entry_metadata = rest[6 : 6 + bem_size]
        rest = rest[6 + bem_size :]
    magic, checksum = struct.unpack_from(">HI", rest, 0)
    if magic != MAGIC_CRC32C:
        raise ValueError(f"bad magic {magic:#06x}")
    (md_size,) = struct.unpack_from(">I", rest, 6)
    metadata = rest[10 : 10 + md_size]
    payload = rest[10 + md_size :]
    frame = Frame(type_, body, raw, checksum, metadata, payload)
    frame.broker_entry_metadata = broker_entry_metadata
    return frame


# --------------------------------------------------------------------------
# a raw connection
# --------------------------------------------------------------------------


class Closed(Exception):
    """The peer closed the connection (or reset it)."""


class RawConnection:
    """A TCP connection speaking raw frames; every wait is bounded."""

    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""

    @classmethod
    def to(cls, service_url, timeout=10.0):
        host_port = service_url.split("://", 1)[-1].rstrip("/")
        host, port = host_port.rsplit(":", 1)
        return cls(host, int(port), timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(f"send failed: {e}") from e

    def send_command(self, command):
        self.send_raw(simple_frame(command))

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete frame within {self.timeout}s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout as e:
                raise TimeoutError(f"no complete frame within {self.timeout}s") from e
            except ConnectionResetError as e:
                raise Closed(f"connection reset: {e}") from e
            if not chunk:
                raise Closed("connection closed by the broker")
            self.buf += chunk

    def read_frame(self, answer_pings=True):
        """The next frame other than PING (answered with PONG) from the
        broker. Raises Closed if the broker closes the connection, and
        TimeoutError if no frame comes within the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            self._fill(4, deadline)
            (total,) = struct.unpack_from(">I", self.buf, 0)
            self._fill(4 + total, deadline)
            body, self.buf = self.buf[4 : 4 + total], self.buf[4 + total :]
            frame = parse_frame(body)
            if answer_pings and frame.type == PING:
                self.send_command(pong())
                continue
            return frame

    def expect_closed(self, within=10.0):
        """Waits until the broker closes the connection; returns the frames
        it sent before closing. Raises TimeoutError if it stays open."""
        frames = []
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the broker kept the connection open for {within}s")
            saved, self.timeout = self.timeout, left
            try:
                frames.append(self.read_frame())
            except Closed:
                return frames
            except TimeoutError:
                pass
            finally:
                self.timeout = saved

    def handshake(self, broker_entry_metadata=False, token=None, supports_auth_refresh=False):
        """CONNECT (with `token` as auth method "token" when given); returns
        the CONNECTED frame."""
        self.send_command(
            connect(
                broker_entry_metadata=broker_entry_metadata,
                auth_method_name=None if token is None else "token",
                auth_data=token,
                supports_auth_refresh=supports_auth_refresh,
            )
        )
        frame = self.read_frame()
        if frame.type != CONNECTED:
            raise AssertionError(f"CONNECT answered with {frame}")
        return frame
