// Command tether-bench measures a tether server under load, and the limit
// of the machine it runs on.
//
//	tether-bench [--server bin/tether] [--clients 64] [--duration 5s] [--out bench.json]
//
// It starts the server on a loopback port with a fresh store, seeds users
// and handsets, and drives each operation with many concurrent keep-alive
// clients for a fixed time. In the same run it measures what the renewal
// path cannot beat (a bare handler that decodes the request, verifies one
// Ed25519 token, signs one and writes one record with a batched bbolt
// write), and the cost of one password hash. It prints a table and writes a
// JSON report.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tether/auth"
	"tether/auth/dpop"
	"tether/device"
	"tether/storage/postgres"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "limit" {
		if err := serveLimit(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "tether-bench limit:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tether-bench:", err)
		os.Exit(1)
	}
}

type config struct {
	server   string
	clients  int
	duration time.Duration
	out      string
	runs     int
	// store is a postgres:// URL to measure the server on PostgreSQL; the
	// run gets a schema of its own there, dropped at the end.
	store string
}

// parallelHashRate is how many password hashes a second the machine
// verifies with one verifier per core, counted as drive counts requests:
// those that end inside the window.
func parallelHashRate(h *auth.Hasher, stored string, d time.Duration) (float64, error) {
	var n atomic.Int64
	var failed atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if _, err := h.Verify("correct horse battery", stored); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				if time.Now().After(deadline) {
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / d.Seconds(), nil
}

// median returns the run with the median req/s, with the errors of all.
func median(runs []Result) Result {
	if len(runs) == 0 {
		return Result{}
	}
	sorted := append([]Result(nil), runs...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a].PerSecond < sorted[b].PerSecond })
	m := sorted[len(sorted)/2]
	m.Errors = 0
	for _, r := range runs {
		m.Errors += r.Errors
	}
	return m
}

// Result is one operation's figures.
type Result struct {
	Op       string `json:"op"`
	Requests int    `json:"requests"`
	Errors   int    `json:"errors"`
	// Shed counts requests the server refused at once as busy (503, with
	// Retry-After): neither completions nor errors.
	Shed      int     `json:"shed,omitempty"`
	PerSecond float64 `json:"perSecond"`
	P50ms     float64 `json:"p50Ms"`
	P99ms     float64 `json:"p99Ms"`
	P999ms    float64 `json:"p999Ms"`
	// OfLimit is PerSecond as a fraction of the limit it is compared with.
	OfLimit float64 `json:"ofLimit,omitempty"`
	LimitOp string  `json:"limitOp,omitempty"`
	// OfEmbedded is, on PostgreSQL, PerSecond as a fraction of the same
	// operation's on the embedded store, in runs alternating with these.
	OfEmbedded float64 `json:"ofEmbedded,omitempty"`
	// CPUPerRequestUs is the CPU time the serving process (Tether, or
	// the limit's server) spent in the run, per request counted, in
	// microseconds: what one request costs the server, whatever share of
	// the cores the load generator beside it took. A database's own CPU
	// is not in it. Zero where /proc cannot tell.
	CPUPerRequestUs float64 `json:"cpuPerRequestUs,omitempty"`
	// DBCPUPerRequestUs is, on PostgreSQL, the CPU time of every process
	// named postgres on this machine in the run, per request counted: the
	// database's share, where it runs beside the server.
	DBCPUPerRequestUs float64 `json:"dbCpuPerRequestUs,omitempty"`
}

// Report is what a run writes.
type Report struct {
	When        time.Time `json:"when"`
	CPUs        int       `json:"cpus"`
	Clients     int       `json:"clients"`
	DurationSec float64   `json:"durationSec"`
	HashMs      float64   `json:"passwordHashMs"`
	// LoginLimit is the parallel hash throughput measured in the run.
	LoginLimit    float64  `json:"loginLimitPerSecond"`
	Results       []Result `json:"results"`
	ServerPeakRSS int64    `json:"serverPeakRssBytes"`
	Runs          int      `json:"runs"`
	Go            string   `json:"go"`
	// Store is "bbolt" or "postgres".
	Store string `json:"store"`
}

func run() error {
	var cfg config
	flag.StringVar(&cfg.server, "server", "bin/tether", "the tether binary to measure")
	flag.IntVar(&cfg.clients, "clients", 64, "concurrent keep-alive clients")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long each operation is driven")
	flag.StringVar(&cfg.out, "out", "bench.json", "the JSON report")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of each operation compared with a limit (alternating with the limit); medians are reported")
	flag.StringVar(&cfg.store, "store", "", "a postgres:// URL: measure the server on PostgreSQL (in a schema of its own, dropped at the end) instead of the embedded store")
	growthRun := flag.Bool("growth", false, "compare renewal on a small store with a large one instead")
	eventsRun := flag.Bool("events", false, "compare login and renewal on a server pushing its audit trail to two sinks with one pushing it to none instead")
	devices := flag.Int("devices", 100_000, "handsets in the large store (--growth)")
	sessions := flag.Int("sessions", 1_000_000, "sessions in the large store (--growth)")
	only := flag.String("only", "", "a regular expression: drive only the operations whose names it matches (and their limits)")
	flag.Parse()
	chosen, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("--only: %w", err)
	}
	if *eventsRun {
		r, err := compareSinks(cfg, os.Stdout)
		if err != nil {
			return err
		}
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(cfg.out, data, 0o644)
	}
	if *growthRun {
		g, err := growth(cfg, *devices, *sessions, os.Stdout)
		if err != nil {
			return err
		}
		data, err := json.MarshalIndent(g, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(cfg.out, data, 0o644)
	}

	report := Report{When: time.Now().UTC(), CPUs: runtime.NumCPU(), Clients: cfg.clients, DurationSec: cfg.duration.Seconds(), Go: runtime.Version(), Runs: cfg.runs, Store: "bbolt"}
	if cfg.store != "" {
		report.Store = "postgres"
	}

	// Production password hashes bound logins. One hash's time is taken
	// warm (the first hashes pay for mapping their memory), one at a time,
	// for the table; the limit logins are compared with is the parallel
	// hash throughput (below); see docs/performance.md.
	h := auth.NewHasher(auth.DefaultParams)
	var stored string
	for range 2 {
		var err error
		if stored, err = h.Hash("correct horse battery"); err != nil {
			return err
		}
	}
	const timed = 8
	start := time.Now()
	for range timed {
		if _, err := h.Verify("correct horse battery", stored); err != nil {
			return err
		}
	}
	report.HashMs = float64(time.Since(start).Microseconds()) / 1000 / timed
	// The login limit is what the machine hashes with every core busy, as
	// a loaded server hashes: one hash runs two lanes, so cores / one
	// hash's time overstates it.
	if report.LoginLimit, err = parallelHashRate(h, stored, cfg.duration); err != nil {
		return err
	}

	// The limit of the renewal path, in its own process, running beside the
	// server: each operation compared with a limit is measured alternately
	// with it, cfg.runs times, and the medians compared, so the machine's
	// drifts touch both alike.
	limit, err := startLimit()
	if err != nil {
		return err
	}
	defer limit.stop()
	const (
		withStore = "limit: decode+verify+sign+batched write"
		bare      = "limit: decode+verify+sign"
		// hashes is the login's limit, the parallel hash throughput
		// measured above: nothing to drive between runs.
		hashes = "parallel password hashes"
	)
	limits := map[string]func() Result{
		withStore: func() Result { return limit.measure(cfg, "") },
		bare:      func() Result { return limit.measure(cfg, "?store=none") },
	}

	srv, err := startServer(cfg.server, cfg.store)
	if err != nil {
		return err
	}
	defer srv.stop()
	w, err := seed(srv, cfg.clients)
	if err != nil {
		return err
	}
	// On PostgreSQL, the embedded store is measured beside it, in the
	// same runs, for the ratio of the two.
	var embedded *server
	var we *world
	if cfg.store != "" {
		if embedded, err = startServer(cfg.server, ""); err != nil {
			return err
		}
		defer embedded.stop()
		if we, err = seed(embedded, cfg.clients); err != nil {
			return err
		}
	}
	ops := []struct {
		name  string
		limit string
		fn    func(w *world, c *client, i int) error
	}{
		{"renew", withStore, (*world).renew},
		{"renew with DPoP proof", withStore, (*world).renewProven},
		{"refresh", withStore, (*world).refresh},
		{"refresh at /oauth2/token", withStore, (*world).oauthRefresh},
		{"GET /v1/auth/me", bare, (*world).me},
		{"introspect", bare, (*world).introspect},
		{"device register", "", (*world).register},
		{"device list", "", (*world).list},
		{"login", hashes, (*world).login},
	}
	on := func(w *world, fn func(w *world, c *client, i int) error) func(c *client, i int) error {
		return func(c *client, i int) error { return fn(w, c, i) }
	}
	limitRuns := map[string][]Result{}
	for _, op := range ops {
		if !chosen.MatchString(op.name) {
			continue
		}
		// A second of the operation first, not counted: the first run
		// after seeding otherwise pays for growing the server's heap and
		// the store's pages.
		warm := cfg
		warm.duration = time.Second
		drive(warm, op.name, srv.base, on(w, op.fn))
		if embedded != nil && op.limit != "" {
			drive(warm, op.name, embedded.base, on(we, op.fn))
		}
		var runs, embeddedRuns []Result
		for range cfg.runs {
			if measure, ok := limits[op.limit]; ok {
				l := measure()
				l.Op = op.limit
				limitRuns[op.limit] = append(limitRuns[op.limit], l)
			}
			if embedded != nil && op.limit != "" {
				embeddedRuns = append(embeddedRuns, drive(cfg, op.name, embedded.base, on(we, op.fn)))
			}
			runs = append(runs, withCPU(srv.cmd, func() Result {
				if embedded == nil {
					return drive(cfg, op.name, srv.base, on(w, op.fn))
				}
				return withDBCPU(func() Result { return drive(cfg, op.name, srv.base, on(w, op.fn)) })
			}))
			if op.limit == "" {
				break // nothing to compare with: one run
			}
		}
		r := median(runs)
		if _, ok := limits[op.limit]; ok {
			l := median(limitRuns[op.limit][len(limitRuns[op.limit])-len(runs):])
			r.OfLimit, r.LimitOp = r.PerSecond/l.PerSecond, op.limit
		}
		if len(embeddedRuns) > 0 {
			if e := median(embeddedRuns); e.PerSecond > 0 {
				r.OfEmbedded = r.PerSecond / e.PerSecond
			}
		}
		if op.limit == hashes && report.LoginLimit > 0 {
			r.OfLimit, r.LimitOp = r.PerSecond/report.LoginLimit, hashes
		}
		report.Results = append(report.Results, r)
	}
	for _, name := range []string{withStore, bare} {
		if len(limitRuns[name]) > 0 {
			report.Results = append(report.Results, median(limitRuns[name]))
		}
	}
	report.ServerPeakRSS = peakRSS(srv.cmd.Process.Pid)

	data, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, data, 0o644); err != nil {
		return err
	}
	printTable(os.Stdout, report)
	for _, r := range report.Results {
		if r.Errors > 0 {
			return fmt.Errorf("%s had %d errors", r.Op, r.Errors)
		}
	}
	return nil
}

func printTable(w io.Writer, r Report) {
	fmt.Fprintf(w, "%s store, %d CPUs, %d clients, %.0fs per run, %s; one password hash %.0f ms (login limit: %.1f hashes/s in parallel)\n",
		r.Store, r.CPUs, r.Clients, r.DurationSec, r.Go, r.HashMs, r.LoginLimit)
	if r.Store == "postgres" {
		fmt.Fprintf(w, "operations with a limit: median of %d runs, each after a run of its limit and one on the embedded store (of bbolt)\n\n", r.Runs)
	} else {
		fmt.Fprintf(w, "operations with a limit: median of %d runs, each after a run of its limit\n\n", r.Runs)
	}
	percent := func(f float64) string {
		if f <= 0 {
			return ""
		}
		return fmt.Sprintf("%.0f%%", f*100)
	}
	header := fmt.Sprintf("%-42s %10s %9s %9s %9s %7s %7s %8s %8s", "operation", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "shed", "CPU µs", "of limit")
	if r.Store == "postgres" {
		header += fmt.Sprintf(" %9s %9s", "of bbolt", "DB CPU µs")
	}
	fmt.Fprintln(w, header)
	for _, x := range r.Results {
		cpu := ""
		if x.CPUPerRequestUs > 0 {
			cpu = fmt.Sprintf("%.0f", x.CPUPerRequestUs)
		}
		line := fmt.Sprintf("%-42s %10.0f %9.2f %9.2f %9.2f %7d %7d %8s %8s", x.Op, x.PerSecond, x.P50ms, x.P99ms, x.P999ms, x.Errors, x.Shed, cpu, percent(x.OfLimit))
		if r.Store == "postgres" {
			db := ""
			if x.DBCPUPerRequestUs > 0 {
				db = fmt.Sprintf("%.0f", x.DBCPUPerRequestUs)
			}
			line += fmt.Sprintf(" %9s %9s", percent(x.OfEmbedded), db)
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	fmt.Fprintf(w, "\nCPU µs: the serving process's CPU time per request (Tether's, or the limit's; not the database's)\n")
	if r.Store == "postgres" {
		fmt.Fprintf(w, "DB CPU µs: the CPU time of this machine's postgres processes per request\n")
	}
	fmt.Fprintf(w, "server peak memory (RSS): %.0f MiB\n", float64(r.ServerPeakRSS)/(1<<20))
}

// client is one keep-alive connection's worth of state.
type client struct {
	http *http.Client
	base string
	// per-client session state for the token operations
	access, refresh, device string
	// key is the handset key of a keyed session.
	key *dpop.Key
}

func newHTTP(clients int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: clients * 2, MaxIdleConnsPerHost: clients * 2, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
}

func (c *client) do(method, path, auth string, body any, into any) error {
	return c.send(method, path, auth, body, into, nil)
}

// send is do with a DPoP proof by key, when key is not nil.
func (c *client) send(method, path, auth string, body any, into any, key *dpop.Key) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if key != nil {
		proof, err := key.Proof(method, c.base+path, "")
		if err != nil {
			return err
		}
		req.Header.Set("DPoP", proof)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		// Shed: the server said when to come back.
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return shedError{retryAfter: time.Duration(max(secs, 1)) * time.Second}
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %.200s", method, path, resp.StatusCode, data)
	}
	if into != nil {
		return json.Unmarshal(data, into)
	}
	return nil
}

// unshed runs fn until the server takes it: a shed attempt waits as
// told and goes again (a minute at most).
func unshed(fn func() error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := fn()
		var shed shedError
		if !errors.As(err, &shed) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(shed.retryAfter)
	}
}

// shedError is a request the server shed (503 server_busy): not an
// error of the run, and not a completion; the client waits as told.
type shedError struct{ retryAfter time.Duration }

func (e shedError) Error() string { return fmt.Sprintf("shed, retry after %s", e.retryAfter) }

// drive runs fn from every client for the configured time and measures it.
func drive(cfg config, name, base string, fn func(c *client, i int) error) Result {
	hc := newHTTP(cfg.clients)
	var mu sync.Mutex
	var all []time.Duration
	var errs, shed atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(cfg.duration)
	var wg sync.WaitGroup
	for i := range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &client{http: hc, base: base}
			var lat []time.Duration
			for time.Now().Before(deadline) {
				start := time.Now()
				err := fn(c, i)
				end := time.Now()
				// Only what completes inside the window counts: a request
				// the deadline caught in flight is neither a completion
				// nor an error of the window (counting it would add one
				// per client to every run, which for logins doubles the
				// figure).
				if end.After(deadline) {
					break
				}
				var shedErr shedError
				if errors.As(err, &shedErr) {
					shed.Add(1)
					// As an app does: come back when told (not past the
					// window).
					time.Sleep(min(shedErr.retryAfter, time.Until(deadline)))
					continue
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat = append(lat, end.Sub(start))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	hc.CloseIdleConnections()
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "%s: first error: %v\n", name, e)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	return Result{
		Op: name, Requests: len(all), Errors: int(errs.Load()), Shed: int(shed.Load()),
		PerSecond: float64(len(all)) / cfg.duration.Seconds(),
		P50ms:     q(0.50), P99ms: q(0.99), P999ms: q(0.999),
	}
}

type server struct {
	cmd  *exec.Cmd
	base string
	dir  string
	key  string
	drop func() // drops the run's database schema, if any
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitReady(base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the server did not become ready")
}

// startServer makes a fresh store with an admin API key and serves it: in
// a temporary data directory, or, with a database URL, in a new schema of
// that database.
func startServer(bin, database string, extra ...string) (*server, error) {
	dir, err := os.MkdirTemp("", "tether-bench-*")
	if err != nil {
		return nil, err
	}
	where := []string{"--data", filepath.Join(dir, "data")}
	var drop func()
	if database != "" {
		schema := fmt.Sprintf("tether_bench_%d", time.Now().UnixNano())
		url, dropSchema, err := postgres.NewSchema(context.Background(), database, schema)
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("a schema for the run: %w", err)
		}
		where = append(where, "--store", url)
		drop = func() {
			if err := dropSchema(); err != nil {
				fmt.Fprintf(os.Stderr, "drop the run's schema %s: %v\n", schema, err)
			}
		}
	}
	out, err := exec.Command(bin, append([]string{"apikey", "create", "--role", "admin"}, where...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("apikey create: %w", err)
	}
	var startup float64
	s, err := serveExisting(bin, dir, append(where, extra...), strings.TrimSpace(string(out)), &startup)
	if s != nil {
		s.drop = drop
	}
	return s, err
}

// serveExisting serves the store where names (dir is removed at stop) and
// reports how long it took to become ready.
func serveExisting(bin, dir string, where []string, key string, startupMs *float64) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--addr", addr, "--log-level", "error",
		"--max-account-failures", "0", "--max-account-failures-total", "0", "--max-address-failures", "0", "--sweep-interval", "0",
		"--access-ttl", "1h", "--public-url", "http://" + addr}, where...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, base: "http://" + addr, dir: dir, key: key}
	if err := waitReady(s.base); err != nil {
		s.stop()
		return nil, err
	}
	*startupMs = float64(time.Since(start).Microseconds()) / 1000
	return s, nil
}

func (s *server) stop() {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err == nil {
		s.cmd.Wait()
	}
	os.RemoveAll(s.dir)
	if s.drop != nil {
		s.drop()
	}
}

// peakRSS reads a process's peak resident memory from /proc.
func peakRSS(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// withCPU runs a measurement and adds to its result the CPU time the
// process cmd runs spent in it, per request counted.
func withCPU(cmd *exec.Cmd, run func() Result) Result {
	before, ok := cpuTime(cmd.Process.Pid)
	r := run()
	after, ok2 := cpuTime(cmd.Process.Pid)
	if ok && ok2 && r.Requests > 0 {
		r.CPUPerRequestUs = float64((after - before).Microseconds()) / float64(r.Requests)
	}
	return r
}

// withDBCPU runs a measurement and adds to its result the CPU time the
// processes named postgres spent in it, per request counted.
func withDBCPU(run func() Result) Result {
	before := commandCPU("postgres")
	r := run()
	if after := commandCPU("postgres"); r.Requests > 0 && after > before {
		r.DBCPUPerRequestUs = float64((after - before).Microseconds()) / float64(r.Requests)
	}
	return r
}

// commandCPU is the CPU time the processes running the command name have
// used, from /proc: zero where there is none.
func commandCPU(name string) time.Duration {
	dirs, _ := os.ReadDir("/proc")
	var total time.Duration
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + d.Name() + "/comm"); err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		if t, ok := cpuTime(pid); ok {
			total += t
		}
	}
	return total
}

// cpuTime is the CPU time (user and system) process pid has used, from
// /proc/pid/stat: false where there is none.
func cpuTime(pid int) (time.Duration, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The fields after the command's name, which is in parentheses and
	// may hold spaces: state is the first, utime and stime the 12th and
	// 13th, in clock ticks of 1/100 s (USER_HZ on Linux).
	i := bytes.LastIndex(data, []byte(") "))
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+2:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// imei makes the n-th valid IMEI of the run.
func imei(n int) string {
	body := fmt.Sprintf("35%012d", n)
	return body + string(device.LuhnDigit(body))
}

func payload(imeiStr string) map[string]any {
	return map[string]any{
		"imei": imeiStr, "hasIccCard": true, "iccIds": []string{"89445001021983048261"},
		"osVersion":  map[string]any{"api": 34, "name": "14"},
		"deviceInfo": map[string]any{"manufacturer": "samsung", "model": "SM-G991B"},
		"appVersion": "3.2.1",
	}
}

// world is the seeded fleet: one worker and handset per client.
type world struct {
	introspectKey string
	key           string
	sessions      []*client
	// keyed are sessions of handsets with an enrolled key, renewed with
	// DPoP proofs.
	keyed []*client
	// oauth are sessions of an OAuth client (password grant), refreshed
	// at the token endpoint with the client's secret.
	oauth                  []*client
	clientID, clientSecret string
	registered             atomic.Int64
}

const benchPassword = "correct horse battery"

func seed(s *server, clients int) (*world, error) {
	admin := &client{http: newHTTP(clients), base: s.base}
	w := &world{key: s.key}
	var k struct {
		Key string `json:"key"`
	}
	if err := admin.do("POST", "/v1/api-keys", s.key, map[string]any{"role": "introspect"}, &k); err != nil {
		return nil, err
	}
	w.introspectKey = k.Key
	var cl struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := admin.do("POST", "/v1/oauth/clients", s.key, map[string]any{
		"client_name": "bench", "token_endpoint_auth_method": "client_secret_basic", "grant_types": []string{"password", "refresh_token"},
	}, &cl); err != nil {
		return nil, err
	}
	w.clientID, w.clientSecret = cl.ID, cl.Secret
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	w.sessions = make([]*client, clients)
	w.keyed = make([]*client, clients)
	w.oauth = make([]*client, clients)
	// A few at a time: each user costs a password hash on the server.
	gate := make(chan struct{}, 4)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gate <- struct{}{}
			defer func() { <-gate }()
			c := &client{http: admin.http, base: s.base}
			name := fmt.Sprintf("worker%03d", i)
			if err := c.do("POST", "/v1/users", s.key, map[string]any{"username": name, "password": benchPassword}, nil); err != nil {
				errs <- err
				return
			}
			if err := c.do("POST", "/v1/devices", s.key, map[string]any{"imei": imei(i), "assignedUsers": []string{name}}, nil); err != nil {
				errs <- err
				return
			}
			if err := unshed(func() error { return w.loginAs(c, i) }); err != nil {
				errs <- err
				return
			}
			w.sessions[i] = c
			// A second handset of the same worker, with a key.
			k, err := dpop.NewKey("EC")
			if err != nil {
				errs <- err
				return
			}
			if err := c.do("POST", "/v1/devices", s.key, map[string]any{"imei": imei(100_000 + i), "assignedUsers": []string{name}, "publicKey": k.PublicJWK()}, nil); err != nil {
				errs <- err
				return
			}
			kc := &client{http: admin.http, base: s.base, key: &k}
			var t tokens
			if err := unshed(func() error {
				return kc.send("POST", "/v1/auth/login", "", map[string]any{
					"username": name, "password": benchPassword, "persistent": true, "device": payload(imei(100_000 + i)),
				}, &t, &k)
			}); err != nil {
				errs <- err
				return
			}
			kc.access, kc.refresh, kc.device = t.AccessToken, t.RefreshToken, t.DeviceID
			w.keyed[i] = kc
			// A third session, of the OAuth client, on a third handset (a
			// login replaces the sessions of its handset).
			if err := c.do("POST", "/v1/devices", s.key, map[string]any{"imei": imei(200_000 + i), "assignedUsers": []string{name}}, nil); err != nil {
				errs <- err
				return
			}
			oc := &client{http: admin.http, base: s.base}
			dev, err := json.Marshal(payload(imei(200_000 + i)))
			if err != nil {
				errs <- err
				return
			}
			var ot oauthTokens
			if err := unshed(func() error {
				return oc.form("/oauth2/token", w.clientID, w.clientSecret, url.Values{
					"grant_type": {"password"}, "username": {name}, "password": {benchPassword},
					"scope": {"offline_access"}, "device": {string(dev)},
				}, &ot)
			}); err != nil {
				errs <- err
				return
			}
			oc.access, oc.refresh = ot.AccessToken, ot.RefreshToken
			w.oauth[i] = oc
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, fmt.Errorf("seed: %w", err)
	}
	admin.http.CloseIdleConnections()
	return w, nil
}

type tokens struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
	DeviceID     string `json:"deviceId"`
}

func (w *world) loginAs(c *client, i int) error {
	var t tokens
	err := c.do("POST", "/v1/auth/login", "", map[string]any{
		"username": fmt.Sprintf("worker%03d", i), "password": benchPassword, "persistent": true, "device": payload(imei(i)),
	}, &t)
	if err == nil {
		c.access, c.refresh, c.device = t.AccessToken, t.RefreshToken, t.DeviceID
	}
	return err
}

// Each operation uses the client's own seeded session, so clients never
// contend for one token.
func (w *world) own(c *client, i int) *client {
	s := w.sessions[i]
	s.http = c.http
	return s
}

func (w *world) renew(c *client, i int) error {
	s := w.own(c, i)
	var t tokens
	if err := s.do("POST", "/v1/auth/renew", "", map[string]any{"accessToken": s.access, "deviceId": s.device}, &t); err != nil {
		return err
	}
	s.access = t.AccessToken
	return nil
}

// renewProven renews a key-bound session's token with a DPoP proof,
// made by the load generator for each request as a handset would.
func (w *world) renewProven(c *client, i int) error {
	s := w.keyed[i]
	s.http = c.http
	var t tokens
	if err := s.send("POST", "/v1/auth/renew", "", map[string]any{"accessToken": s.access, "deviceId": s.device}, &t, s.key); err != nil {
		return err
	}
	s.access = t.AccessToken
	return nil
}

func (w *world) refresh(c *client, i int) error {
	s := w.own(c, i)
	var t tokens
	if err := s.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": s.refresh, "deviceId": s.device}, &t); err != nil {
		return err
	}
	s.access, s.refresh = t.AccessToken, t.RefreshToken
	return nil
}

type oauthTokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// oauthRefresh is refresh through the OAuth token endpoint, as a standard
// client does it: a form, and the client's secret in HTTP Basic. The
// scope has no openid, so no ID token is signed: the same work as the
// native refresh, behind the OAuth protocol.
func (w *world) oauthRefresh(c *client, i int) error {
	s := w.oauth[i]
	s.http = c.http
	var t oauthTokens
	if err := s.form("/oauth2/token", w.clientID, w.clientSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.refresh}}, &t); err != nil {
		return err
	}
	s.access, s.refresh = t.AccessToken, t.RefreshToken
	return nil
}

// form posts an OAuth form with client credentials in HTTP Basic.
func (c *client) form(path, id, secret string, form url.Values, into any) error {
	req, err := http.NewRequest("POST", c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return shedError{retryAfter: time.Duration(max(secs, 1)) * time.Second}
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("POST %s: %d %.200s", path, resp.StatusCode, data)
	}
	return json.Unmarshal(data, into)
}

func (w *world) me(c *client, i int) error {
	s := w.own(c, i)
	return s.do("GET", "/v1/auth/me", s.access, nil, nil)
}

func (w *world) introspect(c *client, i int) error {
	s := w.own(c, i)
	var in struct {
		Active bool `json:"active"`
	}
	if err := s.do("POST", "/v1/auth/introspect", w.introspectKey, map[string]any{"token": s.access}, &in); err != nil {
		return err
	}
	if !in.Active {
		return errors.New("introspection: inactive")
	}
	return nil
}

func (w *world) register(c *client, _ int) error {
	n := 1_000_000 + int(w.registered.Add(1))
	return c.do("POST", "/v1/devices", w.key, map[string]any{"imei": imei(n), "label": "bench"}, nil)
}

func (w *world) list(c *client, _ int) error {
	return c.do("GET", "/v1/devices?limit=50", w.key, nil, nil)
}

func (w *world) login(c *client, i int) error {
	return w.loginAs(w.own(c, i), i)
}

type limitServer struct {
	cmd  *exec.Cmd
	base string
	dir  string
}

// startLimit runs this binary's limit server in its own process.
func startLimit() (*limitServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tether-bench-limit-*")
	if err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "limit", "--addr", addr, "--data", dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l := &limitServer{cmd: cmd, base: "http://" + addr, dir: dir}
	if err := waitReady(l.base); err != nil {
		l.stop()
		return nil, err
	}
	return l, nil
}

func (l *limitServer) stop() {
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err == nil {
		l.cmd.Wait()
	}
	os.RemoveAll(l.dir)
}

// limitResults drives the limit handler with the renewal's request.
// measure drives the limit's server (query: "" or "?store=none"), and
// counts its CPU time.
func (l *limitServer) measure(cfg config, query string) Result {
	return withCPU(l.cmd, func() Result { return limitResults(cfg, l.base+query) })
}

func limitResults(cfg config, url string) Result {
	var tok atomic.Value
	c := &client{http: newHTTP(1), base: strings.Split(url, "?")[0]}
	var t struct {
		Token string `json:"token"`
	}
	if err := c.do("GET", "/token", "", nil, &t); err != nil {
		return Result{Errors: 1}
	}
	tok.Store(t.Token)
	path := "/renew"
	if strings.Contains(url, "store=none") {
		path = "/renew?store=none"
	}
	return drive(cfg, "limit", c.base, func(c *client, _ int) error {
		var out struct {
			Token string `json:"token"`
		}
		return c.do("POST", path, "", map[string]any{"accessToken": tok.Load().(string), "deviceId": "dev_bench"}, &out)
	})
}
