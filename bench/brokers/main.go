// Command brokers is bench/brokers.sh's load generator for the MQTT and AMQP 0.9.1 sidecars:
// the same workloads against a broker directly, through a zero-work relay or through
// `weir proxy`, whichever address it is given. Each command prints ONE result line of
// key=value pairs on stdout (progress and errors go to stderr):
//
//	mqtt-tp   -addr H:P -qos 0|1 -count N -size B -window W
//	          publisher and subscriber (both at ADDR) on a fresh topic; the publisher sends
//	          COUNT messages as fast as it may but never more than WINDOW ahead of what the
//	          subscriber has received (so no broker queue overflows and nothing is dropped);
//	          rate = messages received / (last receipt - first send).
//	amqp-pub  -url URL -queue Q -count N -size B -window W
//	          declares Q (classic, non-durable) and publishes COUNT transient messages to it
//	          through the default exchange in confirm mode, at most WINDOW unconfirmed;
//	          rate = messages confirmed / (last confirm - first publish). Leaves them in Q.
//	amqp-cons -url URL -queue Q -count N -prefetch P [-autoack]
//	          consumes COUNT messages from Q (basic.qos PREFETCH; manual ack of every
//	          message unless -autoack); rate = COUNT / (last delivery - basic.consume).
//	          Deletes Q afterwards.
//	mqtt-lat  -addr H:P -qos 0|1 -rate R -seconds S -warmup W -size B
//	amqp-lat  -url URL -rate R -seconds S -warmup W -size B -prefetch P
//	          open loop at a FIXED rate: the publisher paces itself against its schedule and
//	          never waits for the subscriber; each message carries its send time (monotonic
//	          clock, same process); the subscriber/consumer records receipt - send. Messages
//	          of the first WARMUP seconds are not counted. AMQP: publisher in confirm mode
//	          (confirms drained asynchronously), consumer with manual acks.
//	mqtt-pub  -addr H:P -qos 0|1 -count N -size B -window W
//	          a publisher alone: COUNT messages, at most WINDOW unacknowledged; rate =
//	          messages acknowledged / (last acknowledgement - first send).
//	mqtt-fanout -addr H:P -subs N -qos 0|1 -rate R -seconds S -warmup W -size B
//	          N subscribers (a connection each) on one fresh topic, one publisher open loop at
//	          a FIXED rate; latency of every delivery, deliveries/s.
//	http-produce, sse-lat: the HTTP gateway's workloads (see http.go).
//	idle      -protocol mqtt|amqp -addr H:P | -url URL -conns N -hold S
//	          opens N idle connections (MQTT: CONNECT; AMQP: login + one channel), prints its
//	          line, keeps them open for S seconds, then closes them.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// base anchors every send stamp: stamps are monotonic nanoseconds since base, and publisher
// and subscriber run in this one process, so receipt - stamp is the one-way latency.
var base = time.Now()

func mono() int64 { return int64(time.Since(base)) }

// stampSize: an 8-byte send stamp and a 1-byte "counted" flag (0 during the warm-up).
const stampSize = 9

func stamp(buf []byte, counted bool) {
	binary.BigEndian.PutUint64(buf, uint64(mono()))
	buf[8] = 0
	if counted {
		buf[8] = 1
	}
}

// readStamp returns the latency of a message received now and whether it counts.
func readStamp(body []byte) (time.Duration, bool) {
	if len(body) < stampSize {
		return 0, false
	}
	return time.Duration(mono() - int64(binary.BigEndian.Uint64(body))), body[8] == 1
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "mqtt-tp":
		err = mqttThroughput(args)
	case "mqtt-lat":
		err = mqttLatency(args)
	case "mqtt-pub":
		err = mqttPublish(args)
	case "mqtt-fanout":
		err = mqttFanout(args)
	case "amqp-pub":
		err = amqpPublish(args)
	case "amqp-cons":
		err = amqpConsume(args)
	case "amqp-lat":
		err = amqpLatency(args)
	case "http-produce":
		err = httpProduce(args)
	case "sse-lat":
		err = sseLatency(args)
	case "idle":
		err = idle(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "brokers %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: brokers mqtt-tp|mqtt-lat|mqtt-pub|mqtt-fanout|amqp-pub|amqp-cons|amqp-lat|http-produce|sse-lat|idle [flags] (see main.go, http.go)")
	os.Exit(2)
}

// flags parses a command's flags, exiting on a bad one.
func flags(name string, args []string, define func(*flag.FlagSet)) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	define(fs)
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "brokers %s: unexpected arguments %q\n", name, fs.Args())
		os.Exit(2)
	}
}

// result prints the one result line: the command, then key=value pairs in the given order.
func result(cmd string, kv ...any) {
	var b strings.Builder
	b.WriteString(cmd)
	for i := 0; i+1 < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case float64:
			fmt.Fprintf(&b, " %s=%.3f", kv[i], v)
		default:
			fmt.Fprintf(&b, " %s=%v", kv[i], v)
		}
	}
	fmt.Println(b.String())
}

// throughput prints a throughput run's line.
func throughput(cmd string, count, done int64, elapsed time.Duration, kv ...any) {
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	kv = append([]any{"count", count, "done", done, "lost", count - done}, kv...)
	kv = append(kv, "seconds", elapsed.Seconds(), "rate", int64(math.Round(rate)))
	result(cmd, kv...)
}

// latencies prints a latency run's line: percentiles of the counted samples, in ms.
func latencies(cmd string, samples []time.Duration, sent, expected, received int64, achieved float64, kv ...any) {
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	pct := func(p float64) float64 {
		if len(samples) == 0 {
			return math.NaN()
		}
		i := int(math.Ceil(p/100*float64(len(samples)))) - 1
		return ms(samples[max(i, 0)])
	}
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	avg := math.NaN()
	if len(samples) > 0 {
		avg = ms(sum) / float64(len(samples))
	}
	kv = append([]any{"count", len(samples), "sent", sent, "lost", expected - received, "send_rate", int64(math.Round(achieved))}, kv...)
	kv = append(kv, "p50_ms", pct(50), "p99_ms", pct(99), "p999_ms", pct(99.9), "max_ms", pct(100), "avg_ms", avg)
	result(cmd, kv...)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// pace runs send(i, counted) for every message of an open-loop run: RATE per second for
// WARMUP+SECONDS seconds, each at its scheduled time (or at once if behind schedule). It
// returns how many were sent and the achieved rate.
func pace(rate int, seconds, warmup float64, send func(i int64, counted bool) error) (int64, float64, error) {
	total := int64(math.Round(float64(rate) * (seconds + warmup)))
	warm := int64(math.Round(float64(rate) * warmup))
	period := time.Second / time.Duration(rate)
	start := time.Now()
	for i := int64(0); i < total; i++ {
		if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
			time.Sleep(d)
		}
		if err := send(i, i >= warm); err != nil {
			return i, 0, err
		}
	}
	return total, float64(total) / time.Since(start).Seconds(), nil
}

// waitFor polls cond until it holds, or until `stall` passes without progress() changing.
func waitFor(cond func() bool, progress func() int64, stall time.Duration) bool {
	last, since := progress(), time.Now()
	for !cond() {
		time.Sleep(2 * time.Millisecond)
		if p := progress(); p != last {
			last, since = p, time.Now()
		} else if time.Since(since) > stall {
			return false
		}
	}
	return true
}

// unique names a run's topic, queue or client: distinct across runs and processes.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9)
}

// payload returns a SIZE-byte message body (at least the stamp).
func payload(size int) []byte { return make([]byte, max(size, stampSize)) }
