//! Answers for config resources denied by the policy: DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs answer alike, each denied resource with the authorization error of
//! its type, the rest served.

use super::*;

/// The authorization error for a config resource: 2 topic, 32 group, else the cluster.
pub(super) fn config_denied_code(resource_type: i8) -> i16 {
    match resource_type {
        2 => TOPIC_DENIED,
        32 => GROUP_DENIED,
        _ => CLUSTER_DENIED,
    }
}

/// One answer function per config request: the three differ only in their message types and
/// the names of their lists.
macro_rules! config_answer {
    ($name:ident, $request:ty, $response:ty, $entry:ty, $entries:ident) => {
        pub(super) fn $name(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
            let request: $request = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.resources,
                |r| {
                    let name = str_of(&r.resource_name);
                    !ctx.permits(Named::ConfigResource { resource_type: r.resource_type, name })
                },
                |r| {
                    <$entry>::default()
                        .with_error_code(config_denied_code(r.resource_type))
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name)
                },
                |r: &mut $response| &mut r.$entries,
            )
        }
    };
}

config_answer!(
    describe_configs,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    describe_configs_response::DescribeConfigsResult,
    results
);
config_answer!(
    alter_configs,
    AlterConfigsRequest,
    AlterConfigsResponse,
    alter_configs_response::AlterConfigsResourceResponse,
    responses
);
config_answer!(
    incremental_alter_configs,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
    incremental_alter_configs_response::AlterConfigsResourceResponse,
    responses
);
