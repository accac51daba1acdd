//! Authorization policy: who may do what to which resource, whatever the protocol.
//!
//! A policy is a list of rules, each principal pattern × resource pattern × operations →
//! allow or deny. Deny wins; with a policy present, whatever no rule allows is denied. The
//! model follows Kafka's own authorizer (so Kafka operators recognise it): allowing `read`,
//! `write`, `delete` or `alter` implies `describe`, and `alter-configs` implies
//! `describe-configs`; a deny applies to exactly the operations it names.
//!
//! Protocol sidecars map each request onto (resource, operation) pairs and ask a
//! [`PrincipalPolicy`], the rules already narrowed to one connection's principal, so a
//! decision costs a scan over a handful of rules. A sidecar re-reads the file when it changes
//! and hands the new policy to live connections (through its configuration snapshot): they
//! pick it up at their next request, without reconnecting.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{invalid, load_yaml_file, ConfigError};

/// The principal of a connection that authenticated no one (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// Where the policy comes from (the `authorization` section of a sidecar's config).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// The policy file (YAML).
    pub policy: PathBuf,
    /// How often the file is checked for changes.
    #[serde(default = "default_reload_ms")]
    pub reload_interval_ms: u64,
}

fn default_reload_ms() -> u64 {
    1000
}

/// What kind of thing a rule protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Topic,
    Group,
    TransactionalId,
    Cluster,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::TransactionalId => "transactional-id",
            ResourceType::Cluster => "cluster",
        }
    }
}

/// What a request wants to do to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    const ALL: [Operation; 9] = [
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Alter => "alter",
            Operation::Describe => "describe",
            Operation::DescribeConfigs => "describe-configs",
            Operation::AlterConfigs => "alter-configs",
            Operation::IdempotentWrite => "idempotent-write",
        }
    }

    fn parse(word: &str) -> Option<OperationSet> {
        let op = match word {
            "all" => return Some(OperationSet(u16::MAX)),
            "read" | "consume" => Operation::Read,
            "write" | "produce" => Operation::Write,
            "create" => Operation::Create,
            "delete" => Operation::Delete,
            "alter" => Operation::Alter,
            "describe" => Operation::Describe,
            "describe-configs" => Operation::DescribeConfigs,
            "alter-configs" => Operation::AlterConfigs,
            "idempotent-write" => Operation::IdempotentWrite,
            _ => return None,
        };
        Some(OperationSet::of(op))
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of operations as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct OperationSet(u16);

impl OperationSet {
    fn of(op: Operation) -> Self {
        Self(op.bit())
    }

    fn contains(self, op: Operation) -> bool {
        self.0 & op.bit() != 0
    }

    /// The operations an allow of this set grants, implications included.
    fn implied(self) -> Self {
        let mut bits = self.0;
        let implies_describe = [Operation::Read, Operation::Write, Operation::Delete, Operation::Alter];
        if implies_describe.iter().any(|op| self.contains(*op)) {
            bits |= Operation::Describe.bit();
        }
        if self.contains(Operation::AlterConfigs) {
            bits |= Operation::DescribeConfigs.bit();
        }
        Self(bits)
    }
}

/// A name pattern: `*` matches any run of characters, `?` any one; anything else is literal.
/// So `orders` is literal, `orders.*` a prefix, `*` everything, `*.audit` a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Any,
    Literal(String),
    Prefix(String),
    Glob(String),
}

impl Pattern {
    pub fn parse(text: &str) -> Self {
        if text == "*" {
            return Pattern::Any;
        }
        match text.strip_suffix('*') {
            Some(prefix) if !prefix.contains(['*', '?']) => Pattern::Prefix(prefix.to_owned()),
            _ if text.contains(['*', '?']) => Pattern::Glob(text.to_owned()),
            _ => Pattern::Literal(text.to_owned()),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Literal(literal) => literal == name,
            Pattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
            Pattern::Glob(glob) => glob_matches(glob.as_bytes(), name.as_bytes()),
        }
    }
}

/// Iterative wildcard matching with one backtrack point: linear in practice, never
/// exponential, whatever the pattern.
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if *c == b'?' || *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// One rule as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    effect: Effect,
    principals: Vec<String>,
    /// `topic:PATTERN`, `group:PATTERN`, `transactional-id:PATTERN` or `cluster`.
    resources: Vec<String>,
    operations: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    rules: Vec<RuleFile>,
}

#[derive(Debug, Clone)]
struct Rule {
    effect: Effect,
    principals: Vec<Pattern>,
    resources: Vec<(ResourceType, Pattern)>,
    /// For allow rules, with implications already added.
    operations: OperationSet,
}

impl Rule {
    fn covers(&self, resource: ResourceType, name: &str, op: Operation) -> bool {
        self.operations.contains(op) && self.resources.iter().any(|(t, p)| *t == resource && p.matches(name))
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Reads and checks a policy file; errors name the file and the rule's key.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let parsed: PolicyFile = load_yaml_file(file)?;
        Self::from_file(parsed, file)
    }

    /// Parses policy text (tests and tools); `file` is only used in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let parsed: PolicyFile = crate::config::parse_yaml(text, file)?;
        Self::from_file(parsed, file)
    }

    fn from_file(parsed: PolicyFile, file: &Path) -> Result<Self, ConfigError> {
        let mut rules = Vec::with_capacity(parsed.rules.len());
        for (i, rule) in parsed.rules.into_iter().enumerate() {
            let key = |field: &str| format!("rules[{i}].{field}");
            if rule.principals.is_empty() {
                return Err(invalid(file, &key("principals"), "a rule needs at least one principal (`*` for anyone)"));
            }
            let mut resources = Vec::with_capacity(rule.resources.len());
            for (j, text) in rule.resources.iter().enumerate() {
                let resource = parse_resource(text).ok_or_else(|| {
                    invalid(
                        file,
                        &format!("rules[{i}].resources[{j}]"),
                        format!(
                            "`{text}` is not a resource; expected topic:PATTERN, group:PATTERN, \
                             transactional-id:PATTERN or cluster"
                        ),
                    )
                })?;
                resources.push(resource);
            }
            if resources.is_empty() {
                return Err(invalid(file, &key("resources"), "a rule needs at least one resource"));
            }
            let mut operations = OperationSet::default();
            for (j, word) in rule.operations.iter().enumerate() {
                let set = Operation::parse(word).ok_or_else(|| {
                    invalid(
                        file,
                        &format!("rules[{i}].operations[{j}]"),
                        format!(
                            "unknown operation `{word}`; expected one of all, {}",
                            Operation::ALL.map(Operation::as_str).join(", ")
                        ),
                    )
                })?;
                operations.0 |= set.0;
            }
            if operations.0 == 0 {
                return Err(invalid(file, &key("operations"), "a rule needs at least one operation"));
            }
            if rule.effect == Effect::Allow {
                operations = operations.implied();
            }
            let principals = rule.principals.iter().map(|p| Pattern::parse(p)).collect();
            rules.push(Rule { effect: rule.effect, principals, resources, operations });
        }
        Ok(Self { rules })
    }

    /// The rules that can apply to `principal` (`None` is [`ANONYMOUS`]).
    pub fn for_principal(self: &Arc<Self>, principal: Option<&str>) -> PrincipalPolicy {
        let principal = principal.unwrap_or(ANONYMOUS);
        let rules = self.rules.iter().filter(|r| r.principals.iter().any(|p| p.matches(principal))).cloned().collect();
        PrincipalPolicy { rules }
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

fn parse_resource(text: &str) -> Option<(ResourceType, Pattern)> {
    if text == "cluster" {
        return Some((ResourceType::Cluster, Pattern::Any));
    }
    let (kind, pattern) = text.split_once(':')?;
    let kind = match kind {
        "topic" => ResourceType::Topic,
        "group" => ResourceType::Group,
        "transactional-id" => ResourceType::TransactionalId,
        "cluster" => ResourceType::Cluster,
        _ => return None,
    };
    (!pattern.is_empty()).then(|| (kind, Pattern::parse(pattern)))
}

/// The rules of a policy that name one principal: what a connection consults per request.
#[derive(Debug, Clone)]
pub struct PrincipalPolicy {
    rules: Vec<Rule>,
}

impl PrincipalPolicy {
    /// Whether `op` on the resource is allowed: some allow rule covers it and no deny rule does.
    pub fn allows(&self, resource: ResourceType, name: &str, op: Operation) -> bool {
        let mut allowed = false;
        for rule in &self.rules {
            if rule.covers(resource, name, op) {
                match rule.effect {
                    Effect::Deny => return false,
                    Effect::Allow => allowed = true,
                }
            }
        }
        allowed
    }

    /// Whether `op` is allowed on at least one resource of this type, for requests that need
    /// "write to some topic" (an idempotent producer without a cluster grant, as in Kafka).
    pub fn allows_any(&self, resource: ResourceType, op: Operation) -> bool {
        self.rules.iter().any(|r| {
            r.effect == Effect::Allow && r.operations.contains(op) && r.resources.iter().any(|(t, _)| *t == resource)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Arc<Policy> {
        Arc::new(Policy::parse(text, Path::new("policy.yaml")).unwrap())
    }

    fn err(text: &str) -> String {
        Policy::parse(text, Path::new("policy.yaml")).unwrap_err().to_string()
    }

    const SHOP: &str = "
rules:
  - effect: allow
    principals: ['spiffe://mesh/ns/shop/sa/orders']
    resources: ['topic:orders', 'topic:orders.*', 'transactional-id:orders-*']
    operations: [write]
  - effect: allow
    principals: ['spiffe://mesh/ns/shop/*']
    resources: ['topic:*', 'group:shop-*']
    operations: [read]
  - effect: deny
    principals: ['*']
    resources: ['topic:*.secret']
    operations: [all]
";

    #[test]
    fn allow_deny_and_default() {
        let p = policy(SHOP);
        let orders = p.for_principal(Some("spiffe://mesh/ns/shop/sa/orders"));
        assert!(orders.allows(ResourceType::Topic, "orders", Operation::Write));
        assert!(orders.allows(ResourceType::Topic, "orders.eu", Operation::Write));
        assert!(!orders.allows(ResourceType::Topic, "ordersx", Operation::Write), "literal is not a prefix");
        assert!(orders.allows(ResourceType::Topic, "payments", Operation::Read));
        assert!(!orders.allows(ResourceType::Topic, "payments", Operation::Write), "default deny");
        assert!(orders.allows(ResourceType::TransactionalId, "orders-1", Operation::Write));
        assert!(!orders.allows(ResourceType::Group, "billing", Operation::Read));
        assert!(orders.allows(ResourceType::Group, "shop-1", Operation::Read));
        // Deny wins over the prefix allow.
        assert!(!orders.allows(ResourceType::Topic, "orders.secret", Operation::Write));
        assert!(!orders.allows(ResourceType::Topic, "orders.secret", Operation::Describe));

        let stranger = p.for_principal(Some("spiffe://mesh/ns/other/sa/x"));
        assert!(!stranger.allows(ResourceType::Topic, "orders", Operation::Read));
        let anonymous = p.for_principal(None);
        assert!(!anonymous.allows(ResourceType::Topic, "orders", Operation::Describe));
    }

    #[test]
    fn implications_follow_kafka() {
        let p = policy(
            "rules:
  - {effect: allow, principals: [a], resources: ['topic:t'], operations: [read]}
  - {effect: allow, principals: [a], resources: ['topic:c'], operations: [alter-configs]}
  - {effect: deny, principals: [a], resources: ['topic:t'], operations: [describe]}
  - {effect: allow, principals: [a], resources: ['topic:u'], operations: [produce]}
",
        );
        let a = p.for_principal(Some("a"));
        assert!(a.allows(ResourceType::Topic, "u", Operation::Describe), "write implies describe");
        assert!(a.allows(ResourceType::Topic, "c", Operation::DescribeConfigs));
        assert!(!a.allows(ResourceType::Topic, "c", Operation::Describe), "alter-configs does not imply describe");
        // A deny of describe denies describe only.
        assert!(!a.allows(ResourceType::Topic, "t", Operation::Describe));
        assert!(a.allows(ResourceType::Topic, "t", Operation::Read));
        assert!(a.allows_any(ResourceType::Topic, Operation::Write));
        assert!(!a.allows_any(ResourceType::Group, Operation::Read));
    }

    #[test]
    fn patterns() {
        assert!(Pattern::parse("*").matches(""));
        assert!(Pattern::parse("a*").matches("abc"));
        assert!(Pattern::parse("*.audit").matches("shop.audit"));
        assert!(!Pattern::parse("*.audit").matches("shop.audits"));
        assert!(Pattern::parse("a?c*z").matches("abcxyz"));
        assert!(!Pattern::parse("a?c*z").matches("acxyz"));
        assert!(Pattern::parse("*a*a*a*b").matches("aaaaaaaaaaaaab"));
        assert!(!Pattern::parse("*a*a*a*b").matches(&"a".repeat(10_000)));
        assert_eq!(Pattern::parse("orders"), Pattern::Literal("orders".into()));
    }

    #[test]
    fn errors_name_the_rule() {
        let e = err("rules:\n  - {effect: allow, principals: [a], resources: ['queue:x'], operations: [read]}\n");
        assert!(e.contains("policy.yaml") && e.contains("rules[0].resources[0]") && e.contains("queue:x"), "{e}");
        let e = err("rules:\n  - {effect: allow, principals: [a], resources: [cluster], operations: [fly]}\n");
        assert!(e.contains("rules[0].operations[0]") && e.contains("fly"), "{e}");
        let e = err("rules:\n  - {effect: maybe, principals: [a], resources: [cluster], operations: [all]}\n");
        assert!(e.contains("effect"), "{e}");
        let e = err("rules:\n  - {effect: allow, principals: [], resources: [cluster], operations: [all]}\n");
        assert!(e.contains("rules[0].principals"), "{e}");
    }
}
