// Package domain holds the benefit-issuance rules: campaigns, users, claims, the claim decision, the
// scheduled-grant selection and the reconciliation verdict. It imports only the standard library and does
// no I/O, so every rule is a table test away and the Redis Lua scripts can be checked against it.
package domain
