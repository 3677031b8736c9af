package rocketmq_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"

	"github.com/benefit-issuance/benefits/local/rocketmq"
)

// BenchmarkEndToEnd sends b.N messages from P concurrent producers while four consumers of one group
// receive and acknowledge them; it reports messages per second produced and consumed end to end.
func BenchmarkEndToEnd(b *testing.B) {
	for _, producers := range []int{1, 16} {
		for _, durable := range []bool{false, true} {
			b.Run(fmt.Sprintf("producers=%d/durable=%v", producers, durable), func(b *testing.B) {
				cfg := rocketmq.Config{MinInvisible: time.Second, MinLongPolling: 100 * time.Millisecond}
				if durable {
					cfg.DataDir = b.TempDir()
				}
				broker, err := rocketmq.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				srv, err := rocketmq.Listen(broker, "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer func() { srv.Close(); broker.Close() }()
				topic := "bench"
				ps := make([]rmq.Producer, producers)
				for i := range ps {
					p, err := rmq.NewProducer(&rmq.Config{Endpoint: srv.Addr(), Credentials: &credentials.SessionCredentials{}}, rmq.WithTopics(topic))
					if err != nil {
						b.Fatal(err)
					}
					if err := p.Start(); err != nil {
						b.Fatal(err)
					}
					defer p.GracefulStop()
					ps[i] = p
				}
				var consumed atomic.Int64
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var cwg sync.WaitGroup
				for range 4 {
					c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: srv.Addr(), ConsumerGroup: "GID_bench", Credentials: &credentials.SessionCredentials{}},
						rmq.WithSimpleAwaitDuration(200*time.Millisecond), rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{topic: rmq.SUB_ALL}))
					if err != nil {
						b.Fatal(err)
					}
					if err := c.Start(); err != nil {
						b.Fatal(err)
					}
					defer c.GracefulStop()
					cwg.Add(1)
					go func() {
						defer cwg.Done()
						for ctx.Err() == nil {
							mvs, _ := c.Receive(ctx, 32, 30*time.Second)
							for _, mv := range mvs {
								if err := c.Ack(ctx, mv); err == nil {
									consumed.Add(1)
								}
							}
						}
					}()
				}
				body := make([]byte, 256)
				b.ResetTimer()
				start := time.Now()
				var next atomic.Int64
				var pwg sync.WaitGroup
				for _, p := range ps {
					pwg.Add(1)
					go func() {
						defer pwg.Done()
						for next.Add(1) <= int64(b.N) {
							if _, err := p.Send(context.Background(), &rmq.Message{Topic: topic, Body: body}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				pwg.Wait()
				produced := time.Since(start)
				for consumed.Load() < int64(b.N) && time.Since(start) < 2*time.Minute {
					time.Sleep(time.Millisecond)
				}
				total := time.Since(start)
				b.StopTimer()
				cancel()
				cwg.Wait()
				b.ReportMetric(float64(b.N)/produced.Seconds(), "produced/s")
				b.ReportMetric(float64(consumed.Load())/total.Seconds(), "consumed/s")
			})
		}
	}
}
