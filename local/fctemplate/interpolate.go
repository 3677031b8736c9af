package fctemplate

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	placeholder = regexp.MustCompile(`\$\{([^{}]*)\}`)
	// env(X), env('X'), env("X"), optionally with a quoted default: env('X', 'default').
	envCall = regexp.MustCompile(`^env\(\s*(?:'([^']*)'|"([^"]*)"|([A-Za-z_][A-Za-z0-9_]*))\s*(?:,\s*(?:'([^']*)'|"([^"]*)")\s*)?\)$`)
)

// maxDepth bounds how often a var's value is itself interpolated, so a var that refers to itself ends.
const maxDepth = 8

// Interpolate resolves the Serverless Devs placeholders ${vars.x} (x may be a dotted path into
// nested vars) and ${env('X')} / ${env("X")} / ${env(X)}, with an optional default
// ${env('X', 'd')}. A var's value is interpolated in turn, so vars may refer to env. A placeholder
// that cannot be resolved — an unknown var, an unset or empty variable without a default, a nil env,
// or any other expression such as ${path('.')} — is left as it is.
func Interpolate(s string, vars map[string]any, env func(string) string) string {
	return interpolate(s, vars, env, 0)
}

func interpolate(s string, vars map[string]any, env func(string) string, depth int) string {
	if depth > maxDepth || !strings.Contains(s, "${") {
		return s
	}
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		expr := strings.TrimSpace(m[2 : len(m)-1])
		if path, ok := strings.CutPrefix(expr, "vars."); ok {
			v, found := lookup(vars, path)
			if !found {
				return m
			}
			return interpolate(fmt.Sprint(v), vars, env, depth+1)
		}
		if g := envCall.FindStringSubmatch(expr); g != nil {
			name := g[1] + g[2] + g[3]
			if env != nil {
				if v := env(name); v != "" {
					return v
				}
			}
			if strings.Contains(expr, ",") {
				return g[4] + g[5]
			}
			return m
		}
		return m
	})
}

func lookup(vars map[string]any, path string) (any, bool) {
	var cur any = vars
	for _, part := range strings.Split(path, ".") {
		switch m := cur.(type) {
		case map[string]any:
			v, ok := m[part]
			if !ok {
				return nil, false
			}
			cur = v
		default:
			return nil, false
		}
	}
	if cur == nil {
		return nil, false
	}
	if _, isMap := cur.(map[string]any); isMap {
		return nil, false
	}
	return cur, true
}
