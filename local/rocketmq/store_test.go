package rocketmq

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
)

// Sends that arrive while an fsync runs share the next one, and every send is on disk when it returns.
func TestConcurrentSendsShareFsyncs(t *testing.T) {
	b, err := New(Config{DataDir: t.TempDir(), MinInvisible: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const senders, each = 16, 25
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := b.Send([]SendInput{{ID: fmt.Sprintf("m-%d-%d", g, i), Topic: "t", Body: []byte("x"), Type: v2.MessageType_NORMAL}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	sends, syncs := int64(senders*each), b.store.syncs.Load()
	if syncs == 0 || syncs >= sends {
		t.Fatalf("%d sends ran %d fsyncs; want fewer fsyncs than sends, and some", sends, syncs)
	}
	if got := b.store.synced.Load(); got != sends {
		t.Fatalf("the log is synced up to append %d, want all %d", got, sends)
	}
	t.Logf("%d sends, %d fsyncs", sends, syncs)
}

// A message whose send is written but not yet on disk is not delivered: its producer has not been
// told OK, and a crash would lose it.
func TestAMessageIsDeliveredOnlyOnceOnDisk(t *testing.T) {
	b, err := New(Config{DataDir: t.TempDir(), MinInvisible: time.Second, MinLongPolling: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	in := []SendInput{{ID: "m1", Topic: "t", Body: []byte("x"), Type: v2.MessageType_NORMAL}}
	_, stored, seq, err := b.sendLocked(in, b.now())
	if err != nil || seq == 0 {
		t.Fatalf("write: seq %d, %v", seq, err)
	}
	receive := func() int {
		ds, err := b.Receive(ReceiveInput{Group: "g", Topic: "t", Filter: "*", Batch: 8, Invisible: time.Second, Wait: 10 * time.Millisecond}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(ds)
	}
	if n := receive(); n != 0 {
		t.Fatalf("received %d messages before their send was on disk", n)
	}
	if err := b.commit(stored, seq); err != nil {
		t.Fatal(err)
	}
	if n := receive(); n != 1 {
		t.Fatalf("received %d messages after the fsync, want 1", n)
	}
}

// BenchmarkSendDurable is the broker's own cost of a send with the log on disk, without gRPC: the
// fsyncs it shares and the log writes.
func BenchmarkSendDurable(b *testing.B) {
	for _, senders := range []int{1, 16} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			br, err := New(Config{DataDir: b.TempDir(), MinInvisible: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := br.Send([]SendInput{{ID: fmt.Sprint("m", i), Topic: "t", Body: make([]byte, 512), Type: v2.MessageType_NORMAL}}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
			b.ReportMetric(float64(b.N)/float64(max(br.store.syncs.Load(), 1)), "sends/fsync")
		})
	}
}
