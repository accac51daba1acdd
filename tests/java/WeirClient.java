// WeirClient: a real Java Kafka client for Weir's integration tests.
//
// Single-file program, no build step; run it on the Kafka classpath:
//   java -cp "$(scripts/kafka.sh classpath)" tests/java/WeirClient.java <command> --bootstrap HOST:PORT ...
//
// Commands (results on stdout as `key=value` lines, diagnostics on stderr,
// exit 0 on success, 1 on any failure, 2 on bad usage):
//   produce      --topic T --count N [--compression none|gzip|snappy|lz4|zstd]
//                [--acks all|1|0] [--idempotent] [--prefix P] [--pad BYTES] [--throttle-metrics]
//                [--json-values]
//                  record i (0..N-1): key k-<i>, value P-<i> (P defaults to "value"; --pad
//                  appends that many '.'; --json-values makes it {"n":<i>,"value":"P-<i>"}),
//                  headers dup:a and dup:b. Prints produced=N;
//                  --throttle-metrics then prints the producer's produce-throttle-time-avg
//                  and -max (ms) as throttle-avg-ms=<x> throttle-max-ms=<y>.
//   produce-while --topic T --stop-file F [--interval-ms 100]
//                  One producer, one record at a time until the file F exists: prints
//                  `sent i ok` or `sent i error=<exception class>` per record as it completes,
//                  then produce-while=done. For policies that change under a live client.
//   consume      --topic T --count N [--group G] [--isolation read_committed|read_uncommitted]
//                [--pattern REGEX]
//                  From the beginning (without --group: all partitions assigned, no group).
//                  Prints `record partition=<p> offset=<o> key=<k> value=<v> headers=<k1:v1,k2:v2>`
//                  per record, then consumed=N; with --group, commits exactly the records
//                  printed. Fewer than N records before the timeout is a failure.
//                  --pattern (with --group and --group-protocol consumer) subscribes to the
//                  topics matching REGEX, resolved by the broker (KIP-848), instead of --topic,
//                  and prints `record topic=<t> partition=...`.
//   txn          --topic T --transactional-id ID --commit-count N --abort-count M
//                  Commits values committed-<i>, then aborts values aborted-<i>.
//                  Prints committed=N aborted=M.
//   admin        --op create-topic|delete-topic|describe-configs|list-groups|describe-cluster|cluster-admin
//                     |list-share-group-offsets|alter-share-group-offsets|delete-share-group-offsets
//                [--topic T] [--partitions P] [--replication R] [--broker ID] [--group G]
//                  create-topic:     created topic=T partitions=P replication=R
//                  delete-topic:     deleted topic=T
//                  describe-configs: config name=<n> value=<v> source=<s>  (of --topic T or --broker ID)
//                  list-groups:      group id=<g> type=<t> protocol=<p> state=<s> ..., then groups=<n>
//                  describe-cluster: cluster id=<id> controller=<id>, then one
//                                    node id=<id> host=<host> port=<port> per broker
//                  cluster-admin:    tries, on one Admin client, create-acls, delete-acls,
//                                    elect-leaders (partition 0 of --topic), alter-quotas,
//                                    alter-scram, describe-log-dirs (--broker ID), then lists
//                                    topics; prints `op=<name> error=<exception class or none>`
//                                    per call, then topics=<n>
//                  list-share-group-offsets --group G [--topic T]: the share group's offsets
//                                    (all, or partition 0 of T), one
//                                    `offset topic=<t> partition=<p> start=<o>` per partition
//                                    (sorted), then share-offsets=<n>
//                  alter-share-group-offsets --group G --topic T: start offset 0 for
//                                    partition 0 of T; prints altered topic=T
//                  delete-share-group-offsets --group G --topic T: prints deleted-offsets topic=T
//   group-member --topic T --group G --member-id-label L --duration-ms MS
//                  Prints `assigned <p1,p2,...>` (partition numbers, sorted; empty list when
//                  nothing is assigned) whenever its assignment changes, then leaves the
//                  group after MS and prints `left label=L consumed=<n>`.
//   share-consume --topic T --group G --count N [--from-beginning]
//                  A share group member (KIP-932) that reads N records, acknowledging them.
//                  --from-beginning first sets the group's share.auto.offset.reset=earliest
//                  (an Admin call). Prints `record key=<k> value=<v>` per record, then
//                  share-consumed=N.
// Options for every command:
//   --timeout-ms MS (default 30000)  --property key=value (any client config, repeatable)
// and for consume and group-member:
//   --group-protocol classic|consumer (default classic; consumer = KIP-848 groups)
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.acl.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class WeirClient {
    // Results go to the real stdout; System.out is pointed at stderr so that
    // nothing else (e.g. the logging backend) can write to stdout.
    static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    static final class UsageException extends RuntimeException {
        UsageException(String m) { super(m); }
    }

    public static void main(String[] argv) {
        System.setOut(System.err);
        useToolsLogConfig();
        int code;
        try {
            if (argv.length == 0) throw new UsageException("missing command");
            Args a = new Args(argv[0], Arrays.copyOfRange(argv, 1, argv.length));
            switch (argv[0]) {
                case "produce" -> produce(a);
                case "produce-while" -> produceWhile(a);
                case "consume" -> consume(a);
                case "txn" -> txn(a);
                case "admin" -> admin(a);
                case "group-member" -> groupMember(a);
                case "share-consume" -> shareConsume(a);
                default -> throw new UsageException("unknown command: " + argv[0]);
            }
            code = 0;
        } catch (UsageException e) {
            System.err.println("usage error: " + e.getMessage() + " (see the header of tests/java/WeirClient.java)");
            code = 2;
        } catch (Throwable e) {
            Throwable root = e;
            while (root.getCause() != null && root.getCause() != root) root = root.getCause();
            boolean sameText = e.toString().contains(String.valueOf(root.getMessage()));
            System.err.println("error: " + e + (root != e && !sameText ? " (caused by " + root + ")" : ""));
            code = 1;
        }
        OUT.flush();
        System.exit(code);
    }

    // ------------------------------------------------------------ commands

    static void produce(Args a) throws Exception {
        String topic = a.req("--topic");
        int count = a.reqInt("--count");
        String prefix = a.opt("--prefix", "value");
        boolean idempotent = a.flag("--idempotent");
        String pad = ".".repeat(Integer.parseInt(a.opt("--pad", "0")));
        boolean json = a.flag("--json-values");
        Properties p = producerProps(a);
        p.put(ProducerConfig.ACKS_CONFIG, a.opt("--acks", "all"));
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, a.opt("--compression", "none"));
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, Boolean.toString(idempotent));
        a.applyProperties(p);
        String throttle = null;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                String value = prefix + "-" + i + pad;
                if (json) value = "{\"n\":" + i + ",\"value\":\"" + value + "\"}";
                acks.add(producer.send(record(topic, "k-" + i, value)));
            }
            producer.flush();
            for (Future<RecordMetadata> f : acks) f.get(a.timeoutMs(), TimeUnit.MILLISECONDS);
            if (a.flag("--throttle-metrics")) {
                double avg = Double.NaN, max = Double.NaN;
                for (var e : producer.metrics().entrySet()) {
                    if (!e.getKey().group().equals("producer-metrics")) continue;
                    Object v = e.getValue().metricValue();
                    if (!(v instanceof Double d)) continue;
                    if (e.getKey().name().equals("produce-throttle-time-avg")) avg = d;
                    if (e.getKey().name().equals("produce-throttle-time-max")) max = d;
                }
                throttle = "throttle-avg-ms=" + avg + " throttle-max-ms=" + max;
            }
        }
        OUT.println("produced=" + count);
        if (throttle != null) OUT.println(throttle);
    }

    static void produceWhile(Args a) throws Exception {
        String topic = a.req("--topic");
        java.nio.file.Path stop = java.nio.file.Path.of(a.req("--stop-file"));
        long interval = Long.parseLong(a.opt("--interval-ms", "100"));
        Properties p = producerProps(a);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        a.applyProperties(p);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = 0; !java.nio.file.Files.exists(stop); i++) {
                try {
                    producer.send(record(topic, "k-" + i, "value-" + i)).get(a.timeoutMs(), TimeUnit.MILLISECONDS);
                    OUT.println("sent " + i + " ok");
                } catch (ExecutionException e) {
                    OUT.println("sent " + i + " error=" + e.getCause().getClass().getSimpleName());
                }
                Thread.sleep(interval);
            }
        }
        OUT.println("produce-while=done");
    }

    static void consume(Args a) throws InterruptedException {
        String topic = a.req("--topic");
        int count = a.reqInt("--count");
        String group = a.opt("--group", null);
        String pattern = a.opt("--pattern", null);
        Properties p = consumerProps(a, group);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false"); // we commit exactly what we print
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, a.opt("--isolation", "read_uncommitted"));
        a.applyProperties(p);
        long deadline = System.currentTimeMillis() + a.timeoutMs();
        int got = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            if (pattern != null) {
                consumer.subscribe(new SubscriptionPattern(pattern));
            } else if (group != null) {
                consumer.subscribe(List.of(topic));
            } else {
                List<TopicPartition> tps = List.of();
                while (tps.isEmpty()) { // the topic may still be being created
                    if (System.currentTimeMillis() > deadline) throw new RuntimeException("topic " + topic + " not found");
                    tps = consumer.partitionsFor(topic, Duration.ofMillis(a.timeoutMs())).stream()
                            .map(pi -> new TopicPartition(topic, pi.partition())).collect(Collectors.toList());
                    if (tps.isEmpty()) Thread.sleep(200);
                }
                consumer.assign(tps);
                consumer.seekToBeginning(tps);
            }
            Map<TopicPartition, OffsetAndMetadata> done = new HashMap<>();
            while (got < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    if (got == count) break;
                    OUT.println("record " + (pattern != null ? "topic=" + r.topic() + " " : "") + "partition=" + r.partition() + " offset=" + r.offset() + " key=" + nz(r.key()) + " value=" + nz(r.value()) + " headers=" + headers(r));
                    done.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    got++;
                }
            }
            // Commit exactly what was printed, so a later consumer in the group continues from there.
            if (group != null && !done.isEmpty()) consumer.commitSync(done, Duration.ofMillis(a.timeoutMs()));
        }
        OUT.println("consumed=" + got);
        if (got < count) {
            throw new RuntimeException("timed out after " + a.timeoutMs() + " ms: consumed " + got + " of " + count + " records from " + topic);
        }
    }

    static void txn(Args a) {
        String topic = a.req("--topic");
        int commit = a.reqInt("--commit-count");
        int abort = a.reqInt("--abort-count");
        Properties p = producerProps(a);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, a.req("--transactional-id"));
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        a.applyProperties(p);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            producer.beginTransaction();
            for (int i = 0; i < commit; i++) producer.send(record(topic, "k-" + i, "committed-" + i));
            producer.commitTransaction();
            producer.beginTransaction();
            for (int i = 0; i < abort; i++) producer.send(record(topic, "k-" + i, "aborted-" + i));
            producer.flush(); // make sure the aborted records really reach the log
            producer.abortTransaction();
        }
        OUT.println("committed=" + commit + " aborted=" + abort);
    }

    static void admin(Args a) throws Exception {
        String op = a.req("--op");
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a.req("--bootstrap"));
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, Integer.toString(a.timeoutMs()));
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, Integer.toString(Math.min(a.timeoutMs(), 15000)));
        a.applyProperties(p);
        long t = a.timeoutMs();
        try (Admin admin = Admin.create(p)) {
            switch (op) {
                case "create-topic" -> {
                    String topic = a.req("--topic");
                    String parts = a.opt("--partitions", null), repl = a.opt("--replication", null);
                    NewTopic nt = new NewTopic(topic,
                            parts == null ? Optional.empty() : Optional.of(Integer.parseInt(parts)),
                            repl == null ? Optional.empty() : Optional.of(Short.parseShort(repl)));
                    CreateTopicsResult r = admin.createTopics(List.of(nt));
                    r.all().get(t, TimeUnit.MILLISECONDS);
                    OUT.println("created topic=" + topic + " partitions=" + r.numPartitions(topic).get()
                            + " replication=" + r.replicationFactor(topic).get());
                }
                case "delete-topic" -> {
                    String topic = a.req("--topic");
                    admin.deleteTopics(List.of(topic)).all().get(t, TimeUnit.MILLISECONDS);
                    OUT.println("deleted topic=" + topic);
                }
                case "describe-configs" -> {
                    String broker = a.opt("--broker", null);
                    ConfigResource res = broker != null
                            ? new ConfigResource(ConfigResource.Type.BROKER, broker)
                            : new ConfigResource(ConfigResource.Type.TOPIC, a.req("--topic"));
                    Config cfg = admin.describeConfigs(List.of(res)).all().get(t, TimeUnit.MILLISECONDS).get(res);
                    List<ConfigEntry> entries = new ArrayList<>(cfg.entries());
                    entries.sort(Comparator.comparing(ConfigEntry::name));
                    for (ConfigEntry e : entries) {
                        OUT.println("config name=" + e.name() + " value=" + nz(e.value()) + " source=" + e.source());
                    }
                }
                case "list-groups" -> {
                    List<GroupListing> groups = new ArrayList<>(admin.listGroups().all().get(t, TimeUnit.MILLISECONDS));
                    groups.sort(Comparator.comparing(GroupListing::groupId));
                    for (GroupListing g : groups) {
                        OUT.println("group id=" + g.groupId() + " type=" + g.type().map(Object::toString).orElse("")
                                + " protocol=" + g.protocol() + " state=" + g.groupState().map(Object::toString).orElse(""));
                    }
                    OUT.println("groups=" + groups.size());
                }
                case "describe-cluster" -> {
                    DescribeClusterResult r = admin.describeCluster();
                    Node controller = r.controller().get(t, TimeUnit.MILLISECONDS);
                    OUT.println("cluster id=" + r.clusterId().get(t, TimeUnit.MILLISECONDS)
                            + " controller=" + (controller == null ? "" : controller.idString()));
                    List<Node> nodes = new ArrayList<>(r.nodes().get(t, TimeUnit.MILLISECONDS));
                    nodes.sort(Comparator.comparingInt(Node::id));
                    for (Node n : nodes) OUT.println("node id=" + n.id() + " host=" + n.host() + " port=" + n.port());
                }
                case "cluster-admin" -> {
                    String topic = a.req("--topic");
                    int broker = Integer.parseInt(a.req("--broker"));
                    AclBinding acl = new AclBinding(new ResourcePattern(ResourceType.TOPIC, topic, PatternType.LITERAL),
                            new AccessControlEntry("User:weir-test", "*", AclOperation.READ, AclPermissionType.ALLOW));
                    ClientQuotaAlteration quota = new ClientQuotaAlteration(
                            new ClientQuotaEntity(Map.of(ClientQuotaEntity.USER, "weir-test")),
                            List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 1024.0)));
                    Map<String, KafkaFuture<?>> calls = new LinkedHashMap<>();
                    calls.put("create-acls", admin.createAcls(List.of(acl)).all());
                    calls.put("delete-acls", admin.deleteAcls(List.of(AclBindingFilter.ANY)).all());
                    calls.put("elect-leaders",
                            admin.electLeaders(ElectionType.PREFERRED, Set.of(new TopicPartition(topic, 0))).all());
                    calls.put("alter-quotas", admin.alterClientQuotas(List.of(quota)).all());
                    calls.put("alter-scram", admin.alterUserScramCredentials(
                            List.of(new UserScramCredentialDeletion("weir-test", ScramMechanism.SCRAM_SHA_256))).all());
                    calls.put("describe-log-dirs", admin.describeLogDirs(List.of(broker)).allDescriptions());
                    for (Map.Entry<String, KafkaFuture<?>> call : calls.entrySet()) {
                        String error = "none";
                        try {
                            call.getValue().get(t, TimeUnit.MILLISECONDS);
                        } catch (java.util.concurrent.ExecutionException e) {
                            error = e.getCause().getClass().getSimpleName();
                        }
                        OUT.println("op=" + call.getKey() + " error=" + error);
                    }
                    OUT.println("topics=" + admin.listTopics().names().get(t, TimeUnit.MILLISECONDS).size());
                }
                case "list-share-group-offsets" -> {
                    String group = a.req("--group"), topic = a.opt("--topic", null);
                    ListShareGroupOffsetsSpec spec = new ListShareGroupOffsetsSpec();
                    if (topic != null) spec.topicPartitions(List.of(new TopicPartition(topic, 0)));
                    Map<TopicPartition, SharePartitionOffsetInfo> offsets = admin.listShareGroupOffsets(Map.of(group, spec))
                            .partitionsToOffsetInfo(group).get(t, TimeUnit.MILLISECONDS);
                    List<TopicPartition> parts = new ArrayList<>(offsets.keySet());
                    parts.sort(Comparator.comparing(TopicPartition::toString));
                    for (TopicPartition tp : parts) {
                        SharePartitionOffsetInfo info = offsets.get(tp);
                        OUT.println("offset topic=" + tp.topic() + " partition=" + tp.partition()
                                + " start=" + (info == null ? "" : Long.toString(info.startOffset())));
                    }
                    OUT.println("share-offsets=" + parts.size());
                }
                case "alter-share-group-offsets" -> {
                    String group = a.req("--group"), topic = a.req("--topic");
                    admin.alterShareGroupOffsets(group, Map.of(new TopicPartition(topic, 0), 0L))
                            .all().get(t, TimeUnit.MILLISECONDS);
                    OUT.println("altered topic=" + topic);
                }
                case "delete-share-group-offsets" -> {
                    String group = a.req("--group"), topic = a.req("--topic");
                    admin.deleteShareGroupOffsets(group, Set.of(topic)).all().get(t, TimeUnit.MILLISECONDS);
                    OUT.println("deleted-offsets topic=" + topic);
                }
                default -> throw new UsageException("unknown --op " + op);
            }
        }
    }

    static void groupMember(Args a) {
        String topic = a.req("--topic");
        String group = a.req("--group");
        String label = a.req("--member-id-label");
        long duration = a.reqInt("--duration-ms");
        Properties p = consumerProps(a, group);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "weir-" + label);
        a.applyProperties(p);
        long end = System.currentTimeMillis() + duration;
        long consumed = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            // The assignment as the rebalance callbacks describe it; printed after each
            // callback, and checked against consumer.assignment() after each poll.
            Set<Integer> current = new TreeSet<>();
            String[] last = {null};
            java.util.function.Consumer<Collection<Integer>> report = now -> {
                String s = new TreeSet<>(now).stream().map(String::valueOf).collect(Collectors.joining(","));
                if (!s.equals(last[0])) {
                    last[0] = s;
                    OUT.println("assigned " + s);
                    System.err.println("[" + label + "] assigned partitions [" + s + "] of " + topic);
                }
            };
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    ps.forEach(tp -> current.remove(tp.partition()));
                }
                public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                    ps.forEach(tp -> current.add(tp.partition()));
                    report.accept(current);
                }
                public void onPartitionsLost(Collection<TopicPartition> ps) {
                    ps.forEach(tp -> current.remove(tp.partition()));
                    report.accept(current);
                }
            });
            while (System.currentTimeMillis() < end) {
                consumed += consumer.poll(Duration.ofMillis(Math.max(1, Math.min(100, end - System.currentTimeMillis())))).count();
                if (last[0] != null) {
                    report.accept(consumer.assignment().stream().map(TopicPartition::partition).collect(Collectors.toList()));
                }
            }
        } // close() leaves the group, so the other members rebalance right away
        OUT.println("left label=" + label + " consumed=" + consumed);
    }

    // ------------------------------------------------------------ helpers

    /** Log like the Kafka tools (kafka/log4j2-tools.properties: WARN, one line each, stderr). */
    static void useToolsLogConfig() {
        if (System.getProperty("log4j2.configurationFile") != null) return;
        String src = System.getProperty("jdk.launcher.sourcefile");
        if (src != null) {
            java.nio.file.Path cfg = java.nio.file.Path.of(src).toAbsolutePath().getParent()
                    .resolve("../../kafka/log4j2-tools.properties").normalize();
            if (java.nio.file.Files.isRegularFile(cfg)) {
                System.setProperty("log4j2.configurationFile", cfg.toString());
                return;
            }
        }
        System.setProperty("org.apache.logging.log4j.level", "WARN");
    }

    static ProducerRecord<String, String> record(String topic, String key, String value) {
        ProducerRecord<String, String> r = new ProducerRecord<>(topic, key, value);
        r.headers().add("dup", "a".getBytes(StandardCharsets.UTF_8));
        r.headers().add("dup", "b".getBytes(StandardCharsets.UTF_8));
        return r;
    }

    static Properties producerProps(Args a) {
        Properties p = new Properties();
        int t = a.timeoutMs();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a.req("--bootstrap"));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, Integer.toString(Math.min(t, 15000)));
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, Integer.toString(Math.max(t, Math.min(t, 15000) + 5)));
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, Integer.toString(t));
        return p;
    }

    static void shareConsume(Args a) throws Exception {
        String topic = a.req("--topic");
        String group = a.req("--group");
        int count = a.reqInt("--count");
        if (a.flag("--from-beginning")) {
            Properties ap = new Properties();
            ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a.req("--bootstrap"));
            a.applyProperties(ap);
            try (Admin admin = Admin.create(ap)) {
                ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
                AlterConfigOp op = new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET);
                admin.incrementalAlterConfigs(Map.of(res, List.of(op))).all().get(a.timeoutMs(), TimeUnit.MILLISECONDS);
            }
        }
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, a.req("--bootstrap"));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        a.applyProperties(p);
        long end = System.currentTimeMillis() + a.timeoutMs();
        int got = 0;
        try (KafkaShareConsumer<String, String> consumer = new KafkaShareConsumer<>(p)) {
            consumer.subscribe(List.of(topic));
            while (got < count) {
                if (System.currentTimeMillis() > end) {
                    throw new RuntimeException("share-consumed " + got + " of " + count + " before the timeout");
                }
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    OUT.println("record key=" + nz(r.key()) + " value=" + nz(r.value()));
                    got++;
                }
                consumer.commitSync();
            }
        }
        OUT.println("share-consumed=" + got);
    }

    static Properties consumerProps(Args a, String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, a.req("--bootstrap"));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, Integer.toString(Math.min(a.timeoutMs(), 15000)));
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, Integer.toString(a.timeoutMs()));
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, a.opt("--group-protocol", "classic"));
        } else {
            p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        }
        return p;
    }

    static String headers(ConsumerRecord<String, String> r) {
        List<String> out = new ArrayList<>();
        for (Header h : r.headers()) {
            out.add(h.key() + ":" + (h.value() == null ? "" : new String(h.value(), StandardCharsets.UTF_8)));
        }
        return String.join(",", out);
    }

    static String nz(String s) { return s == null ? "" : s; }

    /** `--name value` options, `--flag` switches and repeatable `--property k=v`. */
    static final class Args {
        static final Set<String> COMMON = Set.of("--bootstrap", "--timeout-ms", "--property");
        static final Set<String> FLAGS = Set.of("--idempotent", "--from-beginning", "--throttle-metrics", "--json-values");
        static final Map<String, Set<String>> ALLOWED = Map.of(
                "produce", Set.of("--topic", "--count", "--compression", "--acks", "--idempotent", "--prefix", "--pad", "--throttle-metrics", "--json-values"),
                "produce-while", Set.of("--topic", "--stop-file", "--interval-ms"),
                "consume", Set.of("--topic", "--count", "--group", "--isolation", "--group-protocol", "--pattern"),
                "txn", Set.of("--topic", "--transactional-id", "--commit-count", "--abort-count"),
                "admin", Set.of("--op", "--topic", "--partitions", "--replication", "--broker", "--group"),
                "group-member", Set.of("--topic", "--group", "--member-id-label", "--duration-ms", "--group-protocol"),
                "share-consume", Set.of("--topic", "--group", "--count", "--from-beginning"));
        private final Map<String, String> values = new HashMap<>();
        private final Set<String> flags = new HashSet<>();
        private final List<String> properties = new ArrayList<>();

        Args(String command, String[] argv) {
            Set<String> allowed = ALLOWED.getOrDefault(command, Set.of());
            for (int i = 0; i < argv.length; i++) {
                String k = argv[i];
                if (!COMMON.contains(k) && !allowed.contains(k)) {
                    throw new UsageException("unknown option for " + command + ": " + k);
                }
                if (FLAGS.contains(k)) { flags.add(k); continue; }
                if (i + 1 >= argv.length) throw new UsageException(k + " needs a value");
                String v = argv[++i];
                if (k.equals("--property")) properties.add(v); else values.put(k, v);
            }
        }

        boolean flag(String k) { return flags.contains(k); }
        String opt(String k, String dflt) { return values.getOrDefault(k, dflt); }
        String req(String k) {
            String v = opt(k, null);
            if (v == null) throw new UsageException("missing " + k);
            return v;
        }
        int reqInt(String k) {
            try { return Integer.parseInt(req(k)); }
            catch (NumberFormatException e) { throw new UsageException(k + " must be a number"); }
        }
        int timeoutMs() {
            try { return Integer.parseInt(values.getOrDefault("--timeout-ms", "30000")); }
            catch (NumberFormatException e) { throw new UsageException("--timeout-ms must be a number"); }
        }

        void applyProperties(Properties p) {
            for (String kv : properties) {
                int eq = kv.indexOf('=');
                if (eq <= 0) throw new UsageException("--property needs key=value: " + kv);
                p.put(kv.substring(0, eq), kv.substring(eq + 1));
            }
        }
    }
}
