package analytics

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/axiomhq/hyperloglog"
)

// Range is a span of whole UTC days, From and To included.
type Range struct{ From, To int64 } // days since the Unix epoch

// LastDays returns the range of the n days ending today.
func LastDays(now time.Time, n int) Range {
	to := now.UnixMilli() / dayMs
	return Range{From: to - int64(n) + 1, To: to}
}

// Day is one day of a series.
type Day struct {
	Date          string  `json:"date"` // YYYY-MM-DD
	Views         int64   `json:"views"`
	UniqueViewers int64   `json:"unique_viewers"`
	WatchSeconds  float64 `json:"watch_seconds"`
	Stalls        int64   `json:"stalls"`
	Events        int64   `json:"events,omitempty"`
	PageViews     int64   `json:"page_views,omitempty"`
}

// Hour is one hour of a series.
type Hour struct {
	Hour         time.Time `json:"hour"`
	Views        int64     `json:"views"`
	WatchSeconds float64   `json:"watch_seconds"`
	Events       int64     `json:"events,omitempty"`
}

// Count is a named count.
type Count struct {
	Name  string `json:"name"`
	Views int64  `json:"views"`
}

// Rendition is the playback health of one rendition.
type Rendition struct {
	Name         string  `json:"name"`
	Switches     int64   `json:"switches"`
	WatchSeconds float64 `json:"watch_seconds"`
}

// VideoRow is a video in a creator's or the platform's top list.
type VideoRow struct {
	ID           string  `json:"id"`
	Title        string  `json:"title"`
	Views        int64   `json:"views"`
	WatchSeconds float64 `json:"watch_seconds"`
}

// Stats are the numbers of a video, a creator or the platform over a range.
type Stats struct {
	From              string      `json:"from"`
	To                string      `json:"to"`
	Views             int64       `json:"views"`
	UniqueViewers     int64       `json:"unique_viewers"`
	WatchSeconds      float64     `json:"watch_seconds"`
	AvgViewSeconds    float64     `json:"avg_view_seconds"`
	AvgPercentWatched float64     `json:"avg_percent_watched"` // 0–100; 0 when durations are unknown
	Stalls            int64       `json:"stalls"`
	StallSeconds      float64     `json:"stall_seconds"`
	Events            int64       `json:"events,omitempty"`
	PageViews         int64       `json:"page_views,omitempty"`
	Daily             []Day       `json:"daily"`
	Hourly            []Hour      `json:"hourly"`
	Referrers         []Count     `json:"referrers,omitempty"`
	Renditions        []Rendition `json:"renditions,omitempty"`
	Retention         []float64   `json:"retention,omitempty"` // share of views still watching at each second (all time)
	Videos            []VideoRow  `json:"videos,omitempty"`
	Pages             []Count     `json:"pages,omitempty"`
}

func dateOf(day int64) string { return time.UnixMilli(day * dayMs).UTC().Format("2006-01-02") }

func (rg Range) hours(now time.Time) (int64, int64) {
	to := min(now.UnixMilli()/hourMs, (rg.To+1)*24-1)
	return max(rg.From*24, to-47), to
}

// fillDaily reads daily rows (day, views, watch_ms, reach, capacity,
// stalls, stall_ms, events, page_views, sketch) and fills st.
func (s *Service) fillDaily(ctx context.Context, st *Stats, rg Range, query string, args ...any) error {
	rows, err := s.db.Read(ctx).QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("analytics: query: %w", err)
	}
	defer rows.Close()
	byDay := map[int64]Day{}
	var total *hyperloglog.Sketch
	var reach, capacity, stallMs int64
	for rows.Next() {
		var day, views, watch, rch, cap, stalls, sms, events, pages int64
		var sk []byte
		if err := rows.Scan(&day, &views, &watch, &rch, &cap, &stalls, &sms, &events, &pages, &sk); err != nil {
			return fmt.Errorf("analytics: query: %w", err)
		}
		d := byDay[day]
		d.Views += views
		d.WatchSeconds += float64(watch) / 1000
		d.Stalls += stalls
		d.Events += events
		d.PageViews += pages
		if len(sk) > 0 {
			h := hyperloglog.New14()
			if err := h.UnmarshalBinary(sk); err == nil {
				d.UniqueViewers += int64(h.Estimate())
				if total == nil {
					total = h
				} else {
					total.Merge(h)
				}
			}
		}
		byDay[day] = d
		st.Views += views
		st.WatchSeconds += float64(watch) / 1000
		st.Stalls += stalls
		st.Events += events
		st.PageViews += pages
		reach, capacity, stallMs = reach+rch, capacity+cap, stallMs+sms
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("analytics: query: %w", err)
	}
	if total != nil {
		st.UniqueViewers = int64(total.Estimate())
	}
	st.StallSeconds = float64(stallMs) / 1000
	if st.Views > 0 {
		st.AvgViewSeconds = st.WatchSeconds / float64(st.Views)
	}
	if capacity > 0 {
		st.AvgPercentWatched = 100 * float64(reach) / float64(capacity)
	}
	st.From, st.To = dateOf(rg.From), dateOf(rg.To)
	st.Daily = make([]Day, 0, rg.To-rg.From+1)
	for day := rg.From; day <= rg.To; day++ {
		d := byDay[day]
		d.Date = dateOf(day)
		st.Daily = append(st.Daily, d)
	}
	return nil
}

// fillHourly reads hourly rows (hour, views, watch_ms, events) for the last
// 48 hours of rg; query takes args then the first and last hour.
func (s *Service) fillHourly(ctx context.Context, st *Stats, rg Range, query string, args ...any) error {
	from, to := rg.hours(s.now())
	rows, err := s.db.Read(ctx).QueryContext(ctx, query, append(args, from, to)...)
	if err != nil {
		return fmt.Errorf("analytics: query: %w", err)
	}
	defer rows.Close()
	byHour := map[int64]Hour{}
	for rows.Next() {
		var h, views, watch, events int64
		if err := rows.Scan(&h, &views, &watch, &events); err != nil {
			return fmt.Errorf("analytics: query: %w", err)
		}
		byHour[h] = Hour{Views: views, WatchSeconds: float64(watch) / 1000, Events: events}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("analytics: query: %w", err)
	}
	st.Hourly = make([]Hour, 0, to-from+1)
	for h := from; h <= to; h++ {
		x := byHour[h]
		x.Hour = time.UnixMilli(h * hourMs).UTC()
		st.Hourly = append(st.Hourly, x)
	}
	return nil
}

func (s *Service) counts(ctx context.Context, query string, args ...any) ([]Count, error) {
	rows, err := s.db.Read(ctx).QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("analytics: query: %w", err)
	}
	defer rows.Close()
	var out []Count
	for rows.Next() {
		var c Count
		if err := rows.Scan(&c.Name, &c.Views); err != nil {
			return nil, fmt.Errorf("analytics: query: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *Service) renditions(ctx context.Context, query string, args ...any) ([]Rendition, error) {
	rows, err := s.db.Read(ctx).QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("analytics: query: %w", err)
	}
	defer rows.Close()
	var out []Rendition
	for rows.Next() {
		var r Rendition
		var ms int64
		if err := rows.Scan(&r.Name, &r.Switches, &ms); err != nil {
			return nil, fmt.Errorf("analytics: query: %w", err)
		}
		r.WatchSeconds = float64(ms) / 1000
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Service) topVideos(ctx context.Context, query string, args ...any) ([]VideoRow, error) {
	rows, err := s.db.Read(ctx).QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("analytics: query: %w", err)
	}
	var out []VideoRow
	var ids []int64
	for rows.Next() {
		var id, views, watch int64
		if err := rows.Scan(&id, &views, &watch); err != nil {
			rows.Close()
			return nil, fmt.Errorf("analytics: query: %w", err)
		}
		ids = append(ids, id)
		out = append(out, VideoRow{ID: fmt.Sprint(id), Views: views, WatchSeconds: float64(watch) / 1000})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, id := range ids {
		if v, err := s.lookup(ctx, id); err == nil {
			out[i].Title = v.Title
		}
	}
	return out, nil
}

// Retention returns the retention curve of a video: element s is the
// share of its counted views that reached second s (element 0 is 1).
func (s *Service) Retention(ctx context.Context, video int64) ([]float64, int64, error) {
	rows, err := s.db.Read(ctx).QueryContext(ctx, `SELECT second, views FROM analytics_retention WHERE video_id = ? AND views != 0 ORDER BY second`, video)
	if err != nil {
		return nil, 0, fmt.Errorf("analytics: query: %w", err)
	}
	defer rows.Close()
	type pt struct{ sec, n int64 }
	var pts []pt
	var total int64
	for rows.Next() {
		var p pt
		if err := rows.Scan(&p.sec, &p.n); err != nil {
			return nil, 0, fmt.Errorf("analytics: query: %w", err)
		}
		pts = append(pts, p)
		total += p.n
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if total == 0 {
		return nil, 0, nil
	}
	last := pts[len(pts)-1].sec
	curve := make([]float64, last+1)
	// Suffix sums: views whose furthest second is ≥ s.
	remaining := total
	j := 0
	for sec := int64(0); sec <= last; sec++ {
		curve[sec] = float64(remaining) / float64(total)
		for j < len(pts) && pts[j].sec == sec {
			remaining -= pts[j].n
			j++
		}
	}
	return curve, total, nil
}

// VideoStats returns a video's numbers over rg; the retention curve is
// over all time.
func (s *Service) VideoStats(ctx context.Context, video int64, rg Range) (Stats, error) {
	var st Stats
	if err := s.fillDaily(ctx, &st, rg, `SELECT day, views, watch_ms, reach_s, capacity_s, stalls, stall_ms, 0, 0, sketch
		FROM analytics_video_daily WHERE video_id = ? AND day BETWEEN ? AND ?`, video, rg.From, rg.To); err != nil {
		return st, err
	}
	if err := s.fillHourly(ctx, &st, rg, `SELECT hour, views, watch_ms, 0 FROM analytics_video_hourly
		WHERE video_id = ? AND hour BETWEEN ? AND ?`, video); err != nil {
		return st, err
	}
	var err error
	if st.Referrers, err = s.counts(ctx, `SELECT referrer, CAST(SUM(views) AS BIGINT) AS n FROM analytics_referrers
		WHERE video_id = ? AND day BETWEEN ? AND ? GROUP BY referrer ORDER BY n DESC, referrer LIMIT 20`, video, rg.From, rg.To); err != nil {
		return st, err
	}
	if st.Renditions, err = s.renditions(ctx, `SELECT rendition, CAST(SUM(switches) AS BIGINT), CAST(SUM(watch_ms) AS BIGINT) FROM analytics_renditions
		WHERE video_id = ? AND day BETWEEN ? AND ? GROUP BY rendition ORDER BY rendition`, video, rg.From, rg.To); err != nil {
		return st, err
	}
	if st.Retention, _, err = s.Retention(ctx, video); err != nil {
		return st, err
	}
	return st, nil
}

// CreatorStats returns the numbers of all of a creator's videos over rg.
func (s *Service) CreatorStats(ctx context.Context, creator int64, rg Range) (Stats, error) {
	var st Stats
	if err := s.fillDaily(ctx, &st, rg, `SELECT day, views, watch_ms, reach_s, capacity_s, stalls, stall_ms, 0, 0, sketch
		FROM analytics_creator_daily WHERE creator_id = ? AND day BETWEEN ? AND ?`, creator, rg.From, rg.To); err != nil {
		return st, err
	}
	if err := s.fillHourly(ctx, &st, rg, `SELECT hour, views, watch_ms, 0 FROM analytics_creator_hourly
		WHERE creator_id = ? AND hour BETWEEN ? AND ?`, creator); err != nil {
		return st, err
	}
	var err error
	if st.Referrers, err = s.counts(ctx, `SELECT referrer, CAST(SUM(views) AS BIGINT) AS n FROM analytics_referrers
		WHERE creator_id = ? AND day BETWEEN ? AND ? GROUP BY referrer ORDER BY n DESC, referrer LIMIT 20`, creator, rg.From, rg.To); err != nil {
		return st, err
	}
	if st.Renditions, err = s.renditions(ctx, `SELECT rendition, CAST(SUM(switches) AS BIGINT), CAST(SUM(watch_ms) AS BIGINT) FROM analytics_renditions
		WHERE creator_id = ? AND day BETWEEN ? AND ? GROUP BY rendition ORDER BY rendition`, creator, rg.From, rg.To); err != nil {
		return st, err
	}
	if st.Videos, err = s.topVideos(ctx, `SELECT video_id, CAST(SUM(views) AS BIGINT) AS n, CAST(SUM(watch_ms) AS BIGINT) FROM analytics_video_daily
		WHERE creator_id = ? AND day BETWEEN ? AND ? GROUP BY video_id ORDER BY n DESC, video_id LIMIT 50`, creator, rg.From, rg.To); err != nil {
		return st, err
	}
	return st, nil
}

// PlatformStats returns the platform-wide numbers over rg.
func (s *Service) PlatformStats(ctx context.Context, rg Range) (Stats, error) {
	var st Stats
	if err := s.fillDaily(ctx, &st, rg, `SELECT day, views, watch_ms, 0, 0, stalls, stall_ms, events, page_views, sketch
		FROM analytics_platform_daily WHERE day BETWEEN ? AND ?`, rg.From, rg.To); err != nil {
		return st, err
	}
	if err := s.fillHourly(ctx, &st, rg, `SELECT hour, views, watch_ms, events FROM analytics_platform_hourly
		WHERE hour BETWEEN ? AND ?`); err != nil {
		return st, err
	}
	var err error
	if st.Videos, err = s.topVideos(ctx, `SELECT video_id, CAST(SUM(views) AS BIGINT) AS n, CAST(SUM(watch_ms) AS BIGINT) FROM analytics_video_daily
		WHERE day BETWEEN ? AND ? GROUP BY video_id ORDER BY n DESC, video_id LIMIT 20`, rg.From, rg.To); err != nil {
		return st, err
	}
	if st.Pages, err = s.counts(ctx, `SELECT path, CAST(SUM(views) AS BIGINT) AS n FROM analytics_pages
		WHERE day BETWEEN ? AND ? GROUP BY path ORDER BY n DESC, path LIMIT 20`, rg.From, rg.To); err != nil {
		return st, err
	}
	if st.Referrers, err = s.counts(ctx, `SELECT referrer, CAST(SUM(views) AS BIGINT) AS n FROM analytics_referrers
		WHERE day BETWEEN ? AND ? GROUP BY referrer ORDER BY n DESC, referrer LIMIT 20`, rg.From, rg.To); err != nil {
		return st, err
	}
	if st.Renditions, err = s.renditions(ctx, `SELECT rendition, CAST(SUM(switches) AS BIGINT), CAST(SUM(watch_ms) AS BIGINT) FROM analytics_renditions
		WHERE day BETWEEN ? AND ? GROUP BY rendition ORDER BY rendition`, rg.From, rg.To); err != nil {
		return st, err
	}
	return st, nil
}

// Pipeline is the state of the ingest → rollup → export pipeline.
type Pipeline struct {
	StreamMessages uint64 `json:"stream_messages"`
	StreamBytes    uint64 `json:"stream_bytes"`
	StreamFirstSeq uint64 `json:"stream_first_seq"`
	StreamLastSeq  uint64 `json:"stream_last_seq"`
	RollupSeq      uint64 `json:"rollup_seq"`
	RollupEvents   int64  `json:"rollup_events"`
	RollupBehind   uint64 `json:"rollup_behind"` // batches stored but not yet rolled up
	ExportSeq      uint64 `json:"export_seq"`
	ExportEvents   int64  `json:"export_events"`
	ExportFiles    int64  `json:"export_files"`
}

// PipelineState reports the stream and the watermarks.
func (s *Service) PipelineState(ctx context.Context) (Pipeline, error) {
	var p Pipeline
	st, err := s.ensureStream(ctx)
	if err != nil {
		return p, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return p, fmt.Errorf("analytics: stream info: %w", err)
	}
	p.StreamMessages, p.StreamBytes = info.State.Msgs, info.State.Bytes
	p.StreamFirstSeq, p.StreamLastSeq = info.State.FirstSeq, info.State.LastSeq
	row := func(name string, seq *uint64, events, files *int64) error {
		var sq int64
		err := s.db.R.QueryRowContext(ctx, `SELECT last_seq, events, files FROM analytics_watermarks WHERE name = ?`, name).Scan(&sq, events, files)
		if err == sql.ErrNoRows {
			return nil
		}
		*seq = uint64(sq)
		return err
	}
	var files int64
	if err := row(RollupConsumer, &p.RollupSeq, &p.RollupEvents, &files); err != nil {
		return p, fmt.Errorf("analytics: watermarks: %w", err)
	}
	if err := row(exportName, &p.ExportSeq, &p.ExportEvents, &p.ExportFiles); err != nil {
		return p, fmt.Errorf("analytics: watermarks: %w", err)
	}
	if p.StreamLastSeq > p.RollupSeq {
		p.RollupBehind = p.StreamLastSeq - p.RollupSeq
	}
	return p, nil
}
