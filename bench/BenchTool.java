// bench/BenchTool.java - small helpers for bench/run.sh that Kafka's own tools do not offer.
// Run with the JDK's single-file source launcher on the Kafka classpath:
//   java -cp "$(scripts/kafka.sh classpath)" bench/BenchTool.java COMMAND ARGS...
//
//   create-topics BOOTSTRAP PARTITIONS REPLICATION TOPIC...   (one JVM for all topics)
//   delete-topics BOOTSTRAP TOPIC...
//   set-broker-default BOOTSTRAP KEY=VALUE...                (cluster-wide dynamic broker config)
//   latency BOOTSTRAP TOPIC RATE SECONDS WARMUP_SECONDS RECORD_SIZE
//
// `latency` measures real produce->consume latency at a FIXED rate (open loop): one
// producer thread sends RATE records/s (acks=1 or -Dweir.bench.acks, linger.ms=0), each carrying System.nanoTime()
// at send; a consumer in the same JVM (assigned to every partition, positioned at the end,
// default long-poll fetch settings) subtracts that stamp from nanoTime() on receipt. Records
// sent during the first WARMUP_SECONDS are received but not counted. Because the producer
// paces against its schedule and never waits for the consumer, a slow path shows up as
// latency instead of as a lower rate. Prints one line:
//   latency count=N lost=N rate=R p50_ms=.. p99_ms=.. p999_ms=.. max_ms=.. avg_ms=..
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class BenchTool {
    public static void main(String[] args) throws Exception {
        if (args.length < 1) usage();
        switch (args[0]) {
            case "create-topics" -> createTopics(args);
            case "delete-topics" -> deleteTopics(args);
            case "set-broker-default" -> setBrokerDefault(args);
            case "latency" -> latency(args);
            default -> usage();
        }
    }

    static void usage() {
        System.err.println("usage: BenchTool create-topics BOOTSTRAP PARTITIONS RF TOPIC... | "
                + "delete-topics BOOTSTRAP TOPIC... | set-broker-default BOOTSTRAP KEY=VALUE... | latency BOOTSTRAP TOPIC RATE SECONDS WARMUP_SECONDS RECORD_SIZE");
        System.exit(2);
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        return Admin.create(p);
    }

    static void createTopics(String[] a) throws Exception {
        if (a.length < 5) usage();
        int partitions = Integer.parseInt(a[2]);
        short rf = Short.parseShort(a[3]);
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 4; i < a.length; i++) topics.add(new NewTopic(a[i], partitions, rf));
        try (Admin admin = admin(a[1])) {
            admin.createTopics(topics).all().get(60, TimeUnit.SECONDS);
            // Wait until every partition has a leader, so the first run does not pay for it.
            List<String> names = topics.stream().map(NewTopic::name).toList();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (true) {
                var desc = admin.describeTopics(names).allTopicNames().get(30, TimeUnit.SECONDS);
                boolean ready = desc.values().stream().allMatch(d -> d.partitions().size() == partitions
                        && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty()));
                if (ready) break;
                if (System.nanoTime() > deadline) throw new IllegalStateException("topics have no leaders after 60s");
                Thread.sleep(200);
            }
        }
    }

    static void deleteTopics(String[] a) throws Exception {
        if (a.length < 3) usage();
        try (Admin admin = admin(a[1])) {
            admin.deleteTopics(Arrays.asList(a).subList(2, a.length)).all().get(60, TimeUnit.SECONDS);
        }
    }

    static void setBrokerDefault(String[] a) throws Exception {
        if (a.length < 3) usage();
        List<AlterConfigOp> ops = new ArrayList<>();
        for (int i = 2; i < a.length; i++) {
            String[] kv = a[i].split("=", 2);
            ops.add(new AlterConfigOp(new ConfigEntry(kv[0], kv[1]), AlterConfigOp.OpType.SET));
        }
        try (Admin admin = admin(a[1])) {
            admin.incrementalAlterConfigs(Map.of(new ConfigResource(ConfigResource.Type.BROKER, ""), ops))
                    .all().get(60, TimeUnit.SECONDS);
        }
    }

    static void latency(String[] a) throws Exception {
        if (a.length != 7) usage();
        String bootstrap = a[1], topic = a[2];
        int rate = Integer.parseInt(a[3]);
        double seconds = Double.parseDouble(a[4]), warmup = Double.parseDouble(a[5]);
        int size = Math.max(9, Integer.parseInt(a[6]));  // 8-byte stamp + warm-up flag

        Properties cp = new Properties();
        // -Dweir.bench.consumer.bootstrap: the consumer through another path than the producer,
        // to tell which direction a hop's latency comes from.
        cp.put("bootstrap.servers", System.getProperty("weir.bench.consumer.bootstrap", bootstrap));
        cp.put("enable.auto.commit", "false");
        cp.put("key.deserializer", ByteArrayDeserializer.class.getName());
        cp.put("value.deserializer", ByteArrayDeserializer.class.getName());
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        // acks: -Dweir.bench.acks (bench/run.sh --acks), default 1.
        pp.put("acks", System.getProperty("weir.bench.acks", "1"));
        pp.put("linger.ms", "0");
        pp.put("key.serializer", ByteArraySerializer.class.getName());
        pp.put("value.serializer", ByteArraySerializer.class.getName());
        // Extra client settings (TLS towards the sidecar, say) from -Dweir.client.config=FILE.
        String extra = System.getProperty("weir.client.config");
        if (extra != null && !extra.isEmpty()) {
            Properties x = new Properties();
            try (java.io.Reader r = java.nio.file.Files.newBufferedReader(java.nio.file.Path.of(extra))) { x.load(r); }
            cp.putAll(x);
            pp.putAll(x);
        }

        long total = Math.round(rate * (seconds + warmup));
        long warmupCount = Math.round(rate * warmup);
        long[] lat = new long[(int) (total - warmupCount)];
        int counted = 0;
        long received = 0;

        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp);
             KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                tps.add(new TopicPartition(pi.topic(), pi.partition()));
            }
            consumer.assign(tps);
            consumer.seekToEnd(tps);
            for (TopicPartition tp : tps) consumer.position(tp, Duration.ofSeconds(30)); // resolve now
            // Connect the producer (metadata + connection) before the clock starts.
            producer.partitionsFor(topic);

            final long periodNanos = 1_000_000_000L / rate;
            final long[] sendErrors = {0};
            Thread sender = new Thread(() -> {
                long start = System.nanoTime();
                for (long i = 0; i < total; i++) {
                    long due = start + i * periodNanos;
                    long now;
                    while ((now = System.nanoTime()) < due) LockSupport.parkNanos(due - now);
                    byte[] v = new byte[size];
                    ByteBuffer.wrap(v).putLong(0, now).put(8, (byte) (i < warmupCount ? 0 : 1));
                    producer.send(new ProducerRecord<>(topic, v), (md, e) -> {
                        if (e != null) synchronized (sendErrors) { sendErrors[0]++; }
                    });
                }
                producer.flush();
            }, "bench-producer");
            sender.setDaemon(true);
            sender.start();

            long lastProgress = System.nanoTime();
            while (received < total) {
                var records = consumer.poll(Duration.ofMillis(100));
                long now = System.nanoTime();
                if (records.isEmpty()) {
                    if (!sender.isAlive() && now - lastProgress > TimeUnit.SECONDS.toNanos(10)) break;
                    continue;
                }
                lastProgress = now;
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    ByteBuffer b = ByteBuffer.wrap(r.value());
                    received++;
                    if (b.get(8) == 1 && counted < lat.length) lat[counted++] = now - b.getLong(0);
                }
            }
            sender.join(TimeUnit.SECONDS.toMillis(30));
            long[] v = Arrays.copyOf(lat, counted);
            Arrays.sort(v);
            double sum = 0;
            for (long x : v) sum += x;
            System.out.printf("latency count=%d lost=%d send_errors=%d rate=%d p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f avg_ms=%.3f%n",
                    counted, total - received, sendErrors[0], rate,
                    pct(v, 50), pct(v, 99), pct(v, 99.9), v.length == 0 ? Double.NaN : v[v.length - 1] / 1e6,
                    v.length == 0 ? Double.NaN : sum / v.length / 1e6);
        }
    }

    /** Nearest-rank percentile, in milliseconds. */
    static double pct(long[] sorted, double p) {
        if (sorted.length == 0) return Double.NaN;
        int rank = (int) Math.ceil(p / 100.0 * sorted.length);
        return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] / 1e6;
    }
}
