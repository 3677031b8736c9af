package httpapi

import (
	_ "embed"
	"net/http"
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI is the OpenAPI 3 description of every route the rules and claim functions serve, with every
// status and error code. openapi_test.go holds it and the handlers to each other.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// ServeOpenAPI answers the description as YAML.
func ServeOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPI)
	return nil
}
