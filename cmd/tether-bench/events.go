package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// EventsReport compares login and renewal on a server pushing its audit
// trail to two sinks (a webhook on this machine and a file) with the same
// on a server pushing it to none, run against run.
type EventsReport struct {
	Clients     int     `json:"clients"`
	DurationSec float64 `json:"durationSec"`
	Runs        int     `json:"runs"`
	// Ops holds, per operation, the medians without and with sinks, and
	// their ratio.
	Ops []EventsOp `json:"ops"`
	// Delivered counts the events the webhook took during the run;
	// Pending those still waiting for it at the end.
	Delivered int64 `json:"delivered"`
	Pending   int   `json:"pending"`
}

// EventsOp is one operation's figures.
type EventsOp struct {
	Op        string  `json:"op"`
	NoSinks   Result  `json:"noSinks"`
	TwoSinks  Result  `json:"twoSinks"`
	TwoVsNone float64 `json:"twoVsNone"`
}

// compareSinks runs the comparison: the two servers side by side, each
// operation alternating between them.
func compareSinks(cfg config, out io.Writer) (EventsReport, error) {
	r := EventsReport{Clients: cfg.clients, DurationSec: cfg.duration.Seconds(), Runs: cfg.runs}
	var delivered atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	hook := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go hook.Serve(ln)
	defer hook.Close()
	dir, err := os.MkdirTemp("", "tether-bench-events-*")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("whsec_"+base64.StdEncoding.EncodeToString([]byte("a bench webhook secret, 32 bytes"))), 0o600); err != nil {
		return r, err
	}
	config := filepath.Join(dir, "events.json")
	if err := os.WriteFile(config, fmt.Appendf(nil, `{"sinks":[
		{"name":"hook","type":"webhook","url":"http://%s/","secretFile":%q},
		{"name":"file","type":"file","path":%q}]}`, ln.Addr(), secret, filepath.Join(dir, "events.jsonl")), 0o600); err != nil {
		return r, err
	}

	none, err := startServer(cfg.server, cfg.store)
	if err != nil {
		return r, err
	}
	defer none.stop()
	two, err := startServer(cfg.server, cfg.store, "--events-config", config)
	if err != nil {
		return r, err
	}
	defer two.stop()
	wNone, err := seed(none, cfg.clients)
	if err != nil {
		return r, err
	}
	wTwo, err := seed(two, cfg.clients)
	if err != nil {
		return r, err
	}
	fmt.Fprintf(out, "login and renewal: no sinks against two (a webhook on this machine, a file), %d clients, %s per run, medians of %d runs\n\n",
		cfg.clients, cfg.duration, cfg.runs)
	fmt.Fprintf(out, "%-10s %14s %14s %8s %12s %12s\n", "operation", "none req/s", "two req/s", "ratio", "none p99 ms", "two p99 ms")
	start := delivered.Load()
	for _, op := range []struct {
		name      string
		none, two func(c *client, i int) error
	}{
		{"renew", wNone.renew, wTwo.renew},
		{"login", wNone.login, wTwo.login},
	} {
		var a, b []Result
		for range cfg.runs {
			a = append(a, drive(cfg, op.name, none.base, op.none))
			b = append(b, drive(cfg, op.name, two.base, op.two))
		}
		e := EventsOp{Op: op.name, NoSinks: median(a), TwoSinks: median(b)}
		if e.NoSinks.PerSecond > 0 {
			e.TwoVsNone = e.TwoSinks.PerSecond / e.NoSinks.PerSecond
		}
		r.Ops = append(r.Ops, e)
		fmt.Fprintf(out, "%-10s %14.0f %14.0f %7.2fx %12.1f %12.1f\n", op.name, e.NoSinks.PerSecond, e.TwoSinks.PerSecond, e.TwoVsNone, e.NoSinks.P99ms, e.TwoSinks.P99ms)
		if e.NoSinks.Errors+e.TwoSinks.Errors > 0 {
			return r, fmt.Errorf("%s had %d errors", op.name, e.NoSinks.Errors+e.TwoSinks.Errors)
		}
	}
	// The backlog a second later: whether delivery kept up.
	time.Sleep(time.Second)
	admin := &client{http: newHTTP(1), base: two.base}
	var sinks struct {
		Sinks []struct {
			Name    string `json:"name"`
			Pending int    `json:"pending"`
		} `json:"sinks"`
	}
	if err := admin.do("GET", "/v1/events/sinks", two.key, nil, &sinks); err != nil {
		return r, err
	}
	for _, s := range sinks.Sinks {
		r.Pending += s.Pending
	}
	r.Delivered = delivered.Load() - start
	fmt.Fprintf(out, "\nthe webhook took %d events during the runs; %d waited in the queues a second after\n", r.Delivered, r.Pending)
	return r, nil
}
