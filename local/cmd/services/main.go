// Command services runs a command with private MariaDB and Redis servers, exporting their addresses to
// it, and stops the servers afterwards whatever the command's outcome (also on Ctrl-C):
//
//	go run ./local/cmd/services -- go test ./...
//
// With --redis-cluster it also starts a private Redis Cluster (three masters with a replica each) and
// exports its seeds; tests use it when BENEFITS_TEST_REDIS_MODE=cluster:
//
//	go run ./local/cmd/services --redis-cluster -- sh -c 'BENEFITS_TEST_REDIS_MODE=cluster go test ./shared/...'
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/benefit-issuance/benefits/local/services"
)

func main() {
	args := os.Args[1:]
	cluster := false
	if len(args) > 0 && args[0] == "--redis-cluster" {
		cluster, args = true, args[1:]
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: services [--redis-cluster] -- command [args...]")
		os.Exit(2)
	}
	os.Exit(run(args, cluster))
}

func run(args []string, cluster bool) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	m, err := services.StartMariaDB(ctx, services.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		return 1
	}
	defer m.Stop()
	fmt.Fprintf(os.Stderr, "services: private MariaDB on %s (%.1fs)\n", m.Addr(), time.Since(start).Seconds())
	start = time.Now()
	r, err := services.StartRedis(ctx, services.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		return 1
	}
	defer r.Stop()
	fmt.Fprintf(os.Stderr, "services: private Redis on %s (%.1fs)\n", r.Addr(), time.Since(start).Seconds())
	env := append(os.Environ(), services.EnvMySQLBase+"="+m.DSN(""), services.EnvRedisAddr+"="+r.Addr())
	if cluster {
		start = time.Now()
		c, err := services.StartRedisCluster(ctx, services.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "services:", err)
			return 1
		}
		defer c.Stop()
		fmt.Fprintf(os.Stderr, "services: private Redis Cluster on %s (%.1fs)\n", strings.Join(c.Addrs(), ","), time.Since(start).Seconds())
		env = append(env, services.EnvRedisCluster+"="+strings.Join(c.Addrs(), ","))
	}

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if exit.ExitCode() < 0 {
			return 1
		}
		return exit.ExitCode()
	default:
		fmt.Fprintln(os.Stderr, "services:", err)
		return 1
	}
}
