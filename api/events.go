package api

import (
	"context"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"tether/events"
	"tether/storage"
)

// The event sinks (docs/events.md): their state, their dead letters and
// replaying them, for managers.

type sinksView struct {
	Sinks []events.SinkStatus `json:"sinks"`
}

func (s *server) listSinks(c *fiber.Ctx) error {
	if err := principal(c).RequireFleet(); err != nil {
		return err
	}
	out := sinksView{Sinks: []events.SinkStatus{}}
	if s.Events != nil {
		st, err := s.Events.Status(c.UserContext())
		if err != nil {
			return err
		}
		out.Sinks = append(out.Sinks, st...)
	}
	return c.JSON(out)
}

type deadLetterView struct {
	Seq    uint64        `json:"seq"`
	Queued time.Time     `json:"queued"`
	Failed time.Time     `json:"failed"`
	Reason string        `json:"reason"`
	Event  storage.Event `json:"event"`
}

func (s *server) listDeadLetters(c *fiber.Ctx) error {
	if err := principal(c).RequireFleet(); err != nil {
		return err
	}
	if s.Events == nil {
		return storage.ErrNotFound
	}
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	page, err := s.Events.DeadLetters(c.UserContext(), c.Params("name"), query(c, "cursor"), limit)
	if err != nil {
		return err
	}
	out := listView[deadLetterView]{Items: make([]deadLetterView, 0, len(page.Items)), NextCursor: page.Next}
	for _, d := range page.Items {
		out.Items = append(out.Items, deadLetterView{Seq: d.Seq, Queued: d.Queued, Failed: d.Failed, Reason: d.Reason, Event: d.Event})
	}
	return c.JSON(out)
}

type replayRequest struct {
	// Seqs are the dead letters to replay; none, all of them.
	Seqs []uint64 `json:"seqs"`
}

func (s *server) replayDeadLetters(c *fiber.Ctx) error {
	if err := principal(c).RequireFleet(); err != nil {
		return err
	}
	if s.Events == nil {
		return storage.ErrNotFound
	}
	var req replayRequest
	if len(c.Body()) > 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	switch {
	case req.Seqs != nil && len(req.Seqs) == 0:
		return invalidRequest("seqs is empty: name the dead letters to replay, or send no seqs to replay them all")
	case len(req.Seqs) > storage.MaxPageSize:
		return invalidRequest("seqs names more than %d dead letters: replay them in parts, or all at once without seqs", storage.MaxPageSize)
	}
	n, err := s.Events.Replay(c.UserContext(), c.Params("name"), req.Seqs, principal(c).Stamp)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"replayed": n})
}

// Delivered implements events.Observer.
func (m *Metrics) Delivered(sink string, n int) {
	m.sinkDelivered.WithLabelValues(sink).Add(float64(n))
}

// Failed implements events.Observer.
func (m *Metrics) Failed(sink string) { m.sinkFailed.WithLabelValues(sink).Inc() }

// DeadLettered implements events.Observer.
func (m *Metrics) DeadLettered(sink string, n int) { m.sinkDead.WithLabelValues(sink).Add(float64(n)) }

// sinkStats is a collector of the sinks' queues, read at most every
// Metrics.StatsEvery.
type sinkStats struct {
	every                          time.Duration
	events                         *events.Dispatcher
	backlog, oldest, dead, overLim *prometheus.Desc

	mu   sync.Mutex
	last []events.SinkStatus
	at   time.Time
}

func newSinkStats(every time.Duration, d *events.Dispatcher) *sinkStats {
	label := []string{"sink"}
	return &sinkStats{
		every: every, events: d,
		backlog: prometheus.NewDesc("tether_events_backlog", "Audit events waiting for the sink.", label, nil),
		oldest:  prometheus.NewDesc("tether_events_oldest_age_seconds", "Age of the oldest event waiting for the sink (0 when none is).", label, nil),
		dead:    prometheus.NewDesc("tether_events_dead_letters", "Events the sink could not take, kept to be replayed.", label, nil),
		overLim: prometheus.NewDesc("tether_events_backlog_over_limit", "1 when the sink's backlog reached its limit since this server started (its oldest events became dead letters).", label, nil),
	}
}

func (c *sinkStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.oldest
	ch <- c.dead
	ch <- c.overLim
}

func (c *sinkStats) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.at.IsZero() || time.Since(c.at) >= c.every {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if st, err := c.events.Status(ctx); err == nil {
			c.last, c.at = st, time.Now()
		}
		cancel()
	}
	last := c.last
	c.mu.Unlock()
	for _, st := range last {
		age := 0.0
		if !st.Oldest.IsZero() {
			age = max(0, time.Since(st.Oldest).Seconds())
		}
		over := 0.0
		if st.OverLimit {
			over = 1
		}
		ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(st.Pending), st.Name)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, st.Name)
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(st.Dead), st.Name)
		ch <- prometheus.MustNewConstMetric(c.overLim, prometheus.GaugeValue, over, st.Name)
	}
}
