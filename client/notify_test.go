package client

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestEventReader(t *testing.T) {
	in := "\xef\xbb\xbfretry: 2000\n\n: a comment\r\n" +
		"event: hello\ndata: {\"a\":1}\n\n" +
		"event: notification\rid: 42\rdata: {\"b\":\r\ndata: 2}\r\n\r\n" +
		"event: nodata\n\n" +
		"data:no space\n\n" +
		"event: ping\ndata: {}"
	r := NewEventReader(strings.NewReader(in))
	want := []Event{
		{Name: "hello", Data: []byte(`{"a":1}`)},
		{Name: "notification", ID: "42", Data: []byte("{\"b\":\n2}")},
		{Name: "message", ID: "42", Data: []byte("no space")},
	}
	for _, w := range want {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Name != w.Name || e.ID != w.ID || string(e.Data) != string(w.Data) {
			t.Fatalf("got %+v (%q), want %+v (%q)", e, e.Data, w, w.Data)
		}
	}
	// The last event has no terminating blank line: it is not dispatched.
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

// FuzzEventReader: any byte stream parses without panicking, and the
// reader always makes progress to io.EOF or an error.
func FuzzEventReader(f *testing.F) {
	f.Add([]byte("event: x\ndata: y\n\n"))
	f.Add([]byte("data: a\r\rdata: b\r\n\r\n"))
	f.Add([]byte(":\n\n\n\nid: \x00\ndata\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewEventReader(strings.NewReader(string(b)))
		for range len(b) + 2 {
			e, err := r.Next()
			if err != nil {
				return
			}
			if e.Name == "" {
				t.Fatalf("event without a name from %q", b)
			}
		}
		t.Fatalf("more events than bytes from %q", b)
	})
}
