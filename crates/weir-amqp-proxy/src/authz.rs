//! AMQP methods as the policy engine sees them: RabbitMQ's own permission model.
//!
//! Resource types `exchange` and `queue` with the operations `configure`, `write` and `read`
//! (none implies another), and optionally `routing_key` (names `EXCHANGE/ROUTING-KEY`,
//! operation `write`). A policy for AMQP reads:
//!
//! ```yaml
//! rules:
//!   - {effect: allow, principals: ["User:orders"], resources: ["exchange:orders"], operations: [write]}
//!   - {effect: allow, principals: ["User:billing"], resources: ["queue:billing.*"], operations: [configure, read]}
//!   - {effect: allow, principals: ["User:billing"], resources: ["exchange:orders"], operations: [read]}
//! ```
//!
//! | method                          | needs                                                   |
//! |---------------------------------|---------------------------------------------------------|
//! | exchange.declare (not passive)  | configure on the exchange                               |
//! | exchange.delete                 | configure on the exchange                               |
//! | exchange.bind, exchange.unbind  | write on the destination, read on the source exchange   |
//! | queue.declare (not passive)     | configure on the queue (a server-named one: `amq.gen-`) |
//! | queue.delete                    | configure on the queue                                  |
//! | queue.bind, queue.unbind        | write on the queue, read on the exchange                |
//! | queue.purge                     | read on the queue                                       |
//! | basic.publish                   | write on the exchange (`amq.default` for `""`), and write on `routing_key:EXCHANGE/KEY` when the policy has any `routing_key` rule |
//! | basic.consume, basic.get        | read on the queue                                       |
//!
//! A passive declare only asks whether a thing exists and needs nothing, as in RabbitMQ. An
//! empty queue name means the channel's last declared queue, and is judged as that queue.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use weir_amqp::method::{ids, Method, MethodId};
use weir_core::config::{invalid, ConfigError};
use weir_core::policy::{Operation, Policy, PrincipalPolicy, ResourceType, Vocabulary};

pub const EXCHANGE: ResourceType = ResourceType(0);
pub const QUEUE: ResourceType = ResourceType(1);
pub const ROUTING_KEY: ResourceType = ResourceType(2);
pub const CONFIGURE: Operation = Operation(0);
pub const WRITE: Operation = Operation(1);
pub const READ: Operation = Operation(2);

/// The words of AMQP policies.
pub static AMQP: Vocabulary = Vocabulary {
    resource_types: &["exchange", "queue", "routing_key"],
    singleton: None,
    operations: &["configure", "write", "read"],
    aliases: &[("publish", WRITE), ("consume", READ)],
    implies: &[],
};

/// What a server-named queue is judged as: the prefix RabbitMQ gives every such name.
pub const SERVER_NAMED_QUEUE: &str = "amq.gen-";

/// Checks what the vocabulary cannot: a `routing_key` pattern names its exchange
/// (`EXCHANGE/KEY`), and routing keys are only written.
pub fn check_policy(policy: &Policy, origin: &Path) -> Result<(), ConfigError> {
    for (rule, pattern) in policy.patterns(ROUTING_KEY) {
        if pattern.text() != "*" && !pattern.text().contains('/') {
            return Err(invalid(
                origin,
                &format!("rules[{rule}].resources"),
                format!("`routing_key:{}` should be EXCHANGE/ROUTING-KEY (e.g. orders/eu.*)", pattern.text()),
            ));
        }
    }
    Ok(())
}

/// One permission a method needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need<'a> {
    pub resource: ResourceType,
    pub name: Cow<'a, str>,
    pub operation: Operation,
}

impl Need<'_> {
    pub fn resource_type(&self) -> &'static str {
        AMQP.resource_type_name(self.resource)
    }

    pub fn operation_name(&self) -> &'static str {
        AMQP.operation_name(self.operation)
    }
}

/// The permissions `method` needs (at most two), `queue` being what an empty queue name
/// stands for on its channel (None when the channel has declared none); a publish's routing
/// key only when `routing_keys`.
pub fn needs<'a>(
    id: MethodId,
    method: &Method<'a>,
    queue: impl Fn() -> Option<Arc<str>>,
    routing_keys: bool,
) -> Vec<Need<'a>> {
    let need = |resource, name: Cow<'a, str>, operation| Need { resource, name, operation };
    let queue_named = |name: &'a str| -> Cow<'a, str> {
        if name.is_empty() {
            // With no queue declared the broker refuses the method itself; it is judged as
            // the empty name, which no rule but `*` grants.
            queue().map_or(Cow::Borrowed(""), |q| Cow::Owned(q.to_string()))
        } else {
            Cow::Borrowed(name)
        }
    };
    match *method {
        Method::ExchangeDeclare { exchange, passive: false, .. } | Method::ExchangeDelete { exchange } => {
            vec![need(EXCHANGE, exchange.into(), CONFIGURE)]
        }
        Method::ExchangeBind { destination, source, .. } => {
            vec![need(EXCHANGE, destination.into(), WRITE), need(EXCHANGE, source.into(), READ)]
        }
        Method::QueueDeclare { queue, passive: false, .. } => {
            let name = if queue.is_empty() { SERVER_NAMED_QUEUE } else { queue };
            vec![need(QUEUE, name.into(), CONFIGURE)]
        }
        Method::QueueBind { queue, exchange, .. } => {
            vec![need(QUEUE, queue_named(queue), WRITE), need(EXCHANGE, exchange.into(), READ)]
        }
        Method::QueueRemove { queue } => {
            let operation = if id == ids::QUEUE_DELETE { CONFIGURE } else { READ };
            vec![need(QUEUE, queue_named(queue), operation)]
        }
        Method::Consume { queue, .. } | Method::Get { queue } => vec![need(QUEUE, queue_named(queue), READ)],
        Method::Publish { exchange, routing_key } => {
            let exchange = default_exchange(exchange);
            let mut needs = vec![need(EXCHANGE, exchange.into(), WRITE)];
            if routing_keys {
                needs.push(need(ROUTING_KEY, format!("{exchange}/{routing_key}").into(), WRITE));
            }
            needs
        }
        _ => Vec::new(),
    }
}

/// The name RabbitMQ's permissions give the default exchange (`""`).
pub fn default_exchange(exchange: &str) -> &str {
    if exchange.is_empty() {
        "amq.default"
    } else {
        exchange
    }
}

/// One connection's rules, asked in AMQP's terms.
#[derive(Debug, Clone)]
pub struct AmqpAuthz {
    rules: PrincipalPolicy,
    /// Whether publishes are judged on their routing keys too.
    routing_keys: bool,
}

impl AmqpAuthz {
    pub fn new(policy: &Arc<Policy>, principal: Option<&str>) -> Self {
        let routing_keys = policy.patterns(ROUTING_KEY).next().is_some();
        AmqpAuthz { rules: policy.for_principal(principal), routing_keys }
    }

    /// The first permission `method` needs that the principal lacks, if any (see [`needs`]).
    pub fn missing<'a>(
        &self,
        id: MethodId,
        method: &Method<'a>,
        queue: impl Fn() -> Option<Arc<str>>,
    ) -> Option<Need<'a>> {
        let needs = needs(id, method, queue, self.routing_keys);
        needs.into_iter().find(|need| !self.rules.allows(need.resource, &need.name, need.operation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authz(yaml: &str, principal: &str) -> AmqpAuthz {
        let origin = Path::new("policy.yaml");
        let policy = Policy::parse(yaml, origin, &AMQP).unwrap();
        check_policy(&policy, origin).unwrap();
        AmqpAuthz::new(&Arc::new(policy), Some(principal))
    }

    const RULES: &str = r#"
rules:
  - {effect: allow, principals: ["User:orders"], resources: ["exchange:orders"], operations: [write]}
  - {effect: allow, principals: ["User:billing"], resources: ["queue:billing.*", "queue:amq.gen-*"], operations: [configure, read, write]}
  - {effect: allow, principals: ["User:billing"], resources: ["exchange:orders"], operations: [read]}
  - {effect: deny, principals: ["*"], resources: ["queue:billing.secret"], operations: [read]}
"#;

    fn denied(authz: &AmqpAuthz, id: MethodId, method: Method<'_>, current: Option<&str>) -> Option<String> {
        authz
            .missing(id, &method, || current.map(Arc::from))
            .map(|n| format!("{} {}:{}", n.operation_name(), n.resource_type(), n.name))
    }

    #[test]
    fn methods_need_rabbitmqs_permissions() {
        let orders = authz(RULES, "User:orders");
        let publish = Method::Publish { exchange: "orders", routing_key: "eu.created" };
        assert_eq!(denied(&orders, ids::BASIC_PUBLISH, publish.clone(), None), None);
        let elsewhere = Method::Publish { exchange: "", routing_key: "billing.in" };
        assert_eq!(denied(&orders, ids::BASIC_PUBLISH, elsewhere, None).as_deref(), Some("write exchange:amq.default"));
        let declare = Method::ExchangeDeclare { exchange: "orders", passive: false, no_wait: false };
        assert_eq!(denied(&orders, ids::EXCHANGE_DECLARE, declare, None).as_deref(), Some("configure exchange:orders"));
        let passive = Method::ExchangeDeclare { exchange: "orders", passive: true, no_wait: false };
        assert_eq!(denied(&orders, ids::EXCHANGE_DECLARE, passive, None), None);

        let billing = authz(RULES, "User:billing");
        let bind = Method::QueueBind { queue: "billing.in", exchange: "orders", routing_key: "#" };
        assert_eq!(denied(&billing, ids::QUEUE_BIND, bind, None), None);
        let bind = Method::QueueBind { queue: "billing.in", exchange: "payments", routing_key: "#" };
        assert_eq!(denied(&billing, ids::QUEUE_BIND, bind, None).as_deref(), Some("read exchange:payments"));
        let consume = Method::Consume { queue: "billing.secret", consumer_tag: "", no_wait: false };
        assert_eq!(denied(&billing, ids::BASIC_CONSUME, consume, None).as_deref(), Some("read queue:billing.secret"));
        assert_eq!(denied(&billing, ids::BASIC_PUBLISH, publish, None).as_deref(), Some("write exchange:orders"));
    }

    #[test]
    fn an_empty_queue_name_is_judged_as_the_channels_queue() {
        let billing = authz(RULES, "User:billing");
        let get = || Method::Get { queue: "" };
        assert_eq!(denied(&billing, ids::BASIC_GET, get(), Some("billing.in")), None);
        assert_eq!(
            denied(&billing, ids::BASIC_GET, get(), Some("billing.secret")).as_deref(),
            Some("read queue:billing.secret")
        );
        assert_eq!(denied(&billing, ids::BASIC_GET, get(), None).as_deref(), Some("read queue:"));
        let server_named = Method::QueueDeclare { queue: "", passive: false, no_wait: false };
        assert_eq!(denied(&billing, ids::QUEUE_DECLARE, server_named, None), None);
        let delete = Method::QueueRemove { queue: "billing.in" };
        assert_eq!(denied(&billing, ids::QUEUE_DELETE, delete, None), None);
    }

    #[test]
    fn routing_keys_are_judged_only_when_the_policy_speaks_of_them() {
        let rules = r#"
rules:
  - {effect: allow, principals: ["*"], resources: ["exchange:orders"], operations: [write]}
  - {effect: allow, principals: ["*"], resources: ["routing_key:orders/eu.*"], operations: [write]}
"#;
        let anyone = authz(rules, "User:x");
        let eu = Method::Publish { exchange: "orders", routing_key: "eu.created" };
        assert_eq!(denied(&anyone, ids::BASIC_PUBLISH, eu, None), None);
        let us = Method::Publish { exchange: "orders", routing_key: "us.created" };
        assert_eq!(
            denied(&anyone, ids::BASIC_PUBLISH, us.clone(), None).as_deref(),
            Some("write routing_key:orders/us.created")
        );
        let without = authz(
            "rules: [{effect: allow, principals: ['*'], resources: ['exchange:orders'], operations: [write]}]",
            "User:x",
        );
        assert_eq!(denied(&without, ids::BASIC_PUBLISH, us, None), None);
        let origin = Path::new("p.yaml");
        let bad = Policy::parse(
            "rules: [{effect: allow, principals: ['*'], resources: ['routing_key:eu.*'], operations: [write]}]",
            origin,
            &AMQP,
        )
        .unwrap();
        let err = check_policy(&bad, origin).unwrap_err().to_string();
        assert!(err.contains("rules[0].resources") && err.contains("EXCHANGE/ROUTING-KEY"), "{err}");
    }
}
