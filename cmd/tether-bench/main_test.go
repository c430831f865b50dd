package main

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"tether"
	"tether/device"
)

func TestIMEIsAreValid(t *testing.T) {
	v := tether.NewValidator()
	if err := device.RegisterValidations(v); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range []int{0, 1, 63, 1_000_001, 5_099_999} {
		s := imei(n)
		if err := device.Validate(v, device.Payload{IMEI: s}, "", false); err != nil || seen[s] {
			t.Fatalf("imei(%d) = %s: %v (seen %v)", n, s, err, seen[s])
		}
		seen[s] = true
	}
}

func TestMedian(t *testing.T) {
	runs := []Result{{PerSecond: 300, Errors: 1}, {PerSecond: 100}, {PerSecond: 200, Errors: 2}}
	m := median(runs)
	if m.PerSecond != 200 || m.Errors != 3 {
		t.Fatalf("median = %+v; want 200/s with all 3 errors", m)
	}
	if runs[0].PerSecond != 300 {
		t.Fatal("median reordered its argument")
	}
}

// TestCPUTime: the CPU time read from /proc grows as this process works,
// by no more than the cores could give it, and a process that does not
// exist has none.
func TestCPUTime(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	pid := os.Getpid()
	start, ok := cpuTime(pid)
	if !ok {
		t.Fatal("no CPU time for this process")
	}
	began := time.Now()
	var sink uint64
	for now := start; now-start < 100*time.Millisecond; now, _ = cpuTime(pid) {
		if time.Since(began) > 10*time.Second {
			t.Fatalf("CPU time grew by %v in 10 s of work", now-start)
		}
		for i := range 1_000_000 {
			sink += uint64(i) * uint64(i)
		}
	}
	end, _ := cpuTime(pid)
	if wall := time.Since(began); end-start > time.Duration(runtime.NumCPU())*wall+20*time.Millisecond {
		t.Fatalf("CPU time grew by %v in %v of wall time on %d cores", end-start, wall, runtime.NumCPU())
	}
	if _, ok := cpuTime(1 << 30); ok {
		t.Fatal("CPU time for a process that does not exist")
	}
	_ = sink
}

// TestCommandCPU: the CPU time of the processes running a command counts
// this one's, and a command nothing runs has none.
func TestCommandCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	own, ok := cpuTime(os.Getpid())
	if !ok {
		t.Fatalf("this process's CPU time: %v, %v", own, ok)
	}
	if all := commandCPU(strings.TrimSpace(string(comm))); all < own {
		t.Fatalf("processes named %q used %v; this one alone %v", comm, all, own)
	}
	if none := commandCPU("no-such-command-here"); none != 0 {
		t.Fatalf("a command nothing runs used %v", none)
	}
}
