//! Authorization policy: who may do what to which resource, whatever the protocol.
//!
//! A policy is a list of rules, each principal pattern × resource pattern × operations →
//! allow or deny. Deny wins; with a policy present, whatever no rule allows is denied; an
//! allow also grants what its operations imply, a deny applies to exactly the operations it
//! names. The resource types, the operations and their implications are not this module's:
//! each protocol registers its [`Vocabulary`] (the Kafka sidecar's follows Kafka's own
//! authorizer, so Kafka operators recognise it), and a policy file is read against it.
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

/// Where the policy comes from (the `authorization` section of a sidecar's config): a file,
/// followed for changes, or rules written inline (what the control plane sends).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// The policy file (YAML).
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// The rules themselves, instead of a file.
    #[serde(default)]
    pub rules: Option<Vec<RuleSpec>>,
    /// How often the file is checked for changes.
    #[serde(default = "default_reload_ms")]
    pub reload_interval_ms: u64,
}

impl AuthorizationConfig {
    /// Reads the policy from wherever this section says; `origin` names the config in errors.
    pub fn load(&self, origin: &Path, words: &Vocabulary) -> Result<Policy, ConfigError> {
        match (&self.policy, &self.rules) {
            (Some(file), None) => Policy::load(file, words),
            (None, Some(rules)) => Policy::from_rules(rules.clone(), origin, words),
            _ => Err(invalid(origin, "authorization", "expected either `policy` (a file) or `rules`, not both")),
        }
    }
}

fn default_reload_ms() -> u64 {
    1000
}

/// The words one protocol's policies use — its resource types, its operations, and which
/// operations a grant implies — registered by the protocol (the Kafka sidecar registers
/// topic, group, transactional-id and cluster; MQTT or AMQP will register theirs). The engine
/// knows nothing else of any protocol.
#[derive(Debug)]
pub struct Vocabulary {
    /// Resource type names; [`ResourceType`] `i` is the `i`-th.
    pub resource_types: &'static [&'static str],
    /// The resource type written without a pattern (Kafka's `cluster`), if any.
    pub singleton: Option<ResourceType>,
    /// Operation names (at most 16); [`Operation`] `i` is the `i`-th.
    pub operations: &'static [&'static str],
    /// Other words for operations (`consume` for read).
    pub aliases: &'static [(&'static str, Operation)],
    /// Allowing any of the first operations also allows the second.
    pub implies: &'static [(&'static [Operation], Operation)],
}

/// What kind of thing a rule protects: an index into its [`Vocabulary`]'s resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceType(pub u8);

/// What a request wants to do to a resource: an index into its [`Vocabulary`]'s operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operation(pub u8);

impl Vocabulary {
    pub fn resource_type_name(&self, resource: ResourceType) -> &'static str {
        self.resource_types.get(usize::from(resource.0)).copied().unwrap_or("?")
    }

    pub fn operation_name(&self, operation: Operation) -> &'static str {
        self.operations.get(usize::from(operation.0)).copied().unwrap_or("?")
    }

    fn operation(&self, word: &str) -> Option<OperationSet> {
        if word == "all" {
            return Some(OperationSet(u16::MAX));
        }
        let index = self.operations.iter().position(|name| *name == word);
        let operation = index.map(|i| Operation(i as u8));
        operation
            .or_else(|| self.aliases.iter().find(|(alias, _)| *alias == word).map(|(_, op)| *op))
            .map(OperationSet::of)
    }

    fn resource(&self, text: &str) -> Option<(ResourceType, Pattern)> {
        if let Some(singleton) = self.singleton.filter(|s| self.resource_type_name(*s) == text) {
            return Some((singleton, Pattern::Any));
        }
        let (kind, pattern) = text.split_once(':')?;
        let index = self.resource_types.iter().position(|name| *name == kind)?;
        (!pattern.is_empty()).then(|| (ResourceType(index as u8), Pattern::parse(pattern)))
    }

    /// The resource forms a rule may name, for error messages.
    fn resource_forms(&self) -> String {
        let form = |(i, name): (usize, &&str)| match self.singleton {
            Some(s) if usize::from(s.0) == i => (*name).to_owned(),
            _ => format!("{name}:PATTERN"),
        };
        self.resource_types.iter().enumerate().map(form).collect::<Vec<_>>().join(", ")
    }

    /// The operations an allow of `set` grants, implications included.
    fn implied(&self, set: OperationSet) -> OperationSet {
        let mut bits = set.0;
        for (given, implied) in self.implies {
            if given.iter().any(|op| set.contains(*op)) {
                bits |= OperationSet::of(*implied).0;
            }
        }
        OperationSet(bits)
    }
}

/// A set of operations as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct OperationSet(u16);

impl OperationSet {
    fn of(op: Operation) -> Self {
        Self(1 << op.0)
    }

    fn contains(self, op: Operation) -> bool {
        self.0 & (1 << op.0) != 0
    }
}

/// A name pattern: `*` matches any run of characters, `?` any one; anything else is literal.
/// So `orders` is literal, `orders.*` a prefix, `*` everything, `*.audit` a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Any,
    Literal(String),
    /// As written: the prefix and its trailing `*`.
    Prefix(String),
    Glob(String),
}

impl Pattern {
    pub fn parse(text: &str) -> Self {
        if text == "*" {
            return Pattern::Any;
        }
        match text.strip_suffix('*') {
            Some(prefix) if !prefix.contains(['*', '?']) => Pattern::Prefix(text.to_owned()),
            _ if text.contains(['*', '?']) => Pattern::Glob(text.to_owned()),
            _ => Pattern::Literal(text.to_owned()),
        }
    }

    /// The pattern as written: what a protocol whose names are not globs (MQTT topic
    /// filters) judges itself ([`PrincipalPolicy::allows_judged`]).
    pub fn text(&self) -> &str {
        match self {
            Pattern::Any => "*",
            Pattern::Literal(text) | Pattern::Prefix(text) | Pattern::Glob(text) => text,
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Literal(literal) => literal == name,
            Pattern::Prefix(text) => name.starts_with(&text[..text.len() - 1]),
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

/// One rule as written (in a policy file, or inline in a control-plane resource).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub effect: Effect,
    pub principals: Vec<String>,
    /// `TYPE:PATTERN`, or the vocabulary's singleton type alone (Kafka: `topic:orders.*`, `cluster`).
    pub resources: Vec<String>,
    pub operations: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    rules: Vec<RuleSpec>,
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
    /// Whether the rule speaks of `op` on a resource of this type whose pattern `hit` accepts.
    fn covers(&self, resource: ResourceType, op: Operation, hit: impl Fn(&Pattern) -> bool) -> bool {
        self.operations.contains(op) && self.resources.iter().any(|(t, p)| *t == resource && hit(p))
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Reads and checks a policy file; errors name the file and the rule's key.
    pub fn load(file: &Path, words: &Vocabulary) -> Result<Self, ConfigError> {
        let parsed: PolicyFile = load_yaml_file(file)?;
        Self::from_file(parsed, file, words)
    }

    /// Parses policy text (tests and tools); `file` is only used in errors.
    pub fn parse(text: &str, file: &Path, words: &Vocabulary) -> Result<Self, ConfigError> {
        let parsed: PolicyFile = crate::config::parse_yaml(text, file)?;
        Self::from_file(parsed, file, words)
    }

    /// Checks rules written inline elsewhere (a control-plane resource); errors name `origin`
    /// and the rule's key (`rules[2].operations[0]`).
    pub fn from_rules(rules: Vec<RuleSpec>, origin: &Path, words: &Vocabulary) -> Result<Self, ConfigError> {
        Self::from_file(PolicyFile { rules }, origin, words)
    }

    fn from_file(parsed: PolicyFile, file: &Path, words: &Vocabulary) -> Result<Self, ConfigError> {
        let mut rules = Vec::with_capacity(parsed.rules.len());
        for (i, rule) in parsed.rules.into_iter().enumerate() {
            let key = |field: &str| format!("rules[{i}].{field}");
            if rule.principals.is_empty() {
                return Err(invalid(file, &key("principals"), "a rule needs at least one principal (`*` for anyone)"));
            }
            let mut resources = Vec::with_capacity(rule.resources.len());
            for (j, text) in rule.resources.iter().enumerate() {
                let resource = words.resource(text).ok_or_else(|| {
                    invalid(
                        file,
                        &format!("rules[{i}].resources[{j}]"),
                        format!("`{text}` is not a resource; expected one of {}", words.resource_forms()),
                    )
                })?;
                resources.push(resource);
            }
            if resources.is_empty() {
                return Err(invalid(file, &key("resources"), "a rule needs at least one resource"));
            }
            let mut operations = OperationSet::default();
            for (j, word) in rule.operations.iter().enumerate() {
                let set = words.operation(word).ok_or_else(|| {
                    invalid(
                        file,
                        &format!("rules[{i}].operations[{j}]"),
                        format!("unknown operation `{word}`; expected one of all, {}", words.operations.join(", ")),
                    )
                })?;
                operations.0 |= set.0;
            }
            if operations.0 == 0 {
                return Err(invalid(file, &key("operations"), "a rule needs at least one operation"));
            }
            if rule.effect == Effect::Allow {
                operations = words.implied(operations);
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

    /// Every pattern the rules give resources of this type, with the rule's index: what a
    /// protocol whose names are not globs checks are its own kind of pattern (MQTT filters).
    pub fn patterns(&self, resource: ResourceType) -> impl Iterator<Item = (usize, &Pattern)> {
        self.rules.iter().enumerate().flat_map(move |(i, rule)| {
            rule.resources.iter().filter(move |(t, _)| *t == resource).map(move |(_, p)| (i, p))
        })
    }
}

/// The rules of a policy that name one principal: what a connection consults per request.
#[derive(Debug, Clone)]
pub struct PrincipalPolicy {
    rules: Vec<Rule>,
}

impl PrincipalPolicy {
    /// Whether `op` on the resource is allowed: some allow rule covers it and no deny rule does.
    pub fn allows(&self, resource: ResourceType, name: &str, op: Operation) -> bool {
        self.allows_judged(resource, op, |pattern| pattern.matches(name), |pattern| pattern.matches(name))
    }

    /// As [`PrincipalPolicy::allows`], for a protocol that judges its own patterns (MQTT: a
    /// rule's pattern is a topic filter): allowed when `allow` accepts the pattern of some
    /// allow rule for `op` and `deny` accepts that of no deny rule.
    pub fn allows_judged(
        &self,
        resource: ResourceType,
        op: Operation,
        allow: impl Fn(&Pattern) -> bool,
        deny: impl Fn(&Pattern) -> bool,
    ) -> bool {
        let mut allowed = false;
        for rule in &self.rules {
            match rule.effect {
                Effect::Deny if rule.covers(resource, op, &deny) => return false,
                Effect::Allow if !allowed => allowed = rule.covers(resource, op, &allow),
                _ => {}
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

    // A protocol's words, as a sidecar registers them (these are Kafka's, in part).
    const TOPIC: ResourceType = ResourceType(0);
    const GROUP: ResourceType = ResourceType(1);
    const TX: ResourceType = ResourceType(2);
    const READ: Operation = Operation(0);
    const WRITE: Operation = Operation(1);
    const DESCRIBE: Operation = Operation(2);
    const DESCRIBE_CONFIGS: Operation = Operation(3);
    const ALTER_CONFIGS: Operation = Operation(4);
    static WORDS: Vocabulary = Vocabulary {
        resource_types: &["topic", "group", "transactional-id", "cluster"],
        singleton: Some(ResourceType(3)),
        operations: &["read", "write", "describe", "describe-configs", "alter-configs"],
        aliases: &[("produce", WRITE)],
        implies: &[(&[READ, WRITE], DESCRIBE), (&[ALTER_CONFIGS], DESCRIBE_CONFIGS)],
    };

    fn policy(text: &str) -> Arc<Policy> {
        Arc::new(Policy::parse(text, Path::new("policy.yaml"), &WORDS).unwrap())
    }

    fn err(text: &str) -> String {
        Policy::parse(text, Path::new("policy.yaml"), &WORDS).unwrap_err().to_string()
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
        assert!(orders.allows(TOPIC, "orders", WRITE));
        assert!(orders.allows(TOPIC, "orders.eu", WRITE));
        assert!(!orders.allows(TOPIC, "ordersx", WRITE), "literal is not a prefix");
        assert!(orders.allows(TOPIC, "payments", READ));
        assert!(!orders.allows(TOPIC, "payments", WRITE), "default deny");
        assert!(orders.allows(TX, "orders-1", WRITE));
        assert!(!orders.allows(GROUP, "billing", READ));
        assert!(orders.allows(GROUP, "shop-1", READ));
        // Deny wins over the prefix allow.
        assert!(!orders.allows(TOPIC, "orders.secret", WRITE));
        assert!(!orders.allows(TOPIC, "orders.secret", DESCRIBE));

        let stranger = p.for_principal(Some("spiffe://mesh/ns/other/sa/x"));
        assert!(!stranger.allows(TOPIC, "orders", READ));
        let anonymous = p.for_principal(None);
        assert!(!anonymous.allows(TOPIC, "orders", DESCRIBE));
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
        assert!(a.allows(TOPIC, "u", DESCRIBE), "write implies describe");
        assert!(a.allows(TOPIC, "c", DESCRIBE_CONFIGS));
        assert!(!a.allows(TOPIC, "c", DESCRIBE), "alter-configs does not imply describe");
        // A deny of describe denies describe only.
        assert!(!a.allows(TOPIC, "t", DESCRIBE));
        assert!(a.allows(TOPIC, "t", READ));
        assert!(a.allows_any(TOPIC, WRITE));
        assert!(!a.allows_any(GROUP, READ));
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
