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

func TestSideAddSumsCountsAndKeepsTheWorsePercentiles(t *testing.T) {
	a := side{r: Report{Calls: 10, Seconds: 5, Outcomes: map[string]int{"granted": 10}, P50MS: 3, P99MS: 9, LoadCPU: 1}, cpu: "x", inst: instanceSampler{aliveSeconds: 2, samples: 1}}
	b := side{r: Report{Calls: 30, Seconds: 5, Outcomes: map[string]int{"granted": 20, "sold_out": 10}, Errors: 1, FirstErr: "e", P50MS: 2, P99MS: 12}, cpu: "y"}
	got := side{}.add(a).add(b)
	if got.r.Calls != 40 || got.r.Seconds != 10 || got.r.Outcomes["granted"] != 30 || got.r.Outcomes["sold_out"] != 10 ||
		got.r.Errors != 1 || got.r.FirstErr != "e" || got.r.P50MS != 3 || got.r.P99MS != 12 || got.r.LoadCPU != 1 {
		t.Fatalf("sum: %+v", got.r)
	}
	if got.r.perSec("granted") != 3 || got.cpu != "x / y" || got.inst.aliveSeconds != 2 || got.inst.samples != 1 {
		t.Fatalf("rate %v, cpu %q, inst %+v", got.r.perSec("granted"), got.cpu, got.inst)
	}
}
