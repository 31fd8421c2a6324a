// Package errs gives errors a small kind — NotFound, Conflict, Invalid,
// Unauthorized, Forbidden, Unavailable — so services can say what went wrong
// and only the HTTP layer decides the status code. The message of an error
// with a kind is safe to show to the user.
package errs

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error.
type Kind int

// Kinds of errors.
const (
	Other Kind = iota
	NotFound
	Conflict
	Invalid
	Unauthorized
	Forbidden
	Unavailable
	TooMany // a rate or quota was exceeded: 429
)

// Error is an error with a kind and a user-facing message.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // optional cause, not shown to users
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// E returns an error of the given kind with a formatted message.
func E(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of the given kind with msg, wrapping cause.
func Wrap(kind Kind, cause error, msg string) error {
	return &Error{Kind: kind, Msg: msg, Err: cause}
}

// KindOf returns the kind of the first *Error in err's chain, or Other.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Other
}

// Message returns the user-facing message of err: the message of its
// first *Error, or a generic text for errors without a kind.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return "internal error"
}

// HTTPStatus maps an error to an HTTP status code.
func HTTPStatus(err error) int {
	switch KindOf(err) {
	case NotFound:
		return http.StatusNotFound
	case Conflict:
		return http.StatusConflict
	case Invalid:
		return http.StatusBadRequest
	case TooMany:
		return http.StatusTooManyRequests
	case Unauthorized:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
