package main

import (
	"testing"

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
