package main

import (
	"math"
	"os"
	"testing"
)

func TestCPUSinceListsLargestFirstAsShareOfOneCore(t *testing.T) {
	before := cpu{"stack": 1, "claim": 1, "redis": 5}
	after := cpu{"stack": 2, "claim": 4, "redis": 5, "ledger": 0.5}
	got := after.since(before, 2)
	if got != "claim 150%, stack 50%, ledger 25% of one core" {
		t.Fatalf("since: %q", got)
	}
	if got := before.since(before, 1); got != "(none seen)" {
		t.Fatalf("no change: %q", got)
	}
}

func TestProcCPUOfThisProcess(t *testing.T) {
	if v := procCPU(os.Getpid()); v < 0 || math.IsNaN(v) {
		t.Fatalf("procCPU: %v", v)
	}
	if v := procCPU(-1); v != 0 {
		t.Fatalf("procCPU of no process: %v", v)
	}
}

func TestRowNumbers(t *testing.T) {
	if num(ratio(1, 0)) != nil {
		t.Fatal("a ratio over zero must be null, not Inf")
	}
	for v, want := range map[float64]string{12345.6: "12346", 42.31: "42.3", 0.256: "0.26"} {
		if got := fmtNum(num(v)); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
	if fmtNum(nil) != "-" {
		t.Error("unmeasured must print as -")
	}
}
