// Command fn is a test function for the FC emulator: it reports what the runtime API gave it and
// can sleep, fail, panic or exit on request.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aliyun/fc-runtime-go-sdk/fc"
	"github.com/aliyun/fc-runtime-go-sdk/fccontext"
)

type request struct {
	SleepMS int    `json:"sleep_ms"`
	Fail    string `json:"fail"`
	Exit    bool   `json:"exit"`
}

type answer struct {
	PID        int    `json:"pid"`
	Concurrent int32  `json:"concurrent"`
	RequestID  string `json:"request_id"`
	Function   string `json:"function"`
	Deadline   bool   `json:"deadline"`
	Events     int    `json:"events"`
	Env        string `json:"env"`
	Raw        string `json:"raw,omitempty"`
}

var running atomic.Int32

func handle(ctx context.Context, raw json.RawMessage) (answer, error) {
	n := running.Add(1)
	defer running.Add(-1)
	a := answer{PID: os.Getpid(), Concurrent: n, Env: os.Getenv("FN_GREETING")}
	if c, ok := fccontext.FromContext(ctx); ok {
		a.RequestID, a.Function = c.RequestID, c.Function.Name
	}
	_, a.Deadline = ctx.Deadline()
	var req request
	if strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
		// A RocketMQ batch: fail when any message body asks to.
		var evs []struct {
			Data struct {
				Body string `json:"body"`
			} `json:"data"`
		}
		if err := json.Unmarshal(raw, &evs); err != nil {
			return a, err
		}
		a.Events = len(evs)
		for _, ev := range evs {
			if ev.Data.Body == "fail" {
				return a, errors.New("told to fail")
			}
		}
		if path := os.Getenv("FN_SPANS"); path != "" && len(evs) > 0 && strings.HasPrefix(evs[0].Data.Body, "slow") {
			// A slow batch: record when it ran, so a test can count the batches in flight at once.
			begin := time.Now()
			time.Sleep(400 * time.Millisecond)
			f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return a, err
			}
			defer f.Close()
			fmt.Fprintf(f, "%d,%d\n", begin.UnixNano(), time.Now().UnixNano())
			return a, nil
		}
		if path := os.Getenv("FN_RECORD"); path != "" {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return a, err
			}
			defer f.Close()
			for _, ev := range evs {
				f.WriteString(ev.Data.Body + "\n")
			}
		}
		return a, nil
	}
	_ = json.Unmarshal(raw, &req)
	a.Raw = string(raw)
	time.Sleep(time.Duration(req.SleepMS) * time.Millisecond)
	if req.Exit {
		os.Exit(3)
	}
	if req.Fail != "" {
		return a, errors.New(req.Fail)
	}
	return a, nil
}

// serve is the same function as a custom runtime: an HTTP server on FC_SERVER_PORT that answers every
// path (an HTTP trigger's request, or POST /invoke with an event) with what it was given.
func serve() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		ctx := fccontext.NewContext(r.Context(), &fccontext.FcContext{RequestID: r.Header.Get("x-fc-request-id"),
			Function: fccontext.Function{Name: r.Header.Get("x-fc-function-name")}})
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		a, err := handle(ctx, raw)
		a.Raw = r.Method + " " + r.URL.RequestURI() + " " + string(raw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Fn", "custom")
		_ = json.NewEncoder(w).Encode(a)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("FC_SERVER_PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		serve()
		return
	}
	fc.Start(handle)
}
