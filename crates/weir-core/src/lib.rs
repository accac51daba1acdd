//! The protocol-agnostic half of a Weir proxy.
//!
//! Owns what the Kafka sidecar shares with the MQTT/AMQP sidecars and gateways to come: loading
//! YAML config with errors that name file and key ([`config`]), the admin HTTP endpoint with
//! `/metrics`, `/healthz` and `/readyz` ([`admin`]),
//! connection limits at accept ([`admission`]), the accept loop with its connection spans
//! ([`listener`]), connection metrics common to every listener
//! ([`metrics`]), log setup ([`telemetry`]), graceful shutdown ([`shutdown`]) and TLS
//! termination with client identities from certificates ([`tls`], [`identity`]), SASL ([`sasl`], with limits
//! on password guessing in [`sasl_guard`]), the audit log ([`audit`]) and the authorization
//! policy model ([`policy`]); noticing changed files ([`reload`]); following the control plane
//! ([`control`]) and the flows it reports for the mesh's topology ([`flows`]); one bounded HTTP request to the services a proxy depends on ([`http_get`]);
//! W3C trace context and spans exported over OTLP ([`otlp`]).
//!
//! It must not know any wire protocol: nothing here may depend on Kafka (or MQTT) types.

pub mod admin;
pub mod admission;
pub mod audit;
pub mod config;
pub mod control;
pub mod flows;
pub mod front;
pub mod fs;
pub mod http_get;
pub mod identity;
pub mod io;
pub mod jwt;
pub mod listener;
pub mod metrics;
pub mod otlp;
pub mod policy;
pub mod relay;
pub mod reload;
pub mod rules;
pub mod sasl;
pub mod sasl_guard;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod utc;
