package apache

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	v2 "github.com/apache/rocketmq-clients/golang/v5/protocol/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// QueryRoute asks the gRPC endpoint for a topic's route, over TLS as the official clients dial it (the
// proxy's self-signed certificate: tlsTestModeEnable, proxy config/ProxyConfig.java).
func QueryRoute(ctx context.Context, endpoint, topic string) (v2.Code, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	// The proxy refuses requests without a client id (CLIENT_ID_REQUIRED; proxy grpc/v2/common/
	// GrpcMessagingApplication.java validateContext reads x-mq-client-id); our emulator does not ask.
	ctx = metadata.AppendToOutgoingContext(ctx, "x-mq-client-id", "local-apache-readiness", "x-mq-language", "GOLANG", "x-mq-protocol", "v2")
	resp, err := v2.NewMessagingServiceClient(conn).QueryRoute(ctx, &v2.QueryRouteRequest{
		Topic:     &v2.Resource{Name: topic},
		Endpoints: &v2.Endpoints{Scheme: v2.AddressScheme_IPv4, Addresses: []*v2.Address{{Host: "127.0.0.1", Port: 0}}},
	})
	if err != nil {
		return 0, err
	}
	return resp.GetStatus().GetCode(), nil
}

// waitReady waits until the proxy answers a route query (any status: the answer for a topic that does
// not exist is TOPIC_NOT_FOUND) and the JVMs are still alive.
func (b *Broker) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if !b.proxy.alive() || !b.namesrv.alive() {
			return fmt.Errorf("a JVM exited during start; see %s/*.out and %s/logs", b.dir, b.dir)
		}
		if _, err := QueryRoute(ctx, b.Endpoint(), "readiness-probe"); err == nil {
			return nil
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("gRPC endpoint %s not ready after %s: %v", b.Endpoint(), limit, last)
}

// waitRoutes waits until each topic's route query answers OK, so that a client started next finds it.
func (b *Broker) waitRoutes(ctx context.Context, topics []Topic) error {
	deadline := time.Now().Add(time.Minute)
	for _, t := range topics {
		for {
			code, err := QueryRoute(ctx, b.Endpoint(), t.Name)
			if err == nil && code == v2.Code_OK {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("topic %s has no route: code %v, err %v", t.Name, code, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}
