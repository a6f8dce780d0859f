//! Builders of the commands the broker sends.

use strata_proto::pulsar::{self as pb, BaseCommand, ServerError, base_command::Type};

use crate::error::BrokerError;

fn base(t: Type) -> BaseCommand {
    BaseCommand {
        r#type: t as i32,
        ..Default::default()
    }
}

pub fn success(request_id: u64) -> BaseCommand {
    BaseCommand {
        success: Some(pb::CommandSuccess {
            request_id,
            schema: None,
        }),
        ..base(Type::Success)
    }
}

pub fn error(request_id: u64, e: &BrokerError) -> BaseCommand {
    error_code(request_id, e.server_error(), e.to_string())
}

pub fn error_code(request_id: u64, code: ServerError, message: String) -> BaseCommand {
    BaseCommand {
        error: Some(pb::CommandError {
            request_id,
            error: code as i32,
            message,
        }),
        ..base(Type::Error)
    }
}

/// What Pulsar's broker sends in AUTH_CHALLENGE to ask for fresh credentials.
pub const AUTH_REFRESH_DATA: &[u8] = b"PulsarAuthRefresh";

pub fn auth_challenge(method: &str, protocol_version: i32) -> BaseCommand {
    BaseCommand {
        auth_challenge: Some(pb::CommandAuthChallenge {
            server_version: Some(format!("Strata {}", env!("CARGO_PKG_VERSION"))),
            challenge: Some(pb::AuthData {
                auth_method_name: Some(method.to_string()),
                auth_data: Some(bytes::Bytes::from_static(AUTH_REFRESH_DATA)),
            }),
            protocol_version: Some(protocol_version),
        }),
        ..base(Type::AuthChallenge)
    }
}

pub fn ping() -> BaseCommand {
    BaseCommand {
        ping: Some(pb::CommandPing {}),
        ..base(Type::Ping)
    }
}

pub fn pong() -> BaseCommand {
    BaseCommand {
        pong: Some(pb::CommandPong {}),
        ..base(Type::Pong)
    }
}

pub fn close_producer(producer_id: u64) -> BaseCommand {
    BaseCommand {
        close_producer: Some(pb::CommandCloseProducer {
            producer_id,
            request_id: 0,
            ..Default::default()
        }),
        ..base(Type::CloseProducer)
    }
}

pub fn close_consumer(consumer_id: u64) -> BaseCommand {
    BaseCommand {
        close_consumer: Some(pb::CommandCloseConsumer {
            consumer_id,
            request_id: 0,
            ..Default::default()
        }),
        ..base(Type::CloseConsumer)
    }
}

pub fn send_receipt(
    producer_id: u64,
    sequence_id: u64,
    highest_sequence_id: Option<u64>,
    ledger_id: u64,
    entry_id: u64,
) -> BaseCommand {
    BaseCommand {
        send_receipt: Some(pb::CommandSendReceipt {
            producer_id,
            sequence_id,
            message_id: Some(message_id(ledger_id, entry_id, -1, -1)),
            highest_sequence_id: Some(highest_sequence_id.unwrap_or(sequence_id)),
        }),
        ..base(Type::SendReceipt)
    }
}

pub fn send_error(producer_id: u64, sequence_id: u64, e: &BrokerError) -> BaseCommand {
    BaseCommand {
        send_error: Some(pb::CommandSendError {
            producer_id,
            sequence_id,
            error: e.server_error() as i32,
            message: e.to_string(),
        }),
        ..base(Type::SendError)
    }
}

pub fn message_id(
    ledger_id: u64,
    entry_id: u64,
    partition: i32,
    batch_index: i32,
) -> pb::MessageIdData {
    pb::MessageIdData {
        ledger_id,
        entry_id,
        partition: Some(partition),
        batch_index: Some(batch_index),
        ..Default::default()
    }
}

pub fn producer_success(
    request_id: u64,
    producer_name: String,
    topic_epoch: Option<u64>,
    ready: bool,
) -> BaseCommand {
    BaseCommand {
        producer_success: Some(pb::CommandProducerSuccess {
            request_id,
            producer_name,
            last_sequence_id: Some(-1),
            schema_version: None,
            topic_epoch,
            producer_ready: Some(ready),
        }),
        ..base(Type::ProducerSuccess)
    }
}

pub fn active_consumer_change(consumer_id: u64, is_active: bool) -> BaseCommand {
    BaseCommand {
        active_consumer_change: Some(pb::CommandActiveConsumerChange {
            consumer_id,
            is_active: Some(is_active),
        }),
        ..base(Type::ActiveConsumerChange)
    }
}

pub fn message(
    consumer_id: u64,
    id: pb::MessageIdData,
    redelivery_count: u32,
    ack_set: Vec<i64>,
) -> BaseCommand {
    BaseCommand {
        message: Some(pb::CommandMessage {
            consumer_id,
            message_id: id,
            redelivery_count: Some(redelivery_count),
            ack_set,
            consumer_epoch: None,
        }),
        ..base(Type::Message)
    }
}

pub fn ack_response(consumer_id: u64, request_id: u64, err: Option<&BrokerError>) -> BaseCommand {
    BaseCommand {
        ack_response: Some(pb::CommandAckResponse {
            consumer_id,
            request_id: Some(request_id),
            error: err.map(|e| e.server_error() as i32),
            message: err.map(|e| e.to_string()),
            ..Default::default()
        }),
        ..base(Type::AckResponse)
    }
}

/// The owner's URLs, both as Pulsar sends them: a client that reached us
/// over TLS connects to `url_tls` (the C++ client takes it whenever its own
/// connection is TLS).
pub fn lookup_connect(request_id: u64, url: String, url_tls: Option<String>) -> BaseCommand {
    BaseCommand {
        lookup_topic_response: Some(pb::CommandLookupTopicResponse {
            broker_service_url: Some(url),
            broker_service_url_tls: url_tls,
            response: Some(pb::command_lookup_topic_response::LookupType::Connect as i32),
            request_id,
            authoritative: Some(true),
            proxy_through_service_url: Some(false),
            ..Default::default()
        }),
        ..base(Type::LookupResponse)
    }
}

pub fn lookup_failed(request_id: u64, e: &BrokerError) -> BaseCommand {
    BaseCommand {
        lookup_topic_response: Some(pb::CommandLookupTopicResponse {
            response: Some(pb::command_lookup_topic_response::LookupType::Failed as i32),
            request_id,
            error: Some(e.server_error() as i32),
            message: Some(e.to_string()),
            ..Default::default()
        }),
        ..base(Type::LookupResponse)
    }
}

pub fn partitioned_metadata(request_id: u64, partitions: u32) -> BaseCommand {
    BaseCommand {
        partition_metadata_response: Some(pb::CommandPartitionedTopicMetadataResponse {
            partitions: Some(partitions),
            request_id,
            response: Some(
                pb::command_partitioned_topic_metadata_response::LookupType::Success as i32,
            ),
            ..Default::default()
        }),
        ..base(Type::PartitionedMetadataResponse)
    }
}

pub fn partitioned_metadata_failed(request_id: u64, e: &BrokerError) -> BaseCommand {
    BaseCommand {
        partition_metadata_response: Some(pb::CommandPartitionedTopicMetadataResponse {
            partitions: Some(0),
            request_id,
            response: Some(
                pb::command_partitioned_topic_metadata_response::LookupType::Failed as i32,
            ),
            error: Some(e.server_error() as i32),
            message: Some(e.to_string()),
        }),
        ..base(Type::PartitionedMetadataResponse)
    }
}

pub fn topics_of_namespace(request_id: u64, topics: Vec<String>) -> BaseCommand {
    BaseCommand {
        get_topics_of_namespace_response: Some(pb::CommandGetTopicsOfNamespaceResponse {
            request_id,
            topics,
            filtered: Some(false),
            topics_hash: None,
            changed: Some(true),
        }),
        ..base(Type::GetTopicsOfNamespaceResponse)
    }
}

pub fn schema_not_found(request_id: u64, topic: &str) -> BaseCommand {
    BaseCommand {
        get_schema_response: Some(pb::CommandGetSchemaResponse {
            request_id,
            error_code: Some(ServerError::TopicNotFound as i32),
            error_message: Some(format!("no schema is stored for {topic}")),
            schema: None,
            schema_version: None,
        }),
        ..base(Type::GetSchemaResponse)
    }
}

pub fn last_message_id(
    request_id: u64,
    last: pb::MessageIdData,
    mark_delete: Option<pb::MessageIdData>,
) -> BaseCommand {
    BaseCommand {
        get_last_message_id_response: Some(pb::CommandGetLastMessageIdResponse {
            last_message_id: last,
            request_id,
            consumer_mark_delete_position: mark_delete,
        }),
        ..base(Type::GetLastMessageIdResponse)
    }
}

pub fn connected(
    server_version: String,
    protocol_version: i32,
    max_message_size: usize,
) -> BaseCommand {
    BaseCommand {
        connected: Some(pb::CommandConnected {
            server_version,
            protocol_version: Some(protocol_version),
            max_message_size: Some(max_message_size as i32),
            feature_flags: Some(pb::FeatureFlags {
                supports_auth_refresh: Some(true),
                supports_broker_entry_metadata: Some(true),
                supports_partial_producer: Some(true),
                supports_topic_watchers: Some(false),
                ..Default::default()
            }),
        }),
        ..base(Type::Connected)
    }
}
