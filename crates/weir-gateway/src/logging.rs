//! What librdkafka says, in the gateway's log: through `tracing` under target `librdkafka`,
//! at librdkafka's own level, except that a warning about something librdkafka is retrying
//! itself (a coordinator still loading, a leader moving) is informational — nothing for an
//! operator to do unless it stays, and then the delivery timeout reports it.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

#[derive(Debug, Clone, Copy, Default)]
pub struct Logging;

impl ClientContext for Logging {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        use RDKafkaLogLevel as L;
        let retried = message.contains("retrying") || message.contains("Retrying");
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            L::Warning if !retried => tracing::warn!(target: "librdkafka", facility, "{message}"),
            L::Warning | L::Notice | L::Info => tracing::info!(target: "librdkafka", facility, "{message}"),
            L::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // A reader that asked to hear of partition ends hears of them here too.
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            return tracing::debug!(target: "librdkafka", "{reason}");
        }
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for Logging {}
