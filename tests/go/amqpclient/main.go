// amqpclient is the AMQP sidecar tests' second client library (RabbitMQ's amqp091-go, beside
// pika in tests/python/amqp_client.py).
//
//	amqpclient setup URL EXCHANGE QUEUE KEY
//	    declares a durable topic exchange and a durable queue bound to it with KEY; prints "ok"
//	amqpclient publish URL EXCHANGE KEY COUNT
//	    publishes up to COUNT persistent messages "KEY-i" with publisher confirms, one at a
//	    time, printing "confirmed i" for each the broker confirmed; stops at the first that
//	    is not (a closed connection or channel), printing "closed CODE TEXT", then
//	    "confirmed=N"
//	amqpclient consume URL QUEUE COUNT SECONDS
//	    consumes with manual acks until COUNT arrived or SECONDS passed, printing "message
//	    BODY" for each, then "received=N"
//
// A channel or connection the broker (or the sidecar) closes prints "closed CODE TEXT".
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: amqpclient setup|publish|consume URL ...")
	}
	conn, err := amqp.DialConfig(os.Args[2], amqp.Config{Heartbeat: 10 * time.Second, Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		closed(err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		closed(err)
		return
	}
	// Why the channel closed, when it does (the sidecar's refusals arrive here).
	closes = ch.NotifyClose(make(chan *amqp.Error, 1))
	args := os.Args[3:]
	switch os.Args[1] {
	case "setup":
		need(args, 3)
		check(ch.ExchangeDeclare(args[0], "topic", true, false, false, false, nil))
		_, err := ch.QueueDeclare(args[1], true, false, false, false, nil)
		check(err)
		check(ch.QueueBind(args[1], args[2], args[0], false, nil))
		fmt.Println("ok")
	case "publish":
		need(args, 3)
		publish(ch, args[0], args[1], atoi(args[2]))
	case "consume":
		need(args, 3)
		consume(ch, args[0], atoi(args[1]), time.Duration(atoi(args[2]))*time.Second)
	default:
		fail("unknown command " + os.Args[1])
	}
}

func publish(ch *amqp.Channel, exchange, key string, count int) {
	check(ch.Confirm(false))
	confirmed := 0
	defer func() { fmt.Printf("confirmed=%d\n", confirmed) }()
	for i := 0; i < count; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		body := fmt.Sprintf("%s-%d", key, i)
		msg := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)}
		confirmation, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
		if err != nil {
			cancel()
			closed(closeReason(err))
			return
		}
		acked, err := confirmation.WaitContext(ctx)
		cancel()
		if err != nil || !acked {
			if err == nil {
				err = errors.New("nacked")
			}
			closed(closeReason(err))
			return
		}
		confirmed++
		fmt.Printf("confirmed %d\n", i)
	}
}

func consume(ch *amqp.Channel, queue string, count int, wait time.Duration) {
	check(ch.Qos(100, 0, false))
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		closed(err)
		return
	}
	received := 0
	defer func() { fmt.Printf("received=%d\n", received) }()
	timeout := time.After(wait)
	for received < count {
		select {
		case d, ok := <-deliveries:
			if !ok {
				closed(closeReason(amqp.ErrClosed))
				return
			}
			fmt.Printf("message %s\n", d.Body)
			check(d.Ack(false))
			received++
		case <-timeout:
			return
		}
	}
}

var closes chan *amqp.Error

// closeReason is the broker's reason for closing the channel, if it gives one soon, else err.
func closeReason(err error) error {
	select {
	case reason, ok := <-closes:
		if ok && reason != nil {
			return reason
		}
	case <-time.After(2 * time.Second):
	}
	return err
}

// closed prints why the broker closed the channel or connection.
func closed(err error) {
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		fmt.Printf("closed %d %s\n", amqpErr.Code, amqpErr.Reason)
	} else {
		fmt.Printf("closed 0 %v\n", err)
	}
}

func check(err error) {
	if err != nil {
		closed(closeReason(err))
		os.Exit(0)
	}
}

func need(args []string, n int) {
	if len(args) < n {
		fail(fmt.Sprintf("%s needs %d arguments", os.Args[1], n))
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fail("not a number: " + s)
	}
	return n
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "amqpclient:", message)
	os.Exit(2)
}
