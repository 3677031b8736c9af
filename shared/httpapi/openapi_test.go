package httpapi_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/benefit-issuance/benefits/local/fctemplate"
	"github.com/benefit-issuance/benefits/shared/claiming"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/httpapi"
	"github.com/benefit-issuance/benefits/shared/rules"
)

type document struct {
	OpenAPI    string                    `yaml:"openapi"`
	ErrorCodes map[string]int            `yaml:"x-error-codes"`
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		Schemas struct {
			ErrorCode struct {
				Enum []string `yaml:"enum"`
			} `yaml:"ErrorCode"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

func load(t *testing.T) document {
	t.Helper()
	var d document
	if err := yaml.Unmarshal(httpapi.OpenAPI(), &d); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.") {
		t.Fatalf("openapi %q, want 3.x", d.OpenAPI)
	}
	return d
}

var methods = map[string]bool{"get": true, "put": true, "post": true, "patch": true, "delete": true, "head": true, "options": true}

// described lists "METHOD /path" for every operation in the document.
func described(d document) []string {
	var out []string
	for path, item := range d.Paths {
		for m := range item {
			if methods[m] {
				out = append(out, strings.ToUpper(m)+" "+path)
			}
		}
	}
	sort.Strings(out)
	return out
}

// served lists "METHOD /path" for every route the handlers register, with the function serving it.
func served() map[string]string {
	out := map[string]string{}
	for fn, routes := range map[string][]httpapi.Route{
		"rules": rules.New(nil, nil, nil, nil, nil, rules.Config{}).Routes(),
		"claim": claiming.New(nil, nil, nil, nil, nil, claiming.Config{}).Routes(),
	} {
		for _, r := range routes {
			out[r.Method+" "+r.Pattern] = fn
		}
	}
	return out
}

func TestEveryRouteIsDescribedAndEveryDescriptionServed(t *testing.T) {
	d := load(t)
	srv := served()
	doc := described(d)
	for _, op := range doc {
		if _, ok := srv[op]; !ok {
			t.Errorf("described but served by no handler: %s", op)
		}
	}
	in := map[string]bool{}
	for _, op := range doc {
		in[op] = true
	}
	for op := range srv {
		if !in[op] {
			t.Errorf("served but not described: %s", op)
		}
	}
	if len(doc) < 10 {
		t.Fatalf("only %d operations described: %v", len(doc), doc)
	}
}

// Every described path reaches the function that serves it through template.yml's custom domain.
func TestEveryDescribedPathIsRoutedToItsFunction(t *testing.T) {
	tpl, err := fctemplate.Load("../../template.yml")
	if err != nil {
		t.Fatal(err)
	}
	routed := func(path string) string {
		concrete := strings.ReplaceAll(path, "{id}", "x1")
		for _, r := range tpl.Routes() {
			if r.Path == concrete || (strings.HasSuffix(r.Path, "/*") && strings.HasPrefix(concrete, strings.TrimSuffix(r.Path, "*"))) {
				return r.FunctionName
			}
		}
		return ""
	}
	for op, fn := range served() {
		path := strings.SplitN(op, " ", 2)[1]
		if got := routed(path); got != fn {
			t.Errorf("%s is served by %s, but template.yml routes it to %q", op, fn, got)
		}
	}
}

// The document's error codes and their statuses are the ones the code answers with.
func TestErrorCodesMatchTheDomain(t *testing.T) {
	d := load(t)
	known := map[string]int{}
	for _, c := range domain.KnownCodes() {
		known[string(c)] = c.HTTPStatus()
	}
	if len(d.ErrorCodes) != len(known) {
		t.Errorf("x-error-codes has %d codes, the domain %d", len(d.ErrorCodes), len(known))
	}
	for code, status := range known {
		if got, ok := d.ErrorCodes[code]; !ok || got != status {
			t.Errorf("x-error-codes[%s] = %d (present %v), the domain answers %d", code, got, ok, status)
		}
	}
	enum := append([]string(nil), d.Components.Schemas.ErrorCode.Enum...)
	sort.Strings(enum)
	var want []string
	for c := range known {
		want = append(want, c)
	}
	sort.Strings(want)
	if strings.Join(enum, ",") != strings.Join(want, ",") {
		t.Errorf("ErrorCode enum %v, want %v", enum, want)
	}
	// Every error status an operation lists is the status of some code.
	statuses := map[string]bool{}
	for _, s := range known {
		statuses[http.StatusText(s)] = true
	}
	for path, item := range d.Paths {
		for m, op := range item {
			if !methods[m] {
				continue
			}
			responses, _ := op.(map[string]any)["responses"].(map[string]any)
			for status := range responses {
				n, err := strconv.Atoi(status)
				if err != nil {
					t.Errorf("%s %s: response %q is not a status", m, path, status)
					continue
				}
				if n >= 400 {
					if !statuses[http.StatusText(n)] {
						t.Errorf("%s %s lists %s, which no error code answers", m, path, status)
					}
				}
			}
		}
	}
}

func TestTheRulesFunctionServesTheDocument(t *testing.T) {
	api := rules.New(nil, nil, nil, nil, nil, rules.Config{})
	w := httptest.NewRecorder()
	api.ServeHTTP(w, httptest.NewRequest("GET", "/v1/openapi.yaml", nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/yaml" || !bytes.Equal(w.Body.Bytes(), httpapi.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.yaml: %d %q, %d bytes", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
}
