//! What Weir reads in a field that the spec's `entityType` annotations do not say: fields a
//! proxy's policy must see that Kafka does not annotate, and annotated fields a broker does not
//! authorize (so neither may the proxy, or it would refuse what Kafka serves).
//!
//! Keyed by message name and field path (struct fields joined by dots, from the body).

/// (message, field path, entity variant, why).
pub const ANNOTATIONS: &[(&str, &str, &str, &str)] = &[
    ("FindCoordinatorRequest", "Key", "CoordinatorKey", "a group, transactional id or share-group key"),
    ("FindCoordinatorRequest", "CoordinatorKeys", "CoordinatorKey", "the same, batched (v4+)"),
    ("FindCoordinatorRequest", "KeyType", "CoordinatorKeyType", "says what the keys are"),
    ("DescribeConfigsRequest", "Resources.ResourceType", "ConfigResourceType", "topic, broker, group, ..."),
    ("DescribeConfigsRequest", "Resources.ResourceName", "ConfigResourceName", "the resource"),
    ("AlterConfigsRequest", "Resources.ResourceType", "ConfigResourceType", "topic, broker, group, ..."),
    ("AlterConfigsRequest", "Resources.ResourceName", "ConfigResourceName", "the resource"),
    ("IncrementalAlterConfigsRequest", "Resources.ResourceType", "ConfigResourceType", "topic, broker, ..."),
    ("IncrementalAlterConfigsRequest", "Resources.ResourceName", "ConfigResourceName", "the resource"),
    ("MetadataRequest", "AllowAutoTopicCreation", "AutoCreateTopics", "asks for CREATE"),
    // A fetch session forgets these topics; the broker reads nothing of them and checks nothing.
    ("FetchRequest", "ForgottenTopicsData.Topic", "None", "forgotten, not read"),
    ("FetchRequest", "ForgottenTopicsData.TopicId", "None", "forgotten, not read"),
    ("ShareFetchRequest", "ForgottenTopicsData.TopicId", "None", "forgotten, not read"),
    // Where to resume a listing; the topics listed are the ones the request names (or all).
    ("DescribeTopicPartitionsRequest", "Cursor.TopicName", "None", "a position, not a request"),
    // The member reports what it owns; the broker authorizes the subscription, not this.
    ("ConsumerGroupHeartbeatRequest", "TopicPartitions.TopicId", "None", "owned partitions"),
];
