package main

// The HTTP gateway's workloads (bench/gateway-http.sh), on the standard library alone:
//
//	http-produce -url URL -conc C -records R -size B -seconds S
//	          C clients, each POSTing R records of B bytes (binary format) per request, one
//	          request at a time, for S seconds: requests/s, records/s, p50/p99 request ms.
//	sse-lat   -url URL -streams N -rate R -seconds S -warmup W -size B
//	          N event streams of the topic (from latest, format binary); records POSTed one per
//	          request at a FIXED rate (open loop, at most 256 requests in flight), each carrying
//	          its send time: latency of every delivery to every stream.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// URL is the gateway's topic URL: http://H:P/topics/T.
func httpClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
}

// produceBody is one request of n records, each value b bytes of which the first carry the stamp.
func produceBody(n, size int, counted bool) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"records":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		value := payload(size)
		stamp(value, counted)
		buf.WriteString(`{"value":"`)
		buf.WriteString(base64.StdEncoding.EncodeToString(value))
		buf.WriteString(`"}`)
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

func post(client *http.Client, url string, body []byte) error {
	resp, err := client.Post(url, "application/vnd.kafka.binary.v2+json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, answer)
	}
	return nil
}

func httpProduce(args []string) error {
	var url string
	var conc, records, size int
	var seconds float64
	flags("http-produce", args, func(fs *flag.FlagSet) {
		fs.StringVar(&url, "url", "http://127.0.0.1:17893/topics/weir-bench.http", "the gateway's topic URL")
		fs.IntVar(&conc, "conc", 16, "clients, one request in flight each")
		fs.IntVar(&records, "records", 1, "records per request")
		fs.IntVar(&size, "size", 128, "value bytes")
		fs.Float64Var(&seconds, "seconds", 10, "how long")
	})
	client := httpClient(conc)
	body := produceBody(records, size, false)
	var mu sync.Mutex
	var samples []time.Duration
	var failed atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t := time.Now()
				if err := post(client, url, body); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "http-produce: %d failed requests, first: %s\n", failed.Load(), e)
	}
	done := int64(len(samples))
	latencies("http-produce", samples, done, done, done, float64(done)/elapsed.Seconds(),
		"failed", failed.Load(), "rate", int64(float64(done)/elapsed.Seconds()),
		"records_per_s", int64(float64(done*int64(records))/elapsed.Seconds()), "conc", conc, "records", records)
	return nil
}

func sseLatency(args []string) error {
	var url string
	var streams, rate, size int
	var seconds, warmup float64
	flags("sse-lat", args, func(fs *flag.FlagSet) {
		fs.StringVar(&url, "url", "http://127.0.0.1:17893/topics/weir-bench.http", "the gateway's topic URL")
		fs.IntVar(&streams, "streams", 1, "event streams of the topic")
		fs.IntVar(&rate, "rate", 1000, "records per second")
		fs.Float64Var(&seconds, "seconds", 10, "measured seconds")
		fs.Float64Var(&warmup, "warmup", 2, "seconds sent first and not counted")
		fs.IntVar(&size, "size", 128, "value bytes")
	})
	var mu sync.Mutex
	var samples []time.Duration
	var received atomic.Int64
	ready := make(chan error, streams)
	for s := 0; s < streams; s++ {
		go func() {
			resp, err := http.Get(url + "/events?format=binary")
			if err != nil || resp.StatusCode != 200 {
				ready <- fmt.Errorf("GET %s/events: %v %v", url, err, resp)
				return
			}
			defer resp.Body.Close()
			lines := bufio.NewReader(resp.Body)
			started := false
			for {
				line, err := lines.ReadString('\n')
				if err != nil {
					return
				}
				switch {
				case strings.HasPrefix(line, "id: ") && !started:
					started = true
					ready <- nil
				case strings.HasPrefix(line, "data: "):
					// format=binary: the whole record as one line of JSON, its value base64.
					var record struct{ Value []byte }
					if json.Unmarshal([]byte(line[len("data: "):]), &record) != nil {
						continue
					}
					lat, counted := readStamp(record.Value)
					received.Add(1)
					if counted {
						mu.Lock()
						samples = append(samples, lat)
						mu.Unlock()
					}
				}
			}
		}()
	}
	for s := 0; s < streams; s++ {
		if err := <-ready; err != nil {
			return err
		}
	}
	client := httpClient(256)
	inflight := make(chan struct{}, 256)
	var failed atomic.Int64
	sent, achieved, err := pace(rate, seconds, warmup, func(_ int64, counted bool) error {
		body := produceBody(1, size, counted)
		inflight <- struct{}{}
		go func() {
			defer func() { <-inflight }()
			if err := post(client, url, body); err != nil {
				failed.Add(1)
			}
		}()
		return nil
	})
	expected := sent * int64(streams)
	waitFor(func() bool { return received.Load() >= expected-failed.Load()*int64(streams) }, received.Load, 5*time.Second)
	mu.Lock()
	defer mu.Unlock()
	latencies("sse-lat", samples, sent, expected, received.Load(), achieved, "streams", streams, "rate", rate, "failed", failed.Load())
	return err
}
