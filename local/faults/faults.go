// Package faults runs Toxiproxy in process: one TCP proxy per dependency and Toxiproxy's own REST
// API, so tests and people at a terminal cut or slow MySQL, Redis and the broker with the usual
// Toxiproxy clients (github.com/Shopify/toxiproxy/v2/client, toxiproxy-cli, curl).
package faults

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/gorilla/mux"
	"github.com/rs/zerolog"
)

// Server is a Toxiproxy API server with its proxies.
type Server struct {
	api  *toxiproxy.ApiServer
	http *http.Server
	ln   net.Listener
}

// Start serves the Toxiproxy REST API on addr ("127.0.0.1:0" for a free port). The routes are
// Toxiproxy's own handlers; the router is built here because ApiServer.Listen can neither pick a
// free port nor be stopped.
func Start(addr string) (*Server, error) {
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	r := mux.NewRouter()
	r.HandleFunc("/reset", api.ResetState).Methods("POST")
	r.HandleFunc("/proxies", api.ProxyIndex).Methods("GET")
	r.HandleFunc("/proxies", api.ProxyCreate).Methods("POST")
	r.HandleFunc("/populate", api.Populate).Methods("POST")
	r.HandleFunc("/proxies/{proxy}", api.ProxyShow).Methods("GET")
	r.HandleFunc("/proxies/{proxy}", api.ProxyUpdate).Methods("POST")
	r.HandleFunc("/proxies/{proxy}", api.ProxyDelete).Methods("DELETE")
	r.HandleFunc("/proxies/{proxy}/toxics", api.ToxicIndex).Methods("GET")
	r.HandleFunc("/proxies/{proxy}/toxics", api.ToxicCreate).Methods("POST")
	r.HandleFunc("/proxies/{proxy}/toxics/{toxic}", api.ToxicShow).Methods("GET")
	r.HandleFunc("/proxies/{proxy}/toxics/{toxic}", api.ToxicUpdate).Methods("POST")
	r.HandleFunc("/proxies/{proxy}/toxics/{toxic}", api.ToxicDelete).Methods("DELETE")
	r.HandleFunc("/version", api.Version).Methods("GET")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("toxiproxy API: %w", err)
	}
	s := &Server{api: api, ln: ln, http: &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}}
	go s.http.Serve(ln)
	return s, nil
}

// URL is the REST API's base URL.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Proxy adds a started proxy from a free loopback port to upstream and returns its address.
func (s *Server) Proxy(name, upstream string) (string, error) {
	p := toxiproxy.NewProxy(s.api, name, "127.0.0.1:0", upstream)
	if err := s.api.Collection.Add(p, true); err != nil {
		return "", fmt.Errorf("toxiproxy %s: %w", name, err)
	}
	return p.Listen, nil
}

// Close stops the API and every proxy, cutting their connections.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	s.api.Collection.Clear()
}
