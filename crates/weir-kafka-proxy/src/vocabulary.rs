//! The words Kafka policies use, registered with the protocol-neutral policy engine
//! (`weir_core::policy`): Kafka's resource types and operations, and the implications of its
//! own authorizer (read, write, delete and alter imply describe; alter-configs implies
//! describe-configs).

use weir_core::policy::{Operation, ResourceType, Vocabulary};

pub const TOPIC: ResourceType = ResourceType(0);
pub const GROUP: ResourceType = ResourceType(1);
pub const TRANSACTIONAL_ID: ResourceType = ResourceType(2);
/// Written `cluster` in a policy, without a pattern: there is one.
pub const CLUSTER: ResourceType = ResourceType(3);

pub const READ: Operation = Operation(0);
pub const WRITE: Operation = Operation(1);
pub const CREATE: Operation = Operation(2);
pub const DELETE: Operation = Operation(3);
pub const ALTER: Operation = Operation(4);
pub const DESCRIBE: Operation = Operation(5);
pub const DESCRIBE_CONFIGS: Operation = Operation(6);
pub const ALTER_CONFIGS: Operation = Operation(7);
pub const IDEMPOTENT_WRITE: Operation = Operation(8);

/// The name policies give the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

pub static KAFKA: Vocabulary = Vocabulary {
    resource_types: &["topic", "group", "transactional-id", "cluster"],
    singleton: Some(CLUSTER),
    operations: &[
        "read",
        "write",
        "create",
        "delete",
        "alter",
        "describe",
        "describe-configs",
        "alter-configs",
        "idempotent-write",
    ],
    aliases: &[("consume", READ), ("produce", WRITE)],
    implies: &[(&[READ, WRITE, DELETE, ALTER], DESCRIBE), (&[ALTER_CONFIGS], DESCRIBE_CONFIGS)],
};

/// Kafka's own limit on a topic name.
const MAX_TOPIC_NAME: usize = 249;

/// Why `name` cannot be a Kafka topic's name (Kafka's own rule: 1 to 249 of `a-z A-Z 0-9 . _ -`,
/// not `.` or `..`).
pub fn check_topic_name(name: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_TOPIC_NAME || !name.chars().all(legal) || name == "." || name == ".." {
        return Err(format!("`{name}` is not a topic name (1 to 249 of a-z A-Z 0-9 . _ -)"));
    }
    Ok(())
}
