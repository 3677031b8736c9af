// Command load is the load generator of local/bench/table, run as a process of its own so that its
// CPU is not the measured process's. It runs one closed-loop load, bounded in calls and time, and
// prints one JSON object (Report) on stdout:
//
//	load -mode http -url http://127.0.0.1:9000 -secret S -campaign ID -c 64 -d 10s -users 400
//	    POST /v1/claims as -users users (JWTs signed with -secret), unique request ids; outcome
//	    "granted" for 201, else the error envelope's code (sold_out, rate_limited, ...)
//	load -mode lib -redis 127.0.0.1:6379 -db 15 -campaign bench-grant -c 64 -d 10s -users 400
//	    rediscache.Cache.Claim, the library claim path the claim function calls, on a go-redis
//	    client with -c connections; -reset first empties -db and writes the bench campaigns
//	load -mode broker -endpoint 127.0.0.1:8081 -c 16 -d 5s
//	    -c producers send 256-byte messages to one topic while 4 simple consumers of one group
//	    receive and acknowledge them; outcome "acked" per message received and acknowledged
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"
	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/bench/internal/claimload"
	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq/rmqclient"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

// Report is what load prints.
type Report struct {
	Mode     string         `json:"mode"`
	C        int            `json:"c"`
	Calls    int            `json:"calls"`
	Seconds  float64        `json:"seconds"`
	Outcomes map[string]int `json:"outcomes"`
	Errors   int            `json:"errors"`
	FirstErr string         `json:"first_error,omitempty"`
	P50MS    float64        `json:"p50_ms"`
	P99MS    float64        `json:"p99_ms"`
	// SendSeconds (broker) is how long the sends took; Seconds runs until the last acknowledgement.
	SendSeconds float64 `json:"send_seconds,omitempty"`
}

func main() {
	mode := flag.String("mode", "http", "http, lib or broker")
	url := flag.String("url", "", "http: base URL of the HTTP triggers")
	secret := flag.String("secret", "", "http: JWT secret of the stack")
	campaign := flag.String("campaign", "", "http, lib: campaign id")
	c := flag.Int("c", 64, "clients, goroutines or producers")
	n := flag.Int("n", 2_000_000, "at most this many calls")
	d := flag.Duration("d", 10*time.Second, "at most this long")
	users := flag.Int("users", 400, "http, lib: distinct users")
	prefix := flag.String("rid", "r", "http, lib: request id prefix (ids are prefix + call index)")
	rate := flag.Int("rate", 0, "lib: per-user rate limit passed to Claim (0: none)")
	addr := flag.String("redis", "", "lib: Redis host:port")
	db := flag.Int("db", 15, "lib: logical database")
	reset := flag.Bool("reset", false, "lib: empty -db and write the bench campaigns first")
	endpoint := flag.String("endpoint", "", "broker: the broker's endpoint")
	flag.Parse()
	if *c < 1 || *c > 1024 || *d <= 0 || *d > 2*time.Minute || *n < 1 {
		fatal(errors.New("bad -c, -d or -n (1 ≤ c ≤ 1024, 0 < d ≤ 2m)"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *d+time.Minute)
	defer cancel()
	var res claimload.Result
	var sendTime time.Duration
	var err error
	switch *mode {
	case "http":
		res, err = httpLoad(ctx, *url, *secret, *campaign, *prefix, *c, *n, *d, *users)
	case "lib":
		res, err = libLoad(ctx, *addr, *db, *reset, *campaign, *prefix, *c, *n, *d, *users, *rate)
	case "broker":
		res, sendTime, err = brokerLoad(ctx, *endpoint, *c, *n, *d)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fatal(err)
	}
	rep := Report{Mode: *mode, C: *c, Calls: res.Calls, Seconds: res.Elapsed.Seconds(), Outcomes: res.Codes, Errors: res.Errs,
		P50MS: ms(res.Percentile(0.50)), P99MS: ms(res.Percentile(0.99)), SendSeconds: sendTime.Seconds()}
	if res.FirstErr != nil {
		rep.FirstErr = res.FirstErr.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fatal(err)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "load:", err)
	os.Exit(1)
}

func httpLoad(ctx context.Context, base, secret, campaign, prefix string, c, n int, d time.Duration, users int) (claimload.Result, error) {
	if base == "" || secret == "" || campaign == "" || users < 1 {
		return claimload.Result{}, errors.New("http needs -url, -secret, -campaign and -users ≥ 1")
	}
	tokens := make([]string, users)
	for i := range tokens {
		tok, err := auth.Issue(secret, fmt.Sprintf("bench-user-%d", i), auth.RoleUser, time.Hour, time.Now())
		if err != nil {
			return claimload.Result{}, err
		}
		tokens[i] = tok
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: c, MaxIdleConnsPerHost: c, MaxConnsPerHost: c, IdleConnTimeout: time.Minute,
	}}
	target := strings.TrimRight(base, "/") + "/v1/claims"
	return claimload.Run(ctx, c, n, d, func(ctx context.Context, i int) (string, error) {
		body := fmt.Sprintf(`{"campaign_id":%q,"request_id":"%s%d"}`, campaign, prefix, i)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return "", err
		}
		if resp.StatusCode == http.StatusCreated {
			return "granted", nil
		}
		var env struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &env) != nil || env.Error.Code == "" {
			return fmt.Sprintf("http_%d", resp.StatusCode), nil
		}
		return env.Error.Code, nil
	}), nil
}

func libLoad(ctx context.Context, addr string, db int, reset bool, campaign, prefix string, c, n int, d time.Duration, users, rate int) (claimload.Result, error) {
	if addr == "" || campaign == "" || users < 1 {
		return claimload.Result{}, errors.New("lib needs -redis, -campaign and -users ≥ 1")
	}
	// Configured like shared/wiring (timeouts, MaxRetries 1), with c connections.
	rdb := redis.NewClient(&redis.Options{
		Addr: addr, DB: db, DialTimeout: 2 * time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		PoolSize: c, MaxRetries: 1,
	})
	defer rdb.Close()
	cache := rediscache.New(rdb)
	if reset {
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			return claimload.Result{}, err
		}
		if err := claimload.Reset(ctx, cache); err != nil {
			return claimload.Result{}, err
		}
	}
	return claimload.Run(ctx, c, n, d, func(ctx context.Context, i int) (string, error) {
		return claimload.Claim(ctx, cache, rediscache.ClaimInput{
			UserID: fmt.Sprintf("bench-user-%d", i%users), CampaignID: campaign,
			RequestID: prefix + fmt.Sprint(i), Now: time.Now(), By: domain.ByClaim, RateLimit: rate,
		})
	}), nil
}

// brokerLoad: c producers send while 4 consumers receive and ack; each call is one Send, and the
// result's outcomes count "sent" and "acked" (messages acknowledged by the consumers until all sent
// ones are acked or 30 s after the producers stop). Elapsed runs until the last ack.
func brokerLoad(ctx context.Context, endpoint string, c, n int, d time.Duration) (claimload.Result, time.Duration, error) {
	if endpoint == "" {
		return claimload.Result{}, 0, errors.New("broker needs -endpoint")
	}
	rmqclient.ConfigureClientLogging(os.TempDir() + "/benefits-rocketmq-client-logs")
	const topic = "bench"
	cfg := func(group string) *rmq.Config {
		return &rmq.Config{Endpoint: endpoint, ConsumerGroup: group, Credentials: &credentials.SessionCredentials{}}
	}
	ps := make([]rmq.Producer, c)
	for i := range ps {
		p, err := rmq.NewProducer(cfg(""), rmq.WithTopics(topic))
		if err != nil {
			return claimload.Result{}, 0, err
		}
		if err := p.Start(); err != nil {
			return claimload.Result{}, 0, err
		}
		defer p.GracefulStop()
		ps[i] = p
	}
	var acked atomic.Int64
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var cwg sync.WaitGroup
	for range 4 {
		sc, err := rmq.NewSimpleConsumer(cfg("GID_bench"), rmq.WithSimpleAwaitDuration(200*time.Millisecond),
			rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{topic: rmq.SUB_ALL}))
		if err != nil {
			return claimload.Result{}, 0, err
		}
		if err := sc.Start(); err != nil {
			return claimload.Result{}, 0, err
		}
		defer sc.GracefulStop()
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for cctx.Err() == nil {
				mvs, _ := sc.Receive(cctx, 32, 30*time.Second)
				for _, mv := range mvs {
					if err := sc.Ack(cctx, mv); err == nil {
						acked.Add(1)
					}
				}
			}
		}()
	}
	body := make([]byte, 256)
	var worker atomic.Int64
	start := time.Now()
	res := claimload.Run(ctx, c, n, d, func(ctx context.Context, i int) (string, error) {
		// Calls take the producers in turn, so c workers keep c producers busy between them.
		p := ps[int(worker.Add(1)-1)%len(ps)]
		if _, err := p.Send(ctx, &rmq.Message{Topic: topic, Body: body}); err != nil {
			return "", err
		}
		return "sent", nil
	})
	sendTime := res.Elapsed
	sent := int64(res.Codes["sent"])
	for acked.Load() < sent && time.Since(start) < d+30*time.Second {
		time.Sleep(time.Millisecond)
	}
	res.Elapsed = time.Since(start)
	stop()
	cwg.Wait()
	res.Codes["acked"] = int(acked.Load())
	return res, sendTime, nil
}
