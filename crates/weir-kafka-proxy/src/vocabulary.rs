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
