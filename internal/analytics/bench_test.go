package analytics

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkParseBatch is the ingest's CPU per 100-event batch: JSON decode,
// session token checks and validation, then the stream encoding.
func BenchmarkParseBatch(b *testing.B) {
	s, err := New(Config{}, nil, nil, nil, nil, testSecret, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1_790_000_000, 0)
	var evs []string
	for i := range 100 {
		tok := s.sign.sessionToken(sessionClaims{Session: int64(1 + i/25), Viewer: 2, Video: 3, Issued: now})
		evs = append(evs, fmt.Sprintf(`{"type":"heartbeat","seq":%d,"session":"%s","pos":%d.5,"played":10,"rendition":"720p"}`, i+1, tok, i*10))
	}
	body := []byte(`{"batch_id":"bench-000000000001","events":[` + strings.Join(evs, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rec, _, err := s.parseBatch(body, now)
		if err != nil {
			b.Fatal(err)
		}
		AppendRecord(nil, rec)
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
