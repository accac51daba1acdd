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

// mqttConnect connects one MQTT 3.1.1 client (clean session, no reconnects) to addr.
func mqttConnect(addr, id string) (mqtt.Client, error) {
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(60 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetOrderMatters(true) // handlers run one at a time, in order: no locking needed in them
	c := mqtt.NewClient(opts)
	if err := wait(c.Connect()); err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return c, nil
}

// wait waits for a token, at most 10 s.
func wait(t mqtt.Token) error {
	if !t.WaitTimeout(10 * time.Second) {
		return errors.New("timed out")
	}
	return t.Error()
}

// mqttPair connects a subscriber (subscribed to a fresh topic at qos, calling onMessage) and a
// publisher, both to addr.
func mqttPair(addr string, qos byte, onMessage func([]byte)) (pub, sub mqtt.Client, topic string, err error) {
	topic = unique("weir-bench/t")
	if sub, err = mqttConnect(addr, unique("bench-sub")); err != nil {
		return nil, nil, "", err
	}
	handler := func(_ mqtt.Client, m mqtt.Message) { onMessage(m.Payload()) }
	tok := sub.Subscribe(topic, qos, handler)
	if err = wait(tok); err == nil && tok.(*mqtt.SubscribeToken).Result()[topic] > 2 {
		err = errors.New("refused (SUBACK 0x80)")
	}
	if err != nil {
		sub.Disconnect(0)
		return nil, nil, "", fmt.Errorf("subscribe: %w", err)
	}
	if pub, err = mqttConnect(addr, unique("bench-pub")); err != nil {
		sub.Disconnect(0)
		return nil, nil, "", err
	}
	return pub, sub, topic, nil
}

func mqttThroughput(args []string) error {
	var addr string
	var qos, count, size, window int
	flags("mqtt-tp", args, func(fs *flag.FlagSet) {
		fs.StringVar(&addr, "addr", "127.0.0.1:1883", "broker, relay or sidecar")
		fs.IntVar(&qos, "qos", 0, "QoS of the publisher and the subscription: 0 or 1")
		fs.IntVar(&count, "count", 100000, "messages")
		fs.IntVar(&size, "size", 128, "payload bytes")
		fs.IntVar(&window, "window", 1000, "most messages sent and not yet received")
	})
	// credit holds one token per message in flight: the publisher puts one in before each
	// publish (blocking when WINDOW are out), the subscriber takes one out per receipt.
	credit := make(chan struct{}, window)
	var received atomic.Int64
	var lastAt atomic.Int64
	pub, sub, topic, err := mqttPair(addr, byte(qos), func([]byte) {
		received.Add(1)
		lastAt.Store(mono())
		select {
		case <-credit:
		default:
		}
	})
	if err != nil {
		return err
	}
	defer sub.Disconnect(100)
	defer pub.Disconnect(100)

	body := payload(size) // the same bytes every time: only the count matters here
	start := mono()
	var sent int64
	var pubErr error
	stall := time.NewTimer(time.Hour)
	for sent < int64(count) {
		select {
		case credit <- struct{}{}:
		default: // WINDOW out: wait for the subscriber, but not forever
			stall.Reset(10 * time.Second)
			select {
			case credit <- struct{}{}:
			case <-stall.C:
				pubErr = errors.New("subscriber stalled for 10 s")
			}
		}
		if pubErr != nil {
			break
		}
		if t := pub.Publish(topic, byte(qos), false, body); t.Error() != nil {
			pubErr = t.Error()
			break
		}
		sent++
	}
	waitFor(func() bool { return received.Load() >= sent }, received.Load, 10*time.Second)
	elapsed := time.Duration(max(lastAt.Load()-start, 0))
	throughput("mqtt-tp", int64(count), received.Load(), elapsed, "qos", qos, "size", len(body), "window", window)
	if pubErr != nil {
		return pubErr
	}
	return nil
}

func mqttLatency(args []string) error {
	var addr string
	var qos, rate, size int
	var seconds, warmup float64
	flags("mqtt-lat", args, func(fs *flag.FlagSet) {
		fs.StringVar(&addr, "addr", "127.0.0.1:1883", "broker, relay or sidecar")
		fs.IntVar(&qos, "qos", 1, "QoS of the publisher and the subscription: 0 or 1")
		fs.IntVar(&rate, "rate", 2000, "messages per second")
		fs.Float64Var(&seconds, "seconds", 10, "measured seconds")
		fs.Float64Var(&warmup, "warmup", 2, "seconds sent first and not counted")
		fs.IntVar(&size, "size", 128, "payload bytes")
	})
	var mu sync.Mutex
	var samples []time.Duration
	var received atomic.Int64
	pub, sub, topic, err := mqttPair(addr, byte(qos), func(body []byte) {
		lat, counted := readStamp(body)
		received.Add(1)
		if counted {
			mu.Lock()
			samples = append(samples, lat)
			mu.Unlock()
		}
	})
	if err != nil {
		return err
	}
	defer sub.Disconnect(100)
	defer pub.Disconnect(100)

	sent, achieved, err := pace(rate, seconds, warmup, func(_ int64, counted bool) error {
		body := payload(size) // a new buffer each time: paho may still hold the last one
		stamp(body, counted)
		return pub.Publish(topic, byte(qos), false, body).Error()
	})
	waitFor(func() bool { return received.Load() >= sent }, received.Load, 5*time.Second)
	mu.Lock()
	defer mu.Unlock()
	latencies("mqtt-lat", samples, sent, sent, received.Load(), achieved, "qos", qos, "rate", rate)
	return err
}

// mqttIdle opens n connections to addr and returns a function that closes them.
func mqttIdle(addr string, n int) (func(), error) {
	var clients []mqtt.Client
	closeAll := func() {
		for _, c := range clients {
			c.Disconnect(0)
		}
	}
	for i := 0; i < n; i++ {
		c, err := mqttConnect(addr, unique(fmt.Sprintf("bench-idle-%d", i)))
		if err != nil {
			closeAll()
			return nil, err
		}
		clients = append(clients, c)
	}
	return closeAll, nil
}
