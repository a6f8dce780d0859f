//! A lean async Pulsar client on tokio, written for `strata perf` and the
//! tests: one connection per broker (or a few), client-side batching in
//! Pulsar's batch format, pipelined sends with a bounded window, and
//! consumers with flow control and batch unpacking.
//!
//! It speaks protocol version 21 over `pulsar://` or `pulsar+ssl://`
//! ([`TlsOptions`]), with token or client-certificate authentication
//! ([`Authentication`], answering AUTH_CHALLENGE with a fresh token); it has
//! no compression, schemas or transactions, and does not reconnect: when a
//! connection ends, everything on it fails with the reason, and the caller
//! decides.
//!
//! ```no_run
//! # async fn demo() -> strata_client::Result<()> {
//! use strata_client::{Client, ClientOptions, ConsumerOptions, ProducerOptions};
//! let client = Client::connect("pulsar://127.0.0.1:6650", ClientOptions::default()).await?;
//! let producer = client.create_producer("orders", ProducerOptions::default()).await?;
//! let id = producer.send(b"order-1").await?.await?;
//! let mut consumer = client
//!     .subscribe("orders", "billing", ConsumerOptions::default())
//!     .await?;
//! let msg = consumer.receive().await?;
//! consumer.ack(&msg.id).await?;
//! # let _ = id; Ok(()) }
//! ```

mod auth;
mod client;
pub mod codec;
mod connection;
mod consumer;
mod error;
mod memory;
mod message;
mod producer;
pub mod tls;

pub use auth::{Authentication, TokenSource};
pub use client::{Client, ClientOptions, ServiceUrl, parse_service_url};
pub use connection::Connection;
pub use consumer::{Consumer, ConsumerOptions, InitialPosition, SubscriptionType};
pub use error::{ClientError, Result};
pub use message::{Message, MessageId};
pub use producer::{Producer, ProducerOptions, SendFuture};
pub use tls::{TlsFailure, TlsOptions, TlsSetupError};
