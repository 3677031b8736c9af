package rocketmq

import (
	"fmt"
	"strings"
)

// tagFilter is a parsed tag subscription expression: "*" (or empty) matches everything, otherwise the
// tags separated by "||", as remoting/src/main/java/org/apache/rocketmq/remoting/protocol/filter/
// FilterAPI.java builds the tag set (split on "||", each trimmed).
type tagFilter struct {
	all  bool
	tags map[string]bool
}

func parseTagFilter(expr string) (tagFilter, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" || expr == "*" {
		return tagFilter{all: true}, nil
	}
	f := tagFilter{tags: map[string]bool{}}
	for _, part := range strings.Split(expr, "||") {
		t := strings.TrimSpace(part)
		if t == "" {
			continue
		}
		if strings.ContainsAny(t, "|") {
			return tagFilter{}, fmt.Errorf("illegal tag %q in filter expression %q", t, expr)
		}
		f.tags[t] = true
	}
	if len(f.tags) == 0 {
		return tagFilter{}, fmt.Errorf("filter expression %q names no tag", expr)
	}
	return f, nil
}

func (f tagFilter) match(tag string) bool {
	return f.all || f.tags[tag]
}
