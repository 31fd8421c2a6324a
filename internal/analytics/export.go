package analytics

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// RawEvent is one row of the cold tier's Parquet files.
type RawEvent struct {
	Received  time.Time `parquet:"received,timestamp(millisecond)"`
	StreamSeq int64     `parquet:"stream_seq"`
	Type      string    `parquet:"type,dict"`
	Session   int64     `parquet:"session"`
	Viewer    int64     `parquet:"viewer"`
	Video     int64     `parquet:"video"`
	Seq       int64     `parquet:"seq"`
	PosMs     int64     `parquet:"pos_ms"`
	PlayedMs  int64     `parquet:"played_ms"`
	StallMs   int64     `parquet:"stall_ms"`
	Rendition string    `parquet:"rendition,dict"`
	Referrer  string    `parquet:"referrer,dict"`
	Path      string    `parquet:"path,dict"`
}

// RawKey is the object key of the Parquet file holding the raw events of
// one UTC date whose export round began at stream sequence firstSeq.
func RawKey(date time.Time, firstSeq uint64) string {
	return fmt.Sprintf("%s%s/part-%020d.parquet", RawPrefix, date.UTC().Format("2006-01-02"), firstSeq)
}

// RunExport writes rolled-up raw events to Parquet every export interval
// until ctx ends. Run it in one process at a time.
func (s *Service) RunExport(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ExportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		for ctx.Err() == nil {
			n, err := s.ExportOnce(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.logger.Warn("analytics: export failed; will retry", "err", err)
				}
				break
			}
			if n < s.cfg.ExportMaxEvents {
				break // caught up
			}
		}
	}
}

// ExportOnce writes one round of raw events that the rollup has applied
// and the exporter has not written yet: one Parquet file per UTC date,
// durably stored before the export watermark moves and the stream is
// trimmed behind it. A round repeated after a crash writes the same keys
// again. It returns the number of events written.
func (s *Service) ExportOnce(ctx context.Context) (int, error) {
	st, err := s.ensureStream(ctx)
	if err != nil {
		return 0, err
	}
	from, err := s.watermark(ctx, s.db.R, exportName)
	if err != nil {
		return 0, err
	}
	to, err := s.watermark(ctx, s.db.R, RollupConsumer)
	if err != nil {
		return 0, err
	}
	if to <= from {
		return 0, nil
	}
	cons, err := s.js.OrderedConsumer(ctx, StreamName, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1,
	})
	if err != nil {
		return 0, fmt.Errorf("analytics: export consumer: %w", err)
	}
	byDate := map[int64][]RawEvent{}
	events := 0
	last := from
	for last < to && events < s.cfg.ExportMaxEvents {
		batch, err := cons.Fetch(min(int(to-last), 500), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return 0, fmt.Errorf("analytics: export fetch: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return 0, fmt.Errorf("analytics: export: %w", err)
			}
			seq := meta.Sequence.Stream
			if seq > to {
				break
			}
			got++
			last = seq
			rec, err := DecodeRecord(m.Data())
			if err != nil {
				continue // logged by the rollup; nothing to keep
			}
			recv := time.UnixMilli(rec.RecvMs).UTC()
			day := rec.RecvMs / dayMs
			for _, e := range rec.Events {
				byDate[day] = append(byDate[day], RawEvent{
					Received: recv, StreamSeq: int64(seq), Type: e.Type.String(), Session: e.Session, Viewer: e.Viewer,
					Video: e.Video, Seq: e.Seq, PosMs: e.PosMs, PlayedMs: e.PlayedMs, StallMs: e.StallMs,
					Rendition: e.Rendition, Referrer: e.Referrer, Path: e.Path,
				})
			}
			events += len(rec.Events)
		}
		if err := batch.Error(); err != nil {
			return 0, fmt.Errorf("analytics: export fetch: %w", err)
		}
		if got == 0 {
			// The rest was trimmed by the stream's age limit: nothing to write.
			first, err := s.streamFirstSeq(ctx)
			if err != nil {
				return 0, err
			}
			if first > last+1 {
				last = min(first-1, to)
				continue
			}
			return 0, fmt.Errorf("analytics: export: no messages after %d (want up to %d)", last, to)
		}
	}
	days := make([]int64, 0, len(byDate))
	for d := range byDate {
		days = append(days, d)
	}
	sort.Slice(days, func(i, j int) bool { return days[i] < days[j] })
	for _, d := range days {
		var buf bytes.Buffer
		w := parquet.NewGenericWriter[RawEvent](&buf, parquet.Compression(&zstd.Codec{}))
		if _, err := w.Write(byDate[d]); err != nil {
			return 0, fmt.Errorf("analytics: parquet: %w", err)
		}
		if err := w.Close(); err != nil {
			return 0, fmt.Errorf("analytics: parquet: %w", err)
		}
		key := RawKey(time.UnixMilli(d*dayMs), from+1)
		if _, err := s.blobs.Put(ctx, key, &buf); err != nil {
			return 0, fmt.Errorf("analytics: export %s: %w", key, err)
		}
		s.m.exportFiles.Inc()
	}
	if _, err := s.db.W.ExecContext(ctx, `INSERT INTO analytics_watermarks(name, last_seq, events, files, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET last_seq = excluded.last_seq, events = analytics_watermarks.events + excluded.events,
		files = analytics_watermarks.files + excluded.files, updated_at = excluded.updated_at`, exportName, int64(last), events, len(days), time.Now().Unix()); err != nil {
		return 0, fmt.Errorf("analytics: export watermark: %w", err)
	}
	s.m.exportEvents.Add(float64(events))
	// The files are durable and recorded: the stream may drop what they hold.
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(last+1)); err != nil {
		return events, fmt.Errorf("analytics: trim stream: %w", err)
	}
	return events, nil
}

// ReadRaw reads one Parquet file of raw events (tests and tools).
func (s *Service) ReadRaw(ctx context.Context, key string) ([]RawEvent, error) {
	obj, err := s.blobs.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		return nil, fmt.Errorf("analytics: read %s: %w", key, err)
	}
	return parquet.Read[RawEvent](bytes.NewReader(b), int64(len(b)))
}
