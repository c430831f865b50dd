package events

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"tether/storage"
)

// Options tune a Dispatcher; the zero value takes the defaults.
type Options struct {
	// Source is the CloudEvents source; Config.Source wins when set.
	Source string
	// Holder names this instance in the sinks' leases; by default the
	// host name and a random suffix.
	Holder string
	// Lease is how long a sink's lease lasts unless renewed (30 s): how
	// long the sinks of an instance that died wait for another.
	Lease time.Duration
	// Poll is how often an idle sink looks for new events (250 ms).
	Poll time.Duration
	// Batch is how many events are read and sent at once (100).
	Batch int
	// BackoffBase and BackoffMax bound the wait between attempts at an
	// event that failed: it doubles from the base (1 s) up to the max
	// (5 min), each wait drawn at random between half and all of it.
	BackoffBase, BackoffMax time.Duration
	// Observer is told what is delivered and what fails, for metrics.
	Observer Observer
	Logger   *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Observer is told what a Dispatcher does.
type Observer interface {
	// Delivered counts events a sink took.
	Delivered(sink string, n int)
	// Failed counts failed attempts.
	Failed(sink string)
	// DeadLettered counts events given up.
	DeadLettered(sink string, n int)
}

// Store is what a Dispatcher needs of the store.
type Store interface {
	storage.Outbox
	storage.Audit
}

// Dispatcher delivers each configured sink's queue, one goroutine a sink.
type Dispatcher struct {
	store   Store
	opts    Options
	source  string
	runners []*runner
}

// runner is one sink's delivery.
type runner struct {
	cfg    Sink
	sender Sender

	mu     sync.Mutex
	status SinkStatus
}

// SinkStatus is what an instance knows of a sink.
type SinkStatus struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Target string `json:"target"`
	// Pending, Oldest and Dead are the store's (storage.OutboxStats).
	Pending int       `json:"pending"`
	Oldest  time.Time `json:"oldest,omitzero"`
	Dead    int       `json:"deadLetters"`
	// BacklogLimit is the sink's limit; OverLimit whether its backlog
	// reached it (and its oldest events were made dead letters) since
	// this instance started.
	BacklogLimit int  `json:"backlogLimit"`
	OverLimit    bool `json:"overLimit"`
	// Delivering is whether this instance holds the sink's lease.
	Delivering bool `json:"delivering"`
	// Delivered and Failed count this instance's deliveries and failed
	// attempts since it started.
	Delivered    uint64    `json:"delivered"`
	Failed       uint64    `json:"failed"`
	LastDelivery time.Time `json:"lastDelivery,omitzero"`
	LastError    string    `json:"lastError,omitempty"`
	LastErrorAt  time.Time `json:"lastErrorAt,omitzero"`
}

// New makes the dispatcher of cfg's sinks (cfg checked by Check), and
// keeps its routes in the store, so that every process writing to the
// store queues events for these sinks from now on.
func New(ctx context.Context, store Store, cfg Config, opts Options) (*Dispatcher, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	opts = withDefaults(opts)
	d := &Dispatcher{store: store, opts: opts, source: cfg.Source}
	if d.source == "" {
		d.source = opts.Source
	}
	if d.source == "" {
		d.source = DefaultSource()
	}
	for _, s := range cfg.Sinks {
		sender, err := NewSender(s)
		if err != nil {
			d.close()
			return nil, err
		}
		d.runners = append(d.runners, &runner{cfg: s, sender: sender, status: SinkStatus{
			Name: s.Name, Type: s.Type, Target: sender.Target(), BacklogLimit: s.BacklogLimit,
		}})
	}
	if err := store.SetEventRoutes(ctx, cfg.Routes()); err != nil {
		d.close()
		return nil, fmt.Errorf("events: keep the routes: %w", err)
	}
	return d, nil
}

func withDefaults(o Options) Options {
	if o.Holder == "" {
		host, _ := os.Hostname()
		o.Holder = printable(host, 64) + "-" + crand.Text()[:8]
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

func (d *Dispatcher) close() {
	for _, r := range d.runners {
		r.sender.Close()
	}
}

// Run delivers until ctx is done, then gives up its leases and closes the
// senders.
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range d.runners {
		wg.Go(func() { d.run(ctx, r) })
	}
	wg.Wait()
	d.close()
}

// Status describes every sink, the store's counts included.
func (d *Dispatcher) Status(ctx context.Context) ([]SinkStatus, error) {
	out := make([]SinkStatus, 0, len(d.runners))
	for _, r := range d.runners {
		st, err := d.store.OutboxStats(ctx, r.cfg.Name)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		s := r.status
		r.mu.Unlock()
		s.Pending, s.Oldest, s.Dead = st.Pending, st.Oldest, st.Dead
		out = append(out, s)
	}
	return out, nil
}

// runner returns the named sink's runner, or an error wrapping
// storage.ErrNotFound.
func (d *Dispatcher) runner(name string) (*runner, error) {
	for _, r := range d.runners {
		if r.cfg.Name == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("sink %q: %w", name, storage.ErrNotFound)
}

// DeadLetters pages through a configured sink's dead letters, oldest
// first.
func (d *Dispatcher) DeadLetters(ctx context.Context, sink, after string, limit int) (storage.Page[storage.DeadLetter], error) {
	if _, err := d.runner(sink); err != nil {
		return storage.Page[storage.DeadLetter]{}, err
	}
	return d.store.ListDeadLetters(ctx, sink, after, limit)
}

// Replay puts a configured sink's dead letters with the given Seqs (all of
// them when seqs is nil) back at the tail of its queue, and records it in
// the audit trail, in the same transaction, as stamp marks its actor. It
// returns how many it put back.
func (d *Dispatcher) Replay(ctx context.Context, sink string, seqs []uint64, stamp func(*storage.Event)) (int, error) {
	if _, err := d.runner(sink); err != nil {
		return 0, err
	}
	now := d.opts.Now()
	e := storage.NewEvent(ctx, now, "events.replay", "success", "")
	stamp(&e)
	e.Detail = map[string]string{"sink": sink}
	if seqs == nil {
		e.Detail["seqs"] = "all"
	} else {
		e.Detail["seqs"] = fmt.Sprint(seqs)
	}
	return d.store.ReplayDeadLetters(ctx, sink, seqs, now, storage.WithEvents(e))
}

// Sinks names the configured sinks.
func (d *Dispatcher) Sinks() []string {
	var names []string
	for _, r := range d.runners {
		names = append(names, r.cfg.Name)
	}
	return names
}

// ErrNoSink is returned for a sink name that is not configured.
var ErrNoSink = errors.New("no such sink")

// Test sends a test event (action events.test, not kept in the store) to
// the named sink directly, and returns what the receiver answered.
func (d *Dispatcher) Test(ctx context.Context, name string) (string, error) {
	for _, r := range d.runners {
		if r.cfg.Name == name {
			return TestSink(ctx, r.cfg, d.source)
		}
	}
	return "", fmt.Errorf("%w %q", ErrNoSink, name)
}

// TestSink sends a test event (action events.test, kept nowhere) to the
// sink s describes, on a connection of its own, and returns what the
// receiver answered: a webhook's status and the start of its body, or
// where a syslog or file sink put it.
func TestSink(ctx context.Context, s Sink, source string) (string, error) {
	e := storage.Event{
		ID: storage.NewID(storage.PrefixEvent), Time: time.Now().UTC(),
		Action: "events.test", Outcome: "success", Actor: "cli",
	}
	sender, err := NewSender(s)
	if err != nil {
		return "", err
	}
	defer sender.Close()
	return sendTest(ctx, sender, NewCloudEvent(source, storage.OutboxEntry{Sink: s.Name, Event: e}))
}

// DefaultSource is the CloudEvents source without a configured one:
// urn:tether: and the host's name.
func DefaultSource() string {
	host, _ := os.Hostname()
	return "urn:tether:" + printable(host, 255)
}

func (d *Dispatcher) run(ctx context.Context, r *runner) {
	log := d.opts.Logger.With("sink", r.cfg.Name)
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := d.store.ReleaseSink(rctx, r.cfg.Name, d.opts.Holder); err != nil {
			log.Warn("events: release the sink's lease", "error", err)
		}
	}()
	for {
		now := d.opts.Now()
		held, err := d.store.LeaseSink(ctx, r.cfg.Name, d.opts.Holder, now, now.Add(d.opts.Lease))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Error("events: lease the sink", "error", err)
		case held:
			d.holding(ctx, r, log)
			continue
		}
		if !sleep(ctx, d.opts.Lease/3) {
			return
		}
	}
}

// holding delivers r's queue while this instance holds its lease, renewed
// every third of its term by a heartbeat; when a renewal fails, delivery
// stops at once, before another instance may take the sink over.
func (d *Dispatcher) holding(ctx context.Context, r *runner, log *slog.Logger) {
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	r.setDelivering(true)
	defer r.setDelivering(false)
	go func() {
		defer stop()
		for sleep(hctx, d.opts.Lease/3) {
			now := d.opts.Now()
			held, err := d.store.LeaseSink(hctx, r.cfg.Name, d.opts.Holder, now, now.Add(d.opts.Lease))
			if hctx.Err() != nil {
				return
			}
			if err != nil || !held {
				log.Warn("events: the sink's lease was lost; delivery stops", "error", err)
				return
			}
		}
	}()
	var retryAt, lastBacklogCheck time.Time // when the failed head goes again
	failures := 0
	for hctx.Err() == nil {
		now := d.opts.Now()
		if now.Before(retryAt) {
			if !sleep(hctx, retryAt.Sub(now)) {
				return
			}
			continue
		}
		if now.Sub(lastBacklogCheck) >= 10*d.opts.Poll {
			lastBacklogCheck = now
			d.trimBacklog(hctx, r, log)
		}
		var wait time.Duration
		wait, failures = d.deliver(hctx, r, log, failures)
		if failures > 0 {
			retryAt = d.opts.Now().Add(wait)
			continue
		}
		if wait > 0 && !sleep(hctx, wait) {
			return
		}
	}
}

func (r *runner) setDelivering(on bool) {
	r.mu.Lock()
	r.status.Delivering = on
	r.mu.Unlock()
}

// sleep waits for d, or until ctx is done; it reports whether ctx is not.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deliver sends the head of r's queue once, and returns how long to wait
// before the next round and how many attempts in a row have failed.
func (d *Dispatcher) deliver(ctx context.Context, r *runner, log *slog.Logger, failures int) (time.Duration, int) {
	name := r.cfg.Name
	entries, err := d.store.ReadOutbox(ctx, name, d.opts.Batch)
	if err != nil {
		log.Error("events: read the outbox", "error", err)
		return d.opts.Poll, failures
	}
	if len(entries) == 0 {
		return d.opts.Poll, 0
	}
	ces := make([]CloudEvent, len(entries))
	for i, e := range entries {
		ces[i] = NewCloudEvent(d.source, e)
	}
	// Sent a few at a time, each few acknowledged as it is taken: what a
	// crash sends twice is at most one chunk.
	n := 0
	var sendErr error
	for n < len(ces) && sendErr == nil {
		chunk := ces[n:min(n+ackEvery, len(ces))]
		var k int
		k, sendErr = r.sender.Send(ctx, chunk)
		if k > 0 {
			d.acknowledge(ctx, r, log, entries[n:n+k])
		}
		n += k
	}
	if sendErr == nil {
		return 0, 0
	}
	if ctx.Err() != nil {
		return 0, failures
	}
	now := d.opts.Now()
	r.mu.Lock()
	r.status.Failed++
	r.status.LastError, r.status.LastErrorAt = sendErr.Error(), now
	r.mu.Unlock()
	if d.opts.Observer != nil {
		d.opts.Observer.Failed(name)
	}
	// What will never be taken, and what waited past its sink's MaxAge,
	// become dead letters; the rest waits and goes again, in order.
	var dead []uint64
	var perm *PermanentError
	if errors.As(sendErr, &perm) {
		dead = append(dead, entries[n].Seq)
	} else {
		for _, e := range entries[n:] {
			if now.Sub(e.Queued) <= time.Duration(r.cfg.MaxAge) {
				break
			}
			dead = append(dead, e.Seq)
		}
	}
	if len(dead) > 0 {
		log.Warn("events: dead letters", "count", len(dead), "reason", sendErr.Error())
		if err := d.store.DeadLetter(ctx, name, dead, now, sendErr.Error()); err != nil {
			log.Error("events: make dead letters", "error", err)
			return d.opts.Poll, failures
		}
		if d.opts.Observer != nil {
			d.opts.Observer.DeadLettered(name, len(dead))
		}
		return 0, 0
	}
	failures++
	log.Warn("events: delivery failed; will retry", "error", sendErr.Error(), "attempts", failures)
	return d.backoff(failures), failures
}

// ackEvery is how many events are sent between acknowledgements.
const ackEvery = 16

// acknowledge removes delivered entries from the queue and counts them.
func (d *Dispatcher) acknowledge(ctx context.Context, r *runner, log *slog.Logger, entries []storage.OutboxEntry) {
	if err := d.store.AckOutbox(ctx, r.cfg.Name, seqs(entries)); err != nil {
		// They go again: at least once.
		log.Error("events: acknowledge delivered events", "error", err)
	}
	r.mu.Lock()
	r.status.Delivered += uint64(len(entries))
	r.status.LastDelivery = d.opts.Now()
	r.mu.Unlock()
	if d.opts.Observer != nil {
		d.opts.Observer.Delivered(r.cfg.Name, len(entries))
	}
}

// backoff is the wait after the nth failure in a row: the base doubled
// n-1 times, capped, drawn at random between half and all of it.
func (d *Dispatcher) backoff(n int) time.Duration {
	w := d.opts.BackoffBase
	for i := 1; i < n && w < d.opts.BackoffMax; i++ {
		w *= 2
	}
	w = min(w, d.opts.BackoffMax)
	return w/2 + rand.N(w/2+1)
}

// trimBacklog makes dead letters of the oldest events past the sink's
// backlog limit.
func (d *Dispatcher) trimBacklog(ctx context.Context, r *runner, log *slog.Logger) {
	st, err := d.store.OutboxStats(ctx, r.cfg.Name)
	if err != nil {
		log.Error("events: outbox stats", "error", err)
		return
	}
	over := st.Pending - r.cfg.BacklogLimit
	if over <= 0 {
		return
	}
	r.mu.Lock()
	r.status.OverLimit = true
	r.mu.Unlock()
	reason := fmt.Sprintf("the backlog passed its limit of %d", r.cfg.BacklogLimit)
	log.Error("events: "+reason+"; the oldest events become dead letters", "count", over)
	for over > 0 {
		entries, err := d.store.ReadOutbox(ctx, r.cfg.Name, min(over, storage.MaxPageSize))
		if err != nil || len(entries) == 0 {
			return
		}
		if err := d.store.DeadLetter(ctx, r.cfg.Name, seqs(entries), d.opts.Now(), reason); err != nil {
			log.Error("events: make dead letters", "error", err)
			return
		}
		if d.opts.Observer != nil {
			d.opts.Observer.DeadLettered(r.cfg.Name, len(entries))
		}
		over -= len(entries)
	}
}

func seqs(entries []storage.OutboxEntry) []uint64 {
	out := make([]uint64, len(entries))
	for i, e := range entries {
		out[i] = e.Seq
	}
	return out
}
