package events_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tether/events"
	"tether/storage"
)

// readLines returns the events of a JSON lines file, failing on a line
// that is not one.
func readLines(t *testing.T, path string) []events.CloudEvent {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []events.CloudEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var ce events.CloudEvent
		if err := json.Unmarshal(sc.Bytes(), &ce); err != nil {
			t.Fatalf("%s: a line that is no event: %q", path, sc.Text())
		}
		out = append(out, ce)
	}
	return out
}

// TestFileSinkRotates: events are appended as JSON lines to a file of mode
// 0600, rotated past its size with the newest kept; a line left half
// written (a crash) is ended, so the next event has a line of its own.
func TestFileSinkRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	// A half-written line, as a crash leaves it.
	if err := os.WriteFile(path, []byte(`{"specversion":"1.0","id":"evt_cut`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	sink := events.Sink{Name: "file", Type: events.TypeFile, Path: path, MaxBytes: 4096, Keep: 2}
	d, err := events.New(context.Background(), s, events.Config{Sinks: []events.Sink{sink}}, fast(events.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	var sent []storage.Event
	for i := range 40 {
		e := newEvent(fmt.Sprintf("step.%02d", i), "ses_1")
		sent = append(sent, e)
		appendEvents(t, s, e)
	}
	waitFor(t, "the file sink to drain", func() bool {
		st, _ := d.Status(context.Background())
		return st[0].Pending == 0
	})
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v, %v", st, err)
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a third rotated file: %v", err)
	}
	// Oldest first: path.2, path.1, path; each within its size.
	var got []events.CloudEvent
	for _, p := range []string{path + ".2", path + ".1", path} {
		if st, err := os.Stat(p); err != nil || st.Size() > 4096+1024 {
			t.Fatalf("%s: %v, %v", p, st, err)
		}
		raw, _ := os.ReadFile(p)
		if p == path+".2" || p == path+".1" {
			if len(raw) == 0 {
				t.Errorf("%s is empty", p)
			}
		}
		got = append(got, readLinesSkippingCut(t, p)...)
	}
	if len(got) == 0 || len(got) >= len(sent) {
		t.Fatalf("%d events in the files kept; want the newest of %d, some rotated away", len(got), len(sent))
	}
	// The files kept hold the newest events, in order, the last one last.
	offset := len(sent) - len(got)
	for i, ce := range got {
		if ce.ID != sent[offset+i].ID {
			t.Fatalf("event %d of the files is %s, want %s", i, ce.Data.Action, sent[offset+i].Action)
		}
	}
}

// readLinesSkippingCut reads a file that may start with the line a crash
// cut short, which must be ended by a newline of its own.
func readLinesSkippingCut(t *testing.T, path string) []events.CloudEvent {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const cut = `{"specversion":"1.0","id":"evt_cut` + "\n"
	if len(raw) >= len(cut) && string(raw[:len(cut)]) == cut {
		tmp := filepath.Join(t.TempDir(), "rest")
		if err := os.WriteFile(tmp, raw[len(cut):], 0o600); err != nil {
			t.Fatal(err)
		}
		return readLines(t, tmp)
	}
	return readLines(t, path)
}

// TestFileSinkEndsCutLine: a line a crash left half written is ended
// before the next event, which gets a line of its own.
func TestFileSinkEndsCutLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	const cut = `{"specversion":"1.0","id":"evt_cut`
	if err := os.WriteFile(path, []byte(cut), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	sink := events.Sink{Name: "file", Type: events.TypeFile, Path: path}
	d, err := events.New(context.Background(), s, events.Config{Sinks: []events.Sink{sink}}, fast(events.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	e := newEvent("login", "ses_1")
	appendEvents(t, s, e)
	waitFor(t, "the event in the file", func() bool {
		st, _ := d.Status(context.Background())
		return st[0].Pending == 0
	})
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first, rest, ok := strings.Cut(string(raw), "\n")
	if !ok || first != cut {
		t.Fatalf("file: %q", raw)
	}
	var ce events.CloudEvent
	if err := json.Unmarshal([]byte(strings.TrimSuffix(rest, "\n")), &ce); err != nil || ce.ID != e.ID {
		t.Fatalf("the event's line %q: %v", rest, err)
	}
}
