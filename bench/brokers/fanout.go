package main

import (
	"errors"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// mqttPublish: a publisher alone, COUNT messages at QOS, at most WINDOW unacknowledged (QoS 1);
// rate = messages acknowledged / (last acknowledgement - first send). What a gateway's
// publish path costs when its acknowledgement waits for Kafka (acks=all).
func mqttPublish(args []string) error {
	var addr string
	var qos, count, size, window int
	flags("mqtt-pub", args, func(fs *flag.FlagSet) {
		fs.StringVar(&addr, "addr", "127.0.0.1:1883", "broker or gateway")
		fs.IntVar(&qos, "qos", 1, "QoS of the publishes: 0 or 1")
		fs.IntVar(&count, "count", 100000, "messages")
		fs.IntVar(&size, "size", 128, "payload bytes")
		fs.IntVar(&window, "window", 1000, "most messages unacknowledged (QoS 1)")
	})
	pub, err := mqttConnect(addr, unique("bench-pub"))
	if err != nil {
		return err
	}
	defer pub.Disconnect(100)
	topic := unique("weir-bench/t")
	body := payload(size)
	credit := make(chan struct{}, window)
	var acked atomic.Int64
	var lastAt atomic.Int64
	var failed atomic.Value
	start := mono()
	for i := 0; i < count; i++ {
		credit <- struct{}{}
		t := pub.Publish(topic, byte(qos), false, body)
		go func() {
			if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
				failed.Store(fmt.Sprintf("publish not acknowledged: %v", t.Error()))
			}
			acked.Add(1)
			lastAt.Store(mono())
			<-credit
		}()
	}
	waitFor(func() bool { return acked.Load() >= int64(count) }, acked.Load, 30*time.Second)
	throughput("mqtt-pub", int64(count), acked.Load(), time.Duration(max(lastAt.Load()-start, 0)), "qos", qos, "size", len(body), "window", window)
	if f := failed.Load(); f != nil {
		return errors.New(f.(string))
	}
	return nil
}

// mqttFanout: SUBS subscribers (one connection each) on one fresh topic and one publisher at a
// FIXED rate; every message reaches every subscriber. Prints the deliveries' latency
// percentiles and deliveries/s.
func mqttFanout(args []string) error {
	var addr string
	var subs, qos, rate, size int
	var seconds, warmup float64
	flags("mqtt-fanout", args, func(fs *flag.FlagSet) {
		fs.StringVar(&addr, "addr", "127.0.0.1:1883", "broker or gateway")
		fs.IntVar(&subs, "subs", 1000, "subscribers")
		fs.IntVar(&qos, "qos", 0, "QoS of the publisher and the subscriptions: 0 or 1")
		fs.IntVar(&rate, "rate", 20, "messages per second")
		fs.Float64Var(&seconds, "seconds", 10, "measured seconds")
		fs.Float64Var(&warmup, "warmup", 2, "seconds sent first and not counted")
		fs.IntVar(&size, "size", 128, "payload bytes")
	})
	topic := unique("weir-bench/t")
	var mu sync.Mutex
	var samples []time.Duration
	var received atomic.Int64
	handler := func(_ mqtt.Client, m mqtt.Message) {
		lat, counted := readStamp(m.Payload())
		received.Add(1)
		if counted {
			mu.Lock()
			samples = append(samples, lat)
			mu.Unlock()
		}
	}
	clients := make([]mqtt.Client, subs)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Disconnect(0)
			}
		}
	}()
	// Connect and subscribe 50 at a time.
	var connectErr atomic.Value
	for from := 0; from < subs; from += 50 {
		var wg sync.WaitGroup
		for i := from; i < min(from+50, subs); i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c, err := mqttConnect(addr, unique(fmt.Sprintf("bench-fan-%d", i)))
				if err == nil {
					err = wait(c.Subscribe(topic, byte(qos), handler))
				}
				if err != nil {
					connectErr.Store(err)
					return
				}
				clients[i] = c
			}(i)
		}
		wg.Wait()
		if err, _ := connectErr.Load().(error); err != nil {
			return fmt.Errorf("subscriber: %w", err)
		}
	}
	pub, err := mqttConnect(addr, unique("bench-pub"))
	if err != nil {
		return err
	}
	defer pub.Disconnect(100)
	sent, achieved, err := pace(rate, seconds, warmup, func(_ int64, counted bool) error {
		body := payload(size)
		stamp(body, counted)
		return pub.Publish(topic, byte(qos), false, body).Error()
	})
	expected := sent * int64(subs)
	waitFor(func() bool { return received.Load() >= expected }, received.Load, 5*time.Second)
	mu.Lock()
	defer mu.Unlock()
	deliveries := float64(len(samples)) / seconds
	latencies("mqtt-fanout", samples, sent, expected, received.Load(), achieved, "subs", subs, "qos", qos, "rate", rate, "deliveries_per_s", int64(deliveries))
	return err
}
