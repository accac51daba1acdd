//! `/consumers/{group}/…`: consumer-group instances, as the Strimzi HTTP bridge offers them.
//!
//! ```text
//! POST   /consumers/{group}                                  {"name", "format", "auto.offset.reset", ...}
//!                                                            → {"instance_id", "base_uri"}
//! POST   /consumers/{group}/instances/{name}/subscription    {"topics": [...]}
//! GET    /consumers/{group}/instances/{name}/subscription
//! DELETE /consumers/{group}/instances/{name}/subscription
//! GET    /consumers/{group}/instances/{name}/records?timeout=ms&max_bytes=n
//! POST   /consumers/{group}/instances/{name}/offsets         {"offsets": [...]} or no body: all polled
//! POST   /consumers/{group}/instances/{name}/positions       {"offsets": [...]}
//! POST   /consumers/{group}/instances/{name}/positions/beginning|end   {"partitions": [...]}
//! DELETE /consumers/{group}/instances/{name}
//! ```
//!
//! Each instance is one member of the Kafka consumer group, and belongs to the principal that
//! created it: to anyone else it does not exist (404), so its records, positions and commits are
//! its creator's alone. Creating one needs `read` on the group; subscribing, `read` on every
//! topic; polling and committing are judged again against the policy as it is then. An instance
//! nobody used for `consumer_idle_timeout_ms` is deleted (its partitions go to the group's other
//! members); the gateway holds at most `max_consumers`, `max_consumers_per_principal` each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use weir_core::control::FlowDirection;
use weir_gateway::group::{GroupMember, MemberError, MemberSettings, Position, Seek};

use crate::api::{full, json, parse, ApiError, Body};
use crate::identity::Caller;
use crate::records::{Format, RecordOut};
use crate::server::{authorize, read_body, Asked, Shared};

/// The gateway's consumer instances.
#[derive(Default)]
pub(crate) struct Consumers {
    instances: Mutex<HashMap<(String, String), Arc<Instance>>>,
}

/// One instance: a group member and whose it is.
struct Instance {
    group: String,
    name: String,
    principal: String,
    format: Format,
    /// How long a poll waits when its request does not say.
    default_wait: Duration,
    /// Requests to one instance take turns; None once deleted.
    member: tokio::sync::Mutex<Option<GroupMember>>,
    topics: Mutex<Vec<String>>,
    last_used: Mutex<Instant>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Consumers {
    /// Deletes instances idle longer than `idle`, checking now and then until `stop`.
    pub(crate) async fn expire(self: Arc<Self>, idle: Duration, stop: CancellationToken) {
        let mut every = tokio::time::interval((idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10)));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            let expired: Vec<Arc<Instance>> = {
                let mut instances = lock(&self.instances);
                let old: Vec<_> = instances
                    .iter()
                    .filter(|(_, i)| lock(&i.last_used).elapsed() > idle)
                    .map(|(key, _)| key.clone())
                    .collect();
                old.iter().filter_map(|key| instances.remove(key)).collect()
            };
            for instance in expired {
                tracing::info!(
                    group = instance.group,
                    name = instance.name,
                    principal = instance.principal,
                    idle_ms = idle.as_millis() as u64,
                    "HTTP consumer instance deleted: idle"
                );
                instance.close().await;
            }
        }
        let all: Vec<Arc<Instance>> = lock(&self.instances).drain().map(|(_, i)| i).collect();
        for instance in all {
            instance.close().await;
        }
    }

    /// The instance `name` of `group`, if `who` made it.
    fn find(&self, group: &str, name: &str, who: &Caller) -> Result<Arc<Instance>, ApiError> {
        let found = lock(&self.instances).get(&(group.to_owned(), name.to_owned())).cloned();
        match found {
            Some(instance) if instance.principal == who.principal => {
                *lock(&instance.last_used) = Instant::now();
                Ok(instance)
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("group {group} has no consumer instance {name} of {}", who.principal),
            )),
        }
    }
}

impl Instance {
    async fn close(&self) {
        if let Some(member) = self.member.lock().await.take() {
            member.close().await;
        }
    }
}

/// `POST /consumers/{group}`'s body (Strimzi's names).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default, rename = "auto.offset.reset")]
    auto_offset_reset: Option<String>,
    #[serde(default, rename = "enable.auto.commit")]
    enable_auto_commit: Option<bool>,
    #[serde(default, rename = "fetch.min.bytes")]
    fetch_min_bytes: Option<u32>,
    #[serde(default, rename = "consumer.request.timeout.ms")]
    request_timeout_ms: Option<u64>,
    #[serde(default, rename = "isolation.level")]
    isolation_level: Option<String>,
}

#[derive(Serialize)]
struct Created {
    instance_id: String,
    base_uri: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    topic_pattern: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetsRequest {
    offsets: Vec<OffsetIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetIn {
    topic: String,
    partition: i32,
    offset: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionsRequest {
    partitions: Vec<PartitionIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionIn {
    topic: String,
    partition: i32,
}

fn no_content() -> Response<Body> {
    let mut response = Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn not_allowed(allowed: &str) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("only {allowed} here"))
}

/// A group or instance name as a path segment may carry it.
fn check_name(kind: &str, name: &str) -> Result<(), ApiError> {
    let fine = !name.is_empty()
        && name.len() <= 249
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fine {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{kind} `{name}`: expected 1 to 249 of a-z, A-Z, 0-9, '.', '_', '-'"),
        ))
    }
}

fn member_error(error: MemberError) -> ApiError {
    match error {
        MemberError::NotAssigned { .. } => ApiError::new(StatusCode::CONFLICT, error.to_string()),
        MemberError::Kafka(_) => ApiError::new(StatusCode::BAD_GATEWAY, error.to_string()),
        MemberError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    }
}

/// Serves a request under `/consumers/` (`rest`: the path's segments after it).
pub(crate) async fn route(
    shared: &Shared,
    request: Request<Incoming>,
    rest: &[&str],
    who: Caller,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let method = request.method().clone();
    match (rest, &method) {
        ([group], &Method::POST) => create(shared, request, group, &who, peer).await,
        ([_], _) => Err(not_allowed("POST (create an instance)")),
        ([group, "instances", name, more @ ..], _) => {
            check_name("group", group)?;
            let instance = shared.consumers.find(group, name, &who)?;
            match (more, &method) {
                ([], &Method::DELETE) => delete(shared, &instance).await,
                ([], _) => Err(not_allowed("DELETE (delete the instance)")),
                (["subscription"], &Method::POST) => subscribe(shared, request, &instance, &who, peer).await,
                (["subscription"], &Method::GET) => subscription(&instance).await,
                (["subscription"], &Method::DELETE) => unsubscribe(&instance).await,
                (["subscription"], _) => Err(not_allowed("POST, GET or DELETE")),
                (["records"], &Method::GET) => records(shared, &request, &instance, &who, peer).await,
                (["records"], _) => Err(not_allowed("GET")),
                (["offsets"], &Method::POST) => commit(shared, request, &instance, &who, peer).await,
                (["offsets"], _) => Err(not_allowed("POST")),
                (["positions"], &Method::POST) => seek(shared, request, &instance, None).await,
                (["positions", "beginning"], &Method::POST) => {
                    seek(shared, request, &instance, Some(Seek::Beginning)).await
                }
                (["positions", "end"], &Method::POST) => seek(shared, request, &instance, Some(Seek::End)).await,
                (["positions", ..], _) => Err(not_allowed("POST")),
                _ => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no such route under a consumer instance; see /openapi.json",
                )),
            }
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no such route under /consumers; see /openapi.json")),
    }
}

async fn create(
    shared: &Shared,
    request: Request<Incoming>,
    group: &str,
    who: &Caller,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, ApiError> {
    check_name("group", group)?;
    authorize(
        shared,
        who,
        peer,
        Asked { api: "consumers", operation: "read", resource_type: "group", resource: group },
    )?;
    let host = request.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    let body = read_body(shared, request.into_body()).await?;
    let asked: CreateRequest = parse(if body.is_empty() { b"{}" } else { &body }, "a consumer to create")?;
    let limits = &shared.config.limits;
    let name = match asked.name {
        Some(name) => name,
        None => format!("weir-{:016x}", rand_id()),
    };
    check_name("name", &name)?;
    let reset = asked.auto_offset_reset.unwrap_or_else(|| "latest".into());
    if !matches!(reset.as_str(), "earliest" | "latest") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("auto.offset.reset: `{reset}`: expected earliest or latest"),
        ));
    }
    let isolation = asked.isolation_level.unwrap_or_else(|| "read_committed".into());
    if !matches!(isolation.as_str(), "read_committed" | "read_uncommitted") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("isolation.level: `{isolation}`: expected read_committed or read_uncommitted"),
        ));
    }
    let idle = Duration::from_millis(limits.consumer_idle_timeout_ms);
    let settings = MemberSettings {
        group: group.to_owned(),
        client_id: format!("weir-http-{name}"),
        auto_offset_reset: reset,
        auto_commit: asked.enable_auto_commit.unwrap_or(true),
        // The gateway deletes an idle instance before the group would notice it gone.
        max_poll_interval: idle + Duration::from_secs(60),
        fetch_min_bytes: asked.fetch_min_bytes,
        isolation_level: isolation,
    };
    let member = GroupMember::new(&shared.config.kafka, &settings)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("cannot create the consumer: {e}")))?;
    let instance = Arc::new(Instance {
        group: group.to_owned(),
        name: name.clone(),
        principal: who.principal.clone(),
        format: asked.format.unwrap_or(Format::Binary),
        default_wait: Duration::from_millis(asked.request_timeout_ms.unwrap_or(1000).min(limits.max_poll_wait_ms)),
        member: tokio::sync::Mutex::new(Some(member)),
        topics: Mutex::default(),
        last_used: Mutex::new(Instant::now()),
    });
    let refused = {
        let mut instances = lock(&shared.consumers.instances);
        let own = instances.values().filter(|i| i.principal == who.principal).count();
        let key = (group.to_owned(), name.clone());
        if instances.contains_key(&key) {
            Some(ApiError::new(StatusCode::CONFLICT, format!("group {group} already has a consumer instance {name}")))
        } else if instances.len() >= limits.max_consumers {
            Some(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("the gateway holds {} consumer instances, its most", limits.max_consumers),
            ))
        } else if own >= limits.max_consumers_per_principal {
            Some(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{} holds {own} consumer instances, the most one principal may", who.principal),
            ))
        } else {
            instances.insert(key, instance.clone());
            None
        }
    };
    if let Some(refused) = refused {
        instance.close().await;
        return Err(refused);
    }
    tracing::info!(%peer, group, name, principal = who.principal, "HTTP consumer instance created");
    let scheme = if shared.config.tls.is_some() { "https" } else { "http" };
    let base_uri = format!("{scheme}://{host}/consumers/{group}/instances/{name}");
    Ok(json(StatusCode::OK, &Created { instance_id: name, base_uri }))
}

/// A name nobody chose: the clock's nanoseconds mixed with a counter.
fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mixed = nanos ^ NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    mixed.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (mixed >> 31)
}

async fn delete(shared: &Shared, instance: &Arc<Instance>) -> Result<Response<Body>, ApiError> {
    lock(&shared.consumers.instances).remove(&(instance.group.clone(), instance.name.clone()));
    instance.close().await;
    tracing::info!(
        group = instance.group,
        name = instance.name,
        principal = instance.principal,
        "HTTP consumer instance deleted"
    );
    Ok(no_content())
}

/// The member, unless the instance was deleted meanwhile.
fn gone(instance: &Instance) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("consumer instance {} of group {} was deleted", instance.name, instance.group),
    )
}

async fn subscribe(
    shared: &Shared,
    request: Request<Incoming>,
    instance: &Instance,
    who: &Caller,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(shared, request.into_body()).await?;
    let asked: SubscribeRequest = parse(&body, "a subscription")?;
    if asked.topic_pattern.is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "topic_pattern: not offered (a pattern could reach topics the policy never judged); name the topics",
        ));
    }
    if asked.topics.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "topics: no topic"));
    }
    for (i, topic) in asked.topics.iter().enumerate() {
        weir_kafka_proxy::vocabulary::check_topic_name(topic)
            .map_err(|why| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("topics[{i}]: {why}")))?;
        authorize(
            shared,
            who,
            peer,
            Asked { api: "consumers", operation: "read", resource_type: "topic", resource: topic },
        )?;
    }
    let guard = instance.member.lock().await;
    let member = guard.as_ref().ok_or_else(|| gone(instance))?;
    member.subscribe(&asked.topics).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    *lock(&instance.topics) = asked.topics;
    Ok(no_content())
}

async fn subscription(instance: &Instance) -> Result<Response<Body>, ApiError> {
    let guard = instance.member.lock().await;
    let member = guard.as_ref().ok_or_else(|| gone(instance))?;
    let assigned = member.assignment().map_err(|e| member_error(e.into()))?;
    let mut partitions: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for (topic, partition) in assigned {
        partitions.entry(topic).or_default().push(partition);
    }
    let partitions: Vec<_> = partitions.into_iter().map(|(topic, p)| serde_json::json!({ topic: p })).collect();
    let topics = lock(&instance.topics).clone();
    Ok(json(StatusCode::OK, &serde_json::json!({"topics": topics, "partitions": partitions})))
}

async fn unsubscribe(instance: &Instance) -> Result<Response<Body>, ApiError> {
    let guard = instance.member.lock().await;
    let member = guard.as_ref().ok_or_else(|| gone(instance))?;
    member.unsubscribe();
    lock(&instance.topics).clear();
    Ok(no_content())
}

/// The policy as it is now: the group and every subscribed topic.
fn still_allowed(
    shared: &Shared,
    instance: &Instance,
    who: &Caller,
    peer: std::net::SocketAddr,
) -> Result<(), ApiError> {
    authorize(
        shared,
        who,
        peer,
        Asked { api: "consumers", operation: "read", resource_type: "group", resource: &instance.group },
    )?;
    for topic in lock(&instance.topics).iter() {
        authorize(
            shared,
            who,
            peer,
            Asked { api: "consumers", operation: "read", resource_type: "topic", resource: topic },
        )?;
    }
    Ok(())
}

async fn records(
    shared: &Shared,
    request: &Request<Incoming>,
    instance: &Instance,
    who: &Caller,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let accept = request.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok());
    if !instance.format.accepted_by(accept) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("this instance gives records as {}; ask with that Accept header", instance.format.content_type()),
        ));
    }
    let limits = &shared.config.limits;
    let (mut wait, mut max_bytes) = (instance.default_wait, limits.max_response_bytes);
    for pair in request.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = value.parse::<u64>().map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("query parameter {name}={value}: expected a number"),
            )
        });
        match name {
            "timeout" => wait = Duration::from_millis(number?.min(limits.max_poll_wait_ms)),
            "max_bytes" => max_bytes = (number? as usize).min(limits.max_response_bytes),
            other => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("unknown query parameter `{other}`: expected timeout or max_bytes"),
                ))
            }
        }
    }
    still_allowed(shared, instance, who, peer)?;
    let guard = instance.member.lock().await;
    let member = guard.as_ref().ok_or_else(|| gone(instance))?;
    let polled = member.poll(wait, limits.max_records, max_bytes).await;
    drop(guard);
    *lock(&instance.last_used) = Instant::now();
    // Per topic polled, for the mesh's topology: a poll's records are from few topics.
    let mut read: Vec<(&str, u64, u64)> = Vec::new();
    for record in &polled {
        let bytes = (record.value.len() + record.key.as_ref().map_or(0, |k| k.len())) as u64;
        match read.iter_mut().find(|(topic, ..)| *topic == &*record.topic) {
            Some((_, records, total)) => (*records, *total) = (*records + 1, *total + bytes),
            None => read.push((&record.topic, 1, bytes)),
        }
    }
    let flows = &shared.metrics.flows;
    for (topic, records, bytes) in read {
        flows.counters(&who.principal, &instance.name, topic, FlowDirection::Consume).count(records, bytes);
    }
    if !polled.is_empty() {
        flows.set_group(&who.principal, &instance.name, &instance.group);
    }
    let out: Vec<RecordOut<'_>> = polled.iter().map(|record| RecordOut { record, format: instance.format }).collect();
    let mut response = json(StatusCode::OK, &out);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(instance.format.content_type()));
    Ok(response)
}

async fn commit(
    shared: &Shared,
    request: Request<Incoming>,
    instance: &Instance,
    who: &Caller,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(shared, request.into_body()).await?;
    let offsets = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let asked: OffsetsRequest = parse(&body, "offsets to commit")?;
        Some(
            asked
                .offsets
                .into_iter()
                .map(|o| Position { topic: o.topic, partition: o.partition, offset: o.offset })
                .collect::<Vec<_>>(),
        )
    };
    authorize(
        shared,
        who,
        peer,
        Asked { api: "consumers", operation: "read", resource_type: "group", resource: &instance.group },
    )?;
    for at in offsets.iter().flatten() {
        authorize(
            shared,
            who,
            peer,
            Asked { api: "consumers", operation: "read", resource_type: "topic", resource: &at.topic },
        )?;
    }
    let guard = instance.member.lock().await;
    let member = guard.as_ref().ok_or_else(|| gone(instance))?;
    member.commit(offsets).await.map_err(member_error)?;
    Ok(no_content())
}

async fn seek(
    shared: &Shared,
    request: Request<Incoming>,
    instance: &Instance,
    to: Option<Seek>,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(shared, request.into_body()).await?;
    let partitions: Vec<(String, i32, Seek)> = match to {
        None => {
            let asked: OffsetsRequest = parse(&body, "positions")?;
            asked.offsets.into_iter().map(|o| (o.topic, o.partition, Seek::Offset(o.offset))).collect()
        }
        Some(to) => {
            let asked: PartitionsRequest = parse(&body, "partitions")?;
            asked.partitions.into_iter().map(|p| (p.topic, p.partition, to)).collect()
        }
    };
    let guard = instance.member.lock().await;
    let member = guard.as_ref().ok_or_else(|| gone(instance))?;
    member.seek(partitions).await.map_err(member_error)?;
    Ok(no_content())
}
