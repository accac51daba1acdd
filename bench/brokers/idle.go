package main

import (
	"flag"
	"fmt"
	"time"
)

// idle opens CONNS idle connections, prints its line (bench/brokers.sh reads the sidecar's
// RSS once it appears), holds them for HOLD seconds and closes them.
func idle(args []string) error {
	var protocol, addr, url string
	var conns int
	var hold float64
	flags("idle", args, func(fs *flag.FlagSet) {
		fs.StringVar(&protocol, "protocol", "mqtt", "mqtt (with -addr) or amqp (with -url)")
		fs.StringVar(&addr, "addr", "127.0.0.1:1883", "MQTT broker, relay or sidecar")
		fs.StringVar(&url, "url", "amqp://guest:guest@127.0.0.1:5672/", "AMQP broker, relay or sidecar")
		fs.IntVar(&conns, "conns", 100, "connections")
		fs.Float64Var(&hold, "hold", 3, "seconds to keep them open")
	})
	var closeAll func()
	var err error
	start := time.Now()
	switch protocol {
	case "mqtt":
		closeAll, err = mqttIdle(addr, conns)
	case "amqp":
		closeAll, err = amqpIdle(url, conns)
	default:
		return fmt.Errorf("unknown -protocol %q", protocol)
	}
	if err != nil {
		return err
	}
	result("idle", "protocol", protocol, "conns", conns, "connect_seconds", time.Since(start).Seconds())
	time.Sleep(time.Duration(hold * float64(time.Second)))
	closeAll()
	return nil
}
