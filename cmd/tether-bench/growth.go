package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"tether/storage"
	"tether/storage/bolt"
)

// GrowthReport compares renewal on a small store with renewal on a large
// one, and says what the large store costs.
type GrowthReport struct {
	SmallDevices      int       `json:"smallDevices"`
	SmallSessions     int       `json:"smallSessions"`
	Devices           int       `json:"devices"`
	Sessions          int       `json:"sessions"`
	Runs              int       `json:"runs"`
	RunRatios         []float64 `json:"runRatios"`
	FillSeconds       float64   `json:"fillSeconds"`
	StoreBytes        int64     `json:"storeBytes"`
	BytesPerDevice    float64   `json:"bytesPerDevice"`
	BytesPerSession   float64   `json:"bytesPerSession"`
	StartupMs         float64   `json:"startupMs"`
	RenewSmall        Result    `json:"renewSmall"`
	RenewLarge        Result    `json:"renewLarge"`
	RenewLargeVsSmall float64   `json:"renewLargeVsSmall"`
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// fill loads devices handsets and sessions sessions into the store at path,
// in large transactions, and returns the bytes the store grew by for each.
func fill(path string, devices, sessions int) (perDevice, perSession float64, err error) {
	ctx := context.Background()
	s, err := bolt.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	base := fileSize(path)
	now := time.Now().UTC()
	yes := true
	ids := make([]string, devices)
	const chunk = 5000
	for i := 0; i < devices; i += chunk {
		var ds []storage.Device
		for j := i; j < min(i+chunk, devices); j++ {
			d := storage.Device{
				ID: storage.NewID(storage.PrefixDevice), IMEI: imei(5_000_000 + j), HasIccCard: &yes,
				IccIDs: []string{"89445001021983048261"}, OSAPI: 34, OSName: "14", Manufacturer: "samsung",
				Model: "SM-G991B", AppVersion: "3.2.1", Status: storage.DeviceEnrolled, Label: fmt.Sprintf("Van %d", j),
				Group: "fill", EnrolledAt: now, EnrolledBy: "cli", LastSeenAt: now, UpdatedAt: now,
			}
			ids[j] = d.ID
			ds = append(ds, d)
		}
		if err := s.CreateDevices(ctx, ds); err != nil {
			return 0, 0, err
		}
	}
	afterDevices := fileSize(path)
	replay := make([]byte, 600) // a sealed refresh answer is about this size
	for i := 0; i < sessions; i += 2 * chunk {
		var ss []storage.Session
		for j := i; j < min(i+2*chunk, sessions); j++ {
			fam, rt := make([]byte, 32), make([]byte, 32)
			rand.Read(fam)
			rand.Read(rt)
			ss = append(ss, storage.Session{
				ID: storage.NewID(storage.PrefixSession), UserID: fmt.Sprintf("usr_fill%07d", j), DeviceID: ids[j%devices],
				Persistent: true, CreatedAt: now, LastUsedAt: now, IdleTimeout: 720 * time.Hour, ExpiresAt: now.Add(2160 * time.Hour),
				FamilyHash: fam, RefreshHash: rt, PrevRefreshHash: rt, RotatedAt: now, Replay: replay,
				AccessJTI: rand.Text()[:22], AccessExpiresAt: now, ClientIP: "203.0.113.9", UserAgent: "okhttp/4.12.0",
			})
		}
		if err := s.LoadSessions(ctx, ss); err != nil {
			return 0, 0, err
		}
	}
	end := fileSize(path)
	if devices > 0 {
		perDevice = float64(afterDevices-base) / float64(devices)
	}
	if sessions > 0 {
		perSession = float64(end-afterDevices) / float64(sessions)
	}
	return perDevice, perSession, nil
}

// prepared is a store filled by fill, served.
type prepared struct {
	srv         *server
	bytes       int64
	perDevice   float64
	perSession  float64
	fillSeconds float64
	startupMs   float64
}

// prepare creates a store with an admin API key, fills it and serves it.
func prepare(cfg config, devices, sessions int) (*prepared, error) {
	dir, err := os.MkdirTemp("", "tether-growth-*")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	out, err := exec.Command(cfg.server, "apikey", "create", "--data", data, "--role", "admin").Output()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("apikey create: %w", err)
	}
	p := &prepared{}
	start := time.Now()
	db := filepath.Join(data, "tether.db")
	if p.perDevice, p.perSession, err = fill(db, devices, sessions); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.fillSeconds = time.Since(start).Seconds()
	p.bytes = fileSize(db)
	if p.srv, err = serveExisting(cfg.server, dir, []string{"--data", data}, strings.TrimSpace(string(out)), &p.startupMs); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// growth renews on a store of 1,000 handsets and 1,000 sessions and on one
// of devices handsets and sessions sessions, both served at once, in
// alternating runs (cfg.runs of each), and compares the medians.
func growth(cfg config, devices, sessions int, w io.Writer) (GrowthReport, error) {
	r := GrowthReport{Devices: devices, Sessions: sessions, SmallDevices: 1000, SmallSessions: 1000}

	small, err := prepare(cfg, r.SmallDevices, r.SmallSessions)
	if err != nil {
		return r, err
	}
	defer small.srv.stop()
	large, err := prepare(cfg, devices, sessions)
	if err != nil {
		return r, err
	}
	defer large.srv.stop()
	r.FillSeconds, r.StoreBytes, r.StartupMs = large.fillSeconds, large.bytes, large.startupMs
	r.BytesPerDevice, r.BytesPerSession = large.perDevice, large.perSession

	ws, err := seed(small.srv, cfg.clients)
	if err != nil {
		return r, err
	}
	wl, err := seed(large.srv, cfg.clients)
	if err != nil {
		return r, err
	}
	var smallRuns, largeRuns []Result
	for range max(cfg.runs, 1) {
		smallRuns = append(smallRuns, drive(cfg, "renew, small store", small.srv.base, ws.renew))
		largeRuns = append(largeRuns, drive(cfg, "renew, large store", large.srv.base, wl.renew))
	}
	r.Runs = len(smallRuns)
	r.RenewSmall, r.RenewLarge = median(smallRuns), median(largeRuns)
	for i := range smallRuns {
		if smallRuns[i].PerSecond > 0 {
			r.RunRatios = append(r.RunRatios, largeRuns[i].PerSecond/smallRuns[i].PerSecond)
		}
	}
	if r.RenewSmall.PerSecond > 0 {
		r.RenewLargeVsSmall = r.RenewLarge.PerSecond / r.RenewSmall.PerSecond
	}
	fmt.Fprintf(w, "store with %d handsets and %d sessions: %.0f MiB (%.0f bytes per handset, %.0f per session), filled in %.0fs\n",
		devices, sessions, float64(r.StoreBytes)/(1<<20), r.BytesPerDevice, r.BytesPerSession, r.FillSeconds)
	fmt.Fprintf(w, "start-up to ready: %.0f ms\n", r.StartupMs)
	fmt.Fprintf(w, "renew, median of %d alternating runs: %.0f/s with %d sessions, %.0f/s with %d (%.0f%%); p99 %.2f ms and %.2f ms\n",
		r.Runs, r.RenewSmall.PerSecond, r.SmallSessions, r.RenewLarge.PerSecond, sessions, r.RenewLargeVsSmall*100, r.RenewSmall.P99ms, r.RenewLarge.P99ms)
	fmt.Fprintf(w, "each run, large/small:")
	for _, x := range r.RunRatios {
		fmt.Fprintf(w, " %.0f%%", x*100)
	}
	fmt.Fprintln(w)
	errs := 0
	for _, x := range append(smallRuns, largeRuns...) {
		errs += x.Errors
	}
	if errs > 0 {
		return r, fmt.Errorf("%d errors during the growth runs", errs)
	}
	return r, nil
}
