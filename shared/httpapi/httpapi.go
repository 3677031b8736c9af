// Package httpapi is the HTTP plumbing shared by the rules and claim functions: the contract's error
// envelope, bounded JSON bodies, routing that answers unknown routes and methods in the same envelope,
// and the contract itself (openapi.yaml).
package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/obs"
)

type errorBody struct {
	Error struct {
		Code    domain.Code `json:"code"`
		Message string      `json:"message"`
	} `json:"error"`
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"could not encode the answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// RetryAfter is attached to errors whose answer carries a Retry-After header (429, 503).
type RetryAfter interface{ RetryAfter() time.Duration }

// WriteError answers err in the contract's error envelope. Domain errors keep their code; anything else is
// logged and answered as 500 without leaking internals.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var de *domain.Error
	if !errors.As(err, &de) {
		obs.Logger(r.Context()).Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
		de = &domain.Error{Code: domain.CodeInternal, Message: "internal error"}
	}
	var ra RetryAfter
	if errors.As(err, &ra) {
		secs := int(ra.RetryAfter().Round(time.Second) / time.Second)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	} else if de.Code == domain.CodeRateLimited || de.Code == domain.CodeUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	var body errorBody
	body.Error.Code = de.Code
	body.Error.Message = de.Message
	if body.Error.Message == "" {
		body.Error.Message = string(de.Code)
	}
	WriteJSON(w, de.Code.HTTPStatus(), body)
}

// ReadBody reads at most domain.MaxBodyBytes; a larger body is payload_too_large without reading it all.
func ReadBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > domain.MaxBodyBytes {
		return nil, &domain.Error{Code: domain.CodePayloadTooLarge, Message: "body is larger than 64 KiB"}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, domain.MaxBodyBytes+1))
	if err != nil {
		return nil, domain.Invalid("", "could not read the body")
	}
	if len(b) > domain.MaxBodyBytes {
		return nil, &domain.Error{Code: domain.CodePayloadTooLarge, Message: "body is larger than 64 KiB"}
	}
	return b, nil
}

// HandlerFunc is a route handler that returns its error instead of writing it.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Router dispatches on a path pattern (net/http syntax, {id} wildcards) and then on the method, so
// that a known path with an unknown method is 405 and an unknown path 404, both in the JSON envelope.
type Router struct {
	mux     *http.ServeMux
	methods map[string]map[string]HandlerFunc
}

func NewRouter() *Router {
	return &Router{mux: http.NewServeMux(), methods: map[string]map[string]HandlerFunc{}}
}

// Handle registers h for method on pattern.
func (rt *Router) Handle(method, pattern string, h HandlerFunc) {
	byMethod, ok := rt.methods[pattern]
	if !ok {
		byMethod = map[string]HandlerFunc{}
		rt.methods[pattern] = byMethod
		rt.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			h, ok := byMethod[r.Method]
			if !ok {
				allowed := make([]string, 0, len(byMethod))
				for m := range byMethod {
					allowed = append(allowed, m)
				}
				sort.Strings(allowed)
				w.Header().Set("Allow", strings.Join(allowed, ", "))
				WriteError(w, r, domain.Refuse(domain.CodeMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
				return
			}
			if err := h(w, r); err != nil {
				WriteError(w, r, err)
			}
		})
	}
	byMethod[method] = h
}

// Route is one method on one path pattern.
type Route struct{ Method, Pattern string }

// Routes lists what the router serves, sorted by pattern then method.
func (rt *Router) Routes() []Route {
	var out []Route
	for pattern, byMethod := range rt.methods {
		for method := range byMethod {
			out = append(out, Route{Method: method, Pattern: pattern})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pattern != out[j].Pattern {
			return out[i].Pattern < out[j].Pattern
		}
		return out[i].Method < out[j].Method
	})
	return out
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			obs.Logger(r.Context()).Error("handler panicked", "panic", v, "path", r.URL.Path)
			WriteError(w, r, domain.Refuse(domain.CodeInternal, "internal error"))
		}
	}()
	if _, pattern := rt.mux.Handler(r); pattern == "" {
		WriteError(w, r, domain.Refuse(domain.CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
		return
	}
	rt.mux.ServeHTTP(w, r)
}
