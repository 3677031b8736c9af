package domain

import (
	"errors"
	"fmt"
)

// Code is an error code of the HTTP contract (shared/httpapi/openapi.yaml, x-error-codes). The code, not the message, is the
// contract: clients branch on it.
type Code string

const (
	CodeInvalidRequest       Code = "invalid_request"
	CodePayloadTooLarge      Code = "payload_too_large"
	CodeUnauthenticated      Code = "unauthenticated"
	CodeForbidden            Code = "forbidden"
	CodeNotFound             Code = "not_found"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeCampaignNotFound     Code = "campaign_not_found"
	CodeUserNotFound         Code = "user_not_found"
	CodeVersionMismatch      Code = "version_mismatch"
	CodePreconditionRequired Code = "precondition_required"
	CodeNotClaimable         Code = "not_claimable"
	CodeNotEligible          Code = "not_eligible"
	CodeNotStarted           Code = "not_started"
	CodeEnded                Code = "ended"
	CodePaused               Code = "paused"
	CodeSoldOut              Code = "sold_out"
	CodeLimitReached         Code = "limit_reached"
	CodeInsufficientPoints   Code = "insufficient_points"
	CodeRateLimited          Code = "rate_limited"
	CodeUnavailable          Code = "unavailable"
	CodeInternal             Code = "internal"
)

// httpStatus is kept beside the codes so that adding a code without deciding its status fails the
// table test in errors_test.go rather than answering 500 in production.
var httpStatus = map[Code]int{
	CodeInvalidRequest:       400,
	CodePayloadTooLarge:      413,
	CodeUnauthenticated:      401,
	CodeForbidden:            403,
	CodeNotFound:             404,
	CodeMethodNotAllowed:     405,
	CodeCampaignNotFound:     404,
	CodeUserNotFound:         404,
	CodeVersionMismatch:      412,
	CodePreconditionRequired: 428,
	CodeNotClaimable:         409,
	CodeNotEligible:          403,
	CodeNotStarted:           409,
	CodeEnded:                409,
	CodePaused:               409,
	CodeSoldOut:              409,
	CodeLimitReached:         409,
	CodeInsufficientPoints:   409,
	CodeRateLimited:          429,
	CodeUnavailable:          503,
	CodeInternal:             500,
}

// HTTPStatus is the status the HTTP contract gives the code; an unknown code is a server fault.
func (c Code) HTTPStatus() int {
	if s, ok := httpStatus[c]; ok {
		return s
	}
	return 500
}

// KnownCodes lists every code, for tests and documentation.
func KnownCodes() []Code {
	out := make([]Code, 0, len(httpStatus))
	for c := range httpStatus {
		out = append(out, c)
	}
	return out
}

// Error is a refusal the caller can act on: a code of the contract, the offending field when there is
// one, and a message for a human.
type Error struct {
	Code    Code
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field != "" && e.Message == "" {
		return fmt.Sprintf("%s: %s", e.Code, e.Field)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Invalid builds the 400 answer for a bad field; the message always names the field.
func Invalid(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &Error{Code: CodeInvalidRequest, Field: field, Message: msg}
}

// Refuse builds an error for a code with a message.
func Refuse(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf extracts the contract code of err, or CodeInternal when err is not a domain error.
func CodeOf(err error) Code {
	var de *Error
	if errors.As(err, &de) {
		return de.Code
	}
	return CodeInternal
}
