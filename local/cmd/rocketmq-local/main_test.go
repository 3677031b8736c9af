package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"
	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/mq/rmqclient"
)

// The command as the README and the issue write it: start, serve the official client, stop at once
// on SIGTERM, and keep every acknowledged send across a restart with the same --data.
func TestCommandServesStopsAndRestartsFromData(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the command")
	}
	dir := t.TempDir()
	rmqclient.ConfigureClientLogging(filepath.Join(dir, "client-logs"))
	bin := filepath.Join(dir, "rocketmq-local")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	port, err := services.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	data := filepath.Join(dir, "data")
	home := filepath.Join(dir, "home")
	run := func() (*exec.Cmd, func() time.Duration) {
		cmd := exec.Command(bin, "--listen", addr, "--data", data, "--min-invisible", "1s", "--min-long-polling", "100ms")
		cmd.Env = append(os.Environ(), "HOME="+home)
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		if !sc.Scan() || !strings.Contains(sc.Text(), "serving RocketMQ 5 gRPC on "+addr) {
			t.Fatalf("first line %q", sc.Text())
		}
		go func() {
			for sc.Scan() {
			}
		}()
		return cmd, func() time.Duration {
			start := time.Now()
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit after SIGTERM: %v", err)
			}
			return time.Since(start)
		}
	}

	_, stop := run()
	p, err := rmq.NewProducer(&rmq.Config{Endpoint: addr, Credentials: &credentials.SessionCredentials{}}, rmq.WithTopics("kept"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"one", "two"} {
		if _, err := p.Send(context.Background(), &rmq.Message{Topic: "kept", Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	_ = p.GracefulStop()
	if took := stop(); took > 3*time.Second {
		t.Fatalf("SIGTERM took %s to stop the broker", took)
	}

	_, stop = run()
	defer stop()
	c, err := rmq.NewSimpleConsumer(&rmq.Config{Endpoint: addr, ConsumerGroup: "GID_cmd", Credentials: &credentials.SessionCredentials{}},
		rmq.WithSimpleAwaitDuration(200*time.Millisecond), rmq.WithSimpleSubscriptionExpressions(map[string]*rmq.FilterExpression{"kept": rmq.SUB_ALL}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.GracefulStop()
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		mvs, err := c.Receive(context.Background(), 2, 5*time.Second)
		var st *rmq.ErrRpcStatus
		if err != nil && !(errors.As(err, &st) && st.Code == int32(v2.Code_MESSAGE_NOT_FOUND)) {
			t.Fatal(err)
		}
		for _, mv := range mvs {
			got = append(got, string(mv.GetBody()))
		}
	}
	if strings.Join(got, ",") != "one,two" {
		t.Fatalf("after restart the topic holds %v, want one,two", got)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Fatalf("the broker wrote into the home folder: %v", entries)
	}
}
