package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// amqpOpen dials url and opens one channel.
func amqpOpen(url string) (*amqp.Connection, *amqp.Channel, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Heartbeat: 60 * time.Second, Locale: "en_US"})
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("channel: %w", err)
	}
	return conn, ch, nil
}

// publish sends one transient message to queue q through the default exchange.
func publish(ch *amqp.Channel, q string, body []byte) error {
	return ch.PublishWithContext(context.Background(), "", q, false, false,
		amqp.Publishing{DeliveryMode: amqp.Transient, Body: body})
}

func amqpPublish(args []string) error {
	var url, queue string
	var count, size, window int
	flags("amqp-pub", args, func(fs *flag.FlagSet) {
		fs.StringVar(&url, "url", "amqp://guest:guest@127.0.0.1:5672/", "broker, relay or sidecar")
		fs.StringVar(&queue, "queue", "", "queue to declare and fill (required)")
		fs.IntVar(&count, "count", 100000, "messages")
		fs.IntVar(&size, "size", 128, "payload bytes")
		fs.IntVar(&window, "window", 1000, "most messages published and not yet confirmed")
	})
	if queue == "" {
		return errors.New("-queue is required")
	}
	conn, ch, err := amqpOpen(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Classic, non-durable: confirms then mean "routed to the queue", no disk in the way.
	if _, err := ch.QueueDeclare(queue, false, false, false, false, nil); err != nil {
		return fmt.Errorf("queue.declare: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm.select: %w", err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window+1))

	body := payload(size)
	var acked, nacked, out int64
	var lastAt int64
	// settle takes one confirmation (in order: the library delivers them sorted).
	settle := func() error {
		select {
		case c, ok := <-confirms:
			if !ok {
				return errors.New("channel closed")
			}
			if c.Ack {
				acked++
			} else {
				nacked++
			}
			out--
			lastAt = mono()
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("no confirm for 10 s")
		}
	}
	start := mono()
	for i := 0; i < count && err == nil; i++ {
		if out == int64(window) {
			if err = settle(); err != nil {
				break
			}
		}
		if err = publish(ch, queue, body); err == nil {
			out++
		}
	}
	for out > 0 && err == nil {
		err = settle()
	}
	throughput("amqp-pub", int64(count), acked, time.Duration(max(lastAt-start, 0)),
		"nacked", nacked, "size", len(body), "window", window)
	return err
}

func amqpConsume(args []string) error {
	var url, queue string
	var count, prefetch int
	var autoAck bool
	flags("amqp-cons", args, func(fs *flag.FlagSet) {
		fs.StringVar(&url, "url", "amqp://guest:guest@127.0.0.1:5672/", "broker, relay or sidecar")
		fs.StringVar(&queue, "queue", "", "queue to drain and then delete (required)")
		fs.IntVar(&count, "count", 100000, "messages")
		fs.IntVar(&prefetch, "prefetch", 1000, "basic.qos prefetch count (ignored with -autoack)")
		fs.BoolVar(&autoAck, "autoack", false, "no acks (basic.consume no-ack) instead of basic.ack per message")
	})
	if queue == "" {
		return errors.New("-queue is required")
	}
	conn, ch, err := amqpOpen(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	if !autoAck {
		if err := ch.Qos(prefetch, 0, false); err != nil {
			return fmt.Errorf("basic.qos: %w", err)
		}
	}
	start := mono()
	deliveries, err := ch.Consume(queue, "", autoAck, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("basic.consume: %w", err)
	}
	var got, lastAt int64
	timeout := time.NewTimer(time.Hour)
loop:
	for got < int64(count) {
		timeout.Reset(10 * time.Second)
		select {
		case d, ok := <-deliveries:
			if !ok {
				err = errors.New("channel closed")
				break loop
			}
			if !autoAck {
				if err = d.Ack(false); err != nil {
					break loop
				}
			}
			got++
			lastAt = mono()
		case <-timeout.C:
			err = errors.New("no delivery for 10 s")
			break loop
		}
	}
	ack := "manual"
	if autoAck {
		ack = "auto"
	}
	throughput("amqp-cons", int64(count), got, time.Duration(max(lastAt-start, 0)), "ack", ack, "prefetch", prefetch)
	if _, derr := ch.QueueDelete(queue, false, false, false); derr != nil && err == nil {
		err = fmt.Errorf("queue.delete: %w", derr)
	}
	return err
}

func amqpLatency(args []string) error {
	var url string
	var rate, size, prefetch int
	var seconds, warmup float64
	flags("amqp-lat", args, func(fs *flag.FlagSet) {
		fs.StringVar(&url, "url", "amqp://guest:guest@127.0.0.1:5672/", "broker, relay or sidecar")
		fs.IntVar(&rate, "rate", 2000, "messages per second")
		fs.Float64Var(&seconds, "seconds", 10, "measured seconds")
		fs.Float64Var(&warmup, "warmup", 2, "seconds sent first and not counted")
		fs.IntVar(&size, "size", 128, "payload bytes")
		fs.IntVar(&prefetch, "prefetch", 1000, "the consumer's basic.qos prefetch count")
	})
	// The consumer: its own connection, an exclusive server-named queue, manual acks.
	cconn, cch, err := amqpOpen(url)
	if err != nil {
		return err
	}
	defer cconn.Close()
	q, err := cch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("queue.declare: %w", err)
	}
	if err := cch.Qos(prefetch, 0, false); err != nil {
		return fmt.Errorf("basic.qos: %w", err)
	}
	deliveries, err := cch.Consume(q.Name, "", false, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("basic.consume: %w", err)
	}
	var mu sync.Mutex
	var samples []time.Duration
	var received atomic.Int64
	go func() {
		for d := range deliveries {
			lat, counted := readStamp(d.Body)
			_ = d.Ack(false)
			received.Add(1)
			if counted {
				mu.Lock()
				samples = append(samples, lat)
				mu.Unlock()
			}
		}
	}()

	// The publisher: another connection, confirm mode, confirmations drained on the side.
	pconn, pch, err := amqpOpen(url)
	if err != nil {
		return err
	}
	defer pconn.Close()
	if err := pch.Confirm(false); err != nil {
		return fmt.Errorf("confirm.select: %w", err)
	}
	var nacked atomic.Int64
	confirms := pch.NotifyPublish(make(chan amqp.Confirmation, 4096))
	go func() {
		for c := range confirms {
			if !c.Ack {
				nacked.Add(1)
			}
		}
	}()
	sent, achieved, err := pace(rate, seconds, warmup, func(_ int64, counted bool) error {
		body := payload(size)
		stamp(body, counted)
		return publish(pch, q.Name, body)
	})
	waitFor(func() bool { return received.Load() >= sent }, received.Load, 5*time.Second)
	mu.Lock()
	defer mu.Unlock()
	latencies("amqp-lat", samples, sent, sent, received.Load(), achieved, "rate", rate, "nacked", nacked.Load())
	return err
}

// amqpIdle opens n connections (each with one channel) to url and returns a function that
// closes them.
func amqpIdle(url string, n int) (func(), error) {
	var conns []*amqp.Connection
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for i := 0; i < n; i++ {
		conn, _, err := amqpOpen(url)
		if err != nil {
			closeAll()
			return nil, err
		}
		conns = append(conns, conn)
	}
	return closeAll, nil
}
