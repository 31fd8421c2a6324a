package analytics

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blueprint-media/blueprint/internal/errs"
)

const (
	dayMs  = 24 * 3600 * 1000
	hourMs = 3600 * 1000

	// Bounds of the rollup's in-memory caches of committed state; a cache
	// that grows past its bound is emptied and refilled from SQL.
	maxCachedSessions = 300_000
	maxCachedViewers  = 300_000
	maxCachedSketches = 50_000
	maxCachedVideos   = 100_000
)

// Session states.
const (
	stateNew     = 0
	stateStarted = 1 // view_start seen, not counted (a reload inside the view window)
	stateCounted = 2 // counted as a view
)

type sessionState struct {
	video, viewer int64
	state         int64
	maxSeq        int64
	maxPos        int64 // furthest second reached; -1 until counted
	lastAt        int64 // unix seconds (receive time) of the last event
}

type sketchKey struct {
	kind    byte // 'v' video, 'c' creator, 'p' platform
	id, day int64
}

type key2 struct{ a, b int64 }

type strKey struct {
	a, b int64
	s    string
}

// counts is the delta of one rollup row.
type counts struct {
	creator                                                  int64
	events, views, watchMs, reach, capacity, stalls, stallMs int64
	pageViews                                                int64
}

type rendCounts struct{ creator, switches, watchMs int64 }

// delta is what one transaction adds to the rollups.
type delta struct {
	vd, cd, vh, ch map[key2]*counts
	pd, ph         map[int64]*counts
	ret            map[key2]int64
	rend, refs     map[strKey]*rendCounts // refs uses switches as views
	pages          map[strKey]int64
	sessions       map[int64]*sessionState
	viewers        map[key2]int64
	sketches       map[sketchKey]*hyperloglog.Sketch
	applied        int
	replayed       int

	sessionStmt, viewerStmt *sql.Stmt // prepared on first use in the transaction
}

func (d *delta) close() {
	for _, st := range []*sql.Stmt{d.sessionStmt, d.viewerStmt} {
		if st != nil {
			st.Close()
		}
	}
}

func (d *delta) prepare(ctx context.Context, tx *sql.Tx, st **sql.Stmt, query string) (*sql.Stmt, error) {
	if *st == nil {
		p, err := tx.PrepareContext(ctx, query)
		if err != nil {
			return nil, fmt.Errorf("analytics: prepare: %w", err)
		}
		*st = p
	}
	return *st, nil
}

func newDelta() *delta {
	return &delta{
		vd: map[key2]*counts{}, cd: map[key2]*counts{}, vh: map[key2]*counts{}, ch: map[key2]*counts{},
		pd: map[int64]*counts{}, ph: map[int64]*counts{}, ret: map[key2]int64{},
		rend: map[strKey]*rendCounts{}, refs: map[strKey]*rendCounts{}, pages: map[strKey]int64{},
		sessions: map[int64]*sessionState{}, viewers: map[key2]int64{}, sketches: map[sketchKey]*hyperloglog.Sketch{},
	}
}

func get[K comparable](m map[K]*counts, k K, creator int64) *counts {
	c := m[k]
	if c == nil {
		c = &counts{creator: creator}
		m[k] = c
	}
	return c
}

// rollup applies stream batches to the SQL rollups. It keeps the committed
// state it needs (sessions, last views, sketches) in memory; any failed
// transaction empties those caches, since their entries are changed in
// place before the commit.
type rollup struct {
	s         *Service
	sessions  map[int64]*sessionState
	viewers   map[key2]int64
	sketches  map[sketchKey]*hyperloglog.Sketch
	videos    map[int64]VideoInfo
	clock     int64 // receive time (unix s) of the newest applied event
	lastPrune int64
	wm        uint64 // the watermark this rollup last committed
	known     bool   // wm is valid: the caches reflect the database up to it
}

func newRollup(s *Service) *rollup {
	r := &rollup{s: s, videos: map[int64]VideoInfo{}}
	r.reset()
	return r
}

func (r *rollup) reset() {
	r.known = false
	r.sessions = map[int64]*sessionState{}
	r.viewers = map[key2]int64{}
	r.sketches = map[sketchKey]*hyperloglog.Sketch{}
}

// RunRollup applies the ANALYTICS stream to the rollups until ctx ends.
// Run it in one process at a time (under leader election): it recreates
// the durable consumer at the stored watermark when it starts.
func (s *Service) RunRollup(ctx context.Context) error {
	cons, err := s.rollupConsumer(ctx)
	if err != nil {
		return err
	}
	r := newRollup(s)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(s.cfg.FetchBatch, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("analytics: fetch", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			continue
		}
		if err := r.applyBatch(ctx, msgs); err != nil {
			if ctx.Err() != nil {
				break
			}
			s.logger.Warn("analytics: rollup transaction failed; will retry", "err", err)
			r.reset()
			for _, m := range msgs {
				m.Nak()
			}
			sleep(ctx, time.Second)
		}
	}
	return ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// rollupConsumer (re)creates the durable rollup consumer so that it starts
// right after the stored watermark: deliveries pending on a consumer of a
// crashed process need not wait for their ack deadline.
func (s *Service) rollupConsumer(ctx context.Context) (jetstream.Consumer, error) {
	st, err := s.ensureStream(ctx)
	if err != nil {
		return nil, err
	}
	wm, err := s.watermark(ctx, s.db.R, RollupConsumer)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("analytics: stream info: %w", err)
	}
	if info.State.LastSeq < wm {
		// The stream was deleted and created again: its sequences start
		// over, and the old watermarks mean nothing.
		s.logger.Warn("analytics: stream is behind the watermarks; restarting them", "stream_last", info.State.LastSeq, "watermark", wm)
		if _, err := s.db.W.ExecContext(ctx, `UPDATE analytics_watermarks SET last_seq = 0`); err != nil {
			return nil, fmt.Errorf("analytics: reset watermarks: %w", err)
		}
		wm = 0
	}
	if err := s.js.DeleteConsumer(ctx, StreamName, RollupConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("analytics: consumer: %w", err)
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       RollupConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 2 * s.cfg.FetchBatch,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   wm + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("analytics: consumer: %w", err)
	}
	s.m.rollupSeq.Set(float64(wm))
	return cons, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// watermark returns the last stream sequence name has processed.
func (s *Service) watermark(ctx context.Context, q querier, name string) (uint64, error) {
	var wm int64
	err := q.QueryRowContext(ctx, `SELECT last_seq FROM analytics_watermarks WHERE name = ?`, name).Scan(&wm)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("analytics: watermark %s: %w", name, err)
	}
	return uint64(wm), nil
}

func (s *Service) streamFirstSeq(ctx context.Context) (uint64, error) {
	st, err := s.ensureStream(ctx)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("analytics: stream info: %w", err)
	}
	return info.State.FirstSeq, nil
}

type item struct {
	seq uint64
	rec Record
	msg jetstream.Msg
}

// applyBatch applies msgs in one transaction and acknowledges them after
// the commit. Messages at or below the watermark were applied before and
// are only acknowledged; the watermark moves only over consecutive
// sequences, so a message delivered ahead of an earlier one waits for it.
func (r *rollup) applyBatch(ctx context.Context, msgs []jetstream.Msg) error {
	s := r.s
	items := make([]item, 0, len(msgs))
	for _, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			m.Term()
			continue
		}
		rec, err := DecodeRecord(m.Data())
		if err != nil {
			s.logger.Error("analytics: malformed record skipped", "seq", meta.Sequence.Stream, "err", err)
			rec = Record{}
		}
		items = append(items, item{seq: meta.Sequence.Stream, rec: rec, msg: m})
	}
	slices.SortFunc(items, func(a, b item) int { return cmpU(a.seq, b.seq) })
	if err := r.resolveVideos(ctx, items); err != nil {
		return err
	}
	r.bound()
	if err := r.prune(ctx); err != nil {
		return err
	}
	start := time.Now()
	var wait []item
	var d *delta
	var committed uint64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		// Lock the watermark row first (a no-op on SQLite, whose writer is
		// already exclusive; a row lock on PostgreSQL), so two rollups
		// never apply the same batch.
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO analytics_watermarks(name, last_seq, updated_at) VALUES (?, 0, ?)`,
			RollupConsumer, time.Now().Unix()); err != nil {
			return fmt.Errorf("analytics: watermark: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE analytics_watermarks SET updated_at = updated_at WHERE name = ?`, RollupConsumer); err != nil {
			return fmt.Errorf("analytics: watermark: %w", err)
		}
		wm, err := s.watermark(ctx, tx, RollupConsumer)
		if err != nil {
			return err
		}
		if !r.known || wm != r.wm {
			// Another rollup (a leader that took over) moved the watermark:
			// what this one cached may be stale.
			r.reset()
		}
		d = newDelta()
		defer d.close()
		events := 0
		for i, it := range items {
			if it.seq <= wm {
				continue
			}
			if it.seq > wm+1 {
				first, err := s.streamFirstSeq(ctx)
				if err != nil {
					return err
				}
				if first <= wm+1 {
					wait = items[i:]
					break
				}
			}
			for _, e := range it.rec.Events {
				if err := r.apply(ctx, tx, d, it.rec.RecvMs, e); err != nil {
					return err
				}
			}
			events += len(it.rec.Events)
			wm = it.seq
		}
		if err := r.write(ctx, tx, d); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO analytics_watermarks(name, last_seq, events, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET last_seq = excluded.last_seq, events = analytics_watermarks.events + excluded.events,
			updated_at = excluded.updated_at`,
			RollupConsumer, int64(wm), events, time.Now().Unix())
		committed = wm
		return err
	})
	if err != nil {
		r.reset()
		return err
	}
	r.wm, r.known = committed, true
	if s.cfg.OnViews != nil {
		views := map[int64]int64{}
		for k, c := range d.vd {
			if c.views > 0 {
				views[k.a] += c.views
			}
		}
		if len(views) > 0 {
			s.cfg.OnViews(ctx, views)
		}
	}
	s.m.rollupSeq.Set(float64(committed))
	now := time.Now()
	s.m.rollupTx.Observe(now.Sub(start).Seconds())
	s.m.rollupEvents.WithLabelValues("applied").Add(float64(d.applied))
	s.m.rollupEvents.WithLabelValues("replayed").Add(float64(d.replayed))
	for _, it := range items[:len(items)-len(wait)] {
		it.msg.Ack()
		if it.rec.RecvMs > 0 {
			s.m.rollupLag.Observe(max(0, float64(now.UnixMilli()-it.rec.RecvMs)/1000))
		}
	}
	for _, it := range wait {
		it.msg.NakWithDelay(500 * time.Millisecond)
	}
	return nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// resolveVideos looks up the creator and duration of every video in
// items that is not cached yet.
func (r *rollup) resolveVideos(ctx context.Context, items []item) error {
	if len(r.videos) > maxCachedVideos {
		r.videos = map[int64]VideoInfo{}
	}
	for _, it := range items {
		for _, e := range it.rec.Events {
			if e.Video == 0 {
				continue
			}
			if _, ok := r.videos[e.Video]; ok {
				continue
			}
			v, err := r.s.lookup(ctx, e.Video)
			if err != nil && errs.KindOf(err) != errs.NotFound {
				return fmt.Errorf("analytics: video %d: %w", e.Video, err)
			}
			r.videos[e.Video] = v // zero for deleted videos: counted without a creator
		}
	}
	return nil
}

func (r *rollup) bound() {
	if len(r.sessions) > maxCachedSessions {
		r.sessions = map[int64]*sessionState{}
	}
	if len(r.viewers) > maxCachedViewers {
		r.viewers = map[key2]int64{}
	}
	if len(r.sketches) > maxCachedSketches {
		r.sketches = map[sketchKey]*hyperloglog.Sketch{}
	}
}

// prune forgets sessions that can get no more events (their tokens have
// expired) and last views older than the view window, every ten minutes
// of event time.
func (r *rollup) prune(ctx context.Context) error {
	if r.clock-r.lastPrune < 600 {
		return nil
	}
	if r.lastPrune == 0 {
		r.lastPrune = r.clock
		return nil
	}
	s := r.s
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM analytics_sessions WHERE last_at < ?`,
			r.clock-int64((s.cfg.SessionTTL+time.Hour)/time.Second)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM analytics_viewer_views WHERE last_at < ?`,
			r.clock-int64((s.cfg.ViewWindow+time.Minute)/time.Second))
		return err
	})
	if err != nil {
		return fmt.Errorf("analytics: prune: %w", err)
	}
	r.lastPrune = r.clock
	r.sessions = map[int64]*sessionState{}
	r.viewers = map[key2]int64{}
	return nil
}

func (r *rollup) session(ctx context.Context, tx *sql.Tx, d *delta, e Event) (*sessionState, error) {
	if ss, ok := d.sessions[e.Session]; ok {
		return ss, nil
	}
	ss, ok := r.sessions[e.Session]
	if !ok {
		ss = &sessionState{video: e.Video, viewer: e.Viewer, maxPos: -1}
		st, err := d.prepare(ctx, tx, &d.sessionStmt, `SELECT video_id, viewer, state, max_seq, max_pos, last_at FROM analytics_sessions WHERE id = ?`)
		if err != nil {
			return nil, err
		}
		err = st.QueryRowContext(ctx, e.Session).Scan(&ss.video, &ss.viewer, &ss.state, &ss.maxSeq, &ss.maxPos, &ss.lastAt)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("analytics: session: %w", err)
		}
		r.sessions[e.Session] = ss
	}
	d.sessions[e.Session] = ss
	return ss, nil
}

func (r *rollup) lastView(ctx context.Context, tx *sql.Tx, d *delta, video, viewer int64) (int64, error) {
	k := key2{video, viewer}
	if t, ok := r.viewers[k]; ok {
		return t, nil
	}
	var t int64
	st, err := d.prepare(ctx, tx, &d.viewerStmt, `SELECT last_at FROM analytics_viewer_views WHERE video_id = ? AND viewer = ?`)
	if err != nil {
		return 0, err
	}
	err = st.QueryRowContext(ctx, video, viewer).Scan(&t)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("analytics: last view: %w", err)
	}
	r.viewers[k] = t
	return t, nil
}

var sketchTables = map[byte]string{
	'v': `SELECT sketch FROM analytics_video_daily WHERE video_id = ? AND day = ?`,
	'c': `SELECT sketch FROM analytics_creator_daily WHERE creator_id = ? AND day = ?`,
	'p': `SELECT sketch FROM analytics_platform_daily WHERE day = ?`,
}

// addViewer inserts viewer into the day sketch k.
func (r *rollup) addViewer(ctx context.Context, tx *sql.Tx, d *delta, k sketchKey, viewer int64) error {
	sk, ok := d.sketches[k]
	if !ok {
		if sk, ok = r.sketches[k]; !ok {
			var b []byte
			args := []any{k.id, k.day}
			if k.kind == 'p' {
				args = args[1:]
			}
			err := tx.QueryRowContext(ctx, sketchTables[k.kind], args...).Scan(&b)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("analytics: sketch: %w", err)
			}
			sk = hyperloglog.New14()
			if len(b) > 0 {
				if err := sk.UnmarshalBinary(b); err != nil {
					r.s.logger.Error("analytics: unreadable sketch replaced", "kind", string(k.kind), "id", k.id, "day", k.day, "err", err)
					sk = hyperloglog.New14()
				}
			}
			r.sketches[k] = sk
		}
		d.sketches[k] = sk
	}
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(viewer))
	sk.Insert(buf[:])
	return nil
}

// apply adds one event to d.
func (r *rollup) apply(ctx context.Context, tx *sql.Tx, d *delta, recvMs int64, e Event) error {
	day, hour, now := recvMs/dayMs, recvMs/hourMs, recvMs/1000
	r.clock = max(r.clock, now)
	ss, err := r.session(ctx, tx, d, e)
	if err != nil {
		return err
	}
	if e.Seq <= ss.maxSeq {
		d.replayed++ // a replayed or re-sent event
		return nil
	}
	d.applied++
	pd, ph := get(d.pd, day, 0), get(d.ph, hour, 0)
	pd.events++
	ph.events++
	ss.maxSeq, ss.lastAt = e.Seq, now
	if e.Type == PageView {
		d.pages[strKey{day, 0, e.Path}]++
		pd.pageViews++
		ph.pageViews++
	}
	if e.Video == 0 {
		return nil
	}
	vi := r.videos[e.Video]
	creator := vi.CreatorID
	dur := int64(math.Ceil(vi.Duration))
	vd, vh := get(d.vd, key2{e.Video, day}, creator), get(d.vh, key2{e.Video, hour}, creator)
	var cd, ch *counts
	if creator != 0 {
		cd, ch = get(d.cd, key2{creator, day}, 0), get(d.ch, key2{creator, hour}, 0)
	}
	var dayArr, hourArr [3]*counts // no allocation per event
	days, hours := append(dayArr[:0], vd, pd), append(hourArr[:0], vh, ph)
	if cd != nil {
		days, hours = append(days, cd), append(hours, ch)
	}
	switch e.Type {
	case ViewStart:
		if ss.state != stateNew {
			break // one view_start per session
		}
		ss.state = stateStarted
		var keyArr [3]sketchKey
		keys := append(keyArr[:0], sketchKey{'v', e.Video, day}, sketchKey{'p', 0, day})
		if creator != 0 {
			keys = append(keys, sketchKey{'c', creator, day})
		}
		for _, k := range keys {
			if err := r.addViewer(ctx, tx, d, k, e.Viewer); err != nil {
				return err
			}
		}
		last, err := r.lastView(ctx, tx, d, e.Video, e.Viewer)
		if err != nil {
			return err
		}
		if last != 0 && now-last < int64(r.s.cfg.ViewWindow/time.Second) {
			break // a reload inside the view window
		}
		ss.state, ss.maxPos = stateCounted, 0
		k := key2{e.Video, e.Viewer}
		r.viewers[k], d.viewers[k] = now, now
		for _, c := range days {
			c.views++
		}
		for _, c := range hours {
			c.views++
		}
		vd.capacity += dur
		if cd != nil {
			cd.capacity += dur
		}
		d.ret[key2{e.Video, 0}]++
		ref := e.Referrer
		if ref == "" {
			ref = "direct"
		}
		rc := d.refs[strKey{e.Video, day, ref}]
		if rc == nil {
			rc = &rendCounts{creator: creator}
			d.refs[strKey{e.Video, day, ref}] = rc
		}
		rc.switches++
	case Quality:
		d.rendition(e.Video, day, e.Rendition, creator).switches++
	case Stall:
		for _, c := range days {
			c.stalls++
			c.stallMs += e.StallMs
		}
	}
	if e.PlayedMs > 0 {
		for _, c := range days {
			c.watchMs += e.PlayedMs
		}
		for _, c := range hours {
			c.watchMs += e.PlayedMs
		}
		if e.Rendition != "" {
			d.rendition(e.Video, day, e.Rendition, creator).watchMs += e.PlayedMs
		}
	}
	if e.PosMs >= 0 && ss.state == stateCounted {
		p := e.PosMs / 1000
		if dur > 0 {
			p = min(p, dur)
		}
		if old := ss.maxPos; p > old {
			d.ret[key2{e.Video, old}]--
			d.ret[key2{e.Video, p}]++
			if dur > 0 {
				gain := min(p, dur) - min(old, dur)
				vd.reach += gain
				if cd != nil {
					cd.reach += gain
				}
			}
			ss.maxPos = p
		}
	}
	return nil
}

func (d *delta) rendition(video, day int64, name string, creator int64) *rendCounts {
	k := strKey{video, day, name}
	rc := d.rend[k]
	if rc == nil {
		rc = &rendCounts{creator: creator}
		d.rend[k] = rc
	}
	return rc
}

func sketchBytes(d *delta, k sketchKey) ([]byte, error) {
	sk, ok := d.sketches[k]
	if !ok {
		return nil, nil
	}
	return sk.MarshalBinary()
}

// write stores d with one prepared statement per table.
func (r *rollup) write(ctx context.Context, tx *sql.Tx, d *delta) error {
	exec := func(query string, n int, each func(st *sql.Stmt) error) error {
		if n == 0 {
			return nil
		}
		st, err := tx.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("analytics: prepare: %w", err)
		}
		defer st.Close()
		if err := each(st); err != nil {
			return fmt.Errorf("analytics: write: %w", err)
		}
		return nil
	}
	dailySet := func(t string) string {
		return strings.NewReplacer("T.", t+".").Replace(`views = T.views + excluded.views, watch_ms = T.watch_ms + excluded.watch_ms,
		reach_s = T.reach_s + excluded.reach_s, capacity_s = T.capacity_s + excluded.capacity_s, stalls = T.stalls + excluded.stalls,
		stall_ms = T.stall_ms + excluded.stall_ms, sketch = COALESCE(excluded.sketch, T.sketch)`)
	}
	steps := []struct {
		query string
		n     int
		each  func(st *sql.Stmt) error
	}{
		{`INSERT INTO analytics_video_daily(video_id, day, creator_id, views, watch_ms, reach_s, capacity_s, stalls, stall_ms, sketch)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(video_id, day) DO UPDATE SET ` + dailySet("analytics_video_daily"), len(d.vd), func(st *sql.Stmt) error {
			for k, c := range d.vd {
				sk, err := sketchBytes(d, sketchKey{'v', k.a, k.b})
				if err != nil {
					return err
				}
				if _, err := st.ExecContext(ctx, k.a, k.b, c.creator, c.views, c.watchMs, c.reach, c.capacity, c.stalls, c.stallMs, sk); err != nil {
					return err
				}
			}
			return nil
		}},
		{`INSERT INTO analytics_creator_daily(creator_id, day, views, watch_ms, reach_s, capacity_s, stalls, stall_ms, sketch)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(creator_id, day) DO UPDATE SET ` + dailySet("analytics_creator_daily"), len(d.cd), func(st *sql.Stmt) error {
			for k, c := range d.cd {
				sk, err := sketchBytes(d, sketchKey{'c', k.a, k.b})
				if err != nil {
					return err
				}
				if _, err := st.ExecContext(ctx, k.a, k.b, c.views, c.watchMs, c.reach, c.capacity, c.stalls, c.stallMs, sk); err != nil {
					return err
				}
			}
			return nil
		}},
		{`INSERT INTO analytics_platform_daily(day, events, views, watch_ms, stalls, stall_ms, page_views, sketch)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(day) DO UPDATE SET events = analytics_platform_daily.events + excluded.events,
			views = analytics_platform_daily.views + excluded.views, watch_ms = analytics_platform_daily.watch_ms + excluded.watch_ms, stalls = analytics_platform_daily.stalls + excluded.stalls,
			stall_ms = analytics_platform_daily.stall_ms + excluded.stall_ms, page_views = analytics_platform_daily.page_views + excluded.page_views, sketch = COALESCE(excluded.sketch, analytics_platform_daily.sketch)`,
			len(d.pd), func(st *sql.Stmt) error {
				for day, c := range d.pd {
					sk, err := sketchBytes(d, sketchKey{'p', 0, day})
					if err != nil {
						return err
					}
					if _, err := st.ExecContext(ctx, day, c.events, c.views, c.watchMs, c.stalls, c.stallMs, c.pageViews, sk); err != nil {
						return err
					}
				}
				return nil
			}},
		{`INSERT INTO analytics_video_hourly(video_id, hour, views, watch_ms) VALUES (?, ?, ?, ?)
			ON CONFLICT(video_id, hour) DO UPDATE SET views = analytics_video_hourly.views + excluded.views, watch_ms = analytics_video_hourly.watch_ms + excluded.watch_ms`,
			len(d.vh), func(st *sql.Stmt) error {
				for k, c := range d.vh {
					if _, err := st.ExecContext(ctx, k.a, k.b, c.views, c.watchMs); err != nil {
						return err
					}
				}
				return nil
			}},
		{`INSERT INTO analytics_creator_hourly(creator_id, hour, views, watch_ms) VALUES (?, ?, ?, ?)
			ON CONFLICT(creator_id, hour) DO UPDATE SET views = analytics_creator_hourly.views + excluded.views, watch_ms = analytics_creator_hourly.watch_ms + excluded.watch_ms`,
			len(d.ch), func(st *sql.Stmt) error {
				for k, c := range d.ch {
					if _, err := st.ExecContext(ctx, k.a, k.b, c.views, c.watchMs); err != nil {
						return err
					}
				}
				return nil
			}},
		{`INSERT INTO analytics_platform_hourly(hour, events, views, watch_ms, page_views) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(hour) DO UPDATE SET events = analytics_platform_hourly.events + excluded.events, views = analytics_platform_hourly.views + excluded.views,
			watch_ms = analytics_platform_hourly.watch_ms + excluded.watch_ms, page_views = analytics_platform_hourly.page_views + excluded.page_views`,
			len(d.ph), func(st *sql.Stmt) error {
				for h, c := range d.ph {
					if _, err := st.ExecContext(ctx, h, c.events, c.views, c.watchMs, c.pageViews); err != nil {
						return err
					}
				}
				return nil
			}},
		{`INSERT INTO analytics_retention(video_id, second, views) VALUES (?, ?, ?)
			ON CONFLICT(video_id, second) DO UPDATE SET views = analytics_retention.views + excluded.views`, len(d.ret), func(st *sql.Stmt) error {
			for k, n := range d.ret {
				if n == 0 {
					continue
				}
				if _, err := st.ExecContext(ctx, k.a, k.b, n); err != nil {
					return err
				}
			}
			return nil
		}},
		{`INSERT INTO analytics_renditions(video_id, day, rendition, creator_id, switches, watch_ms) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT(video_id, day, rendition) DO UPDATE SET switches = analytics_renditions.switches + excluded.switches, watch_ms = analytics_renditions.watch_ms + excluded.watch_ms`,
			len(d.rend), func(st *sql.Stmt) error {
				for k, c := range d.rend {
					if _, err := st.ExecContext(ctx, k.a, k.b, k.s, c.creator, c.switches, c.watchMs); err != nil {
						return err
					}
				}
				return nil
			}},
		{`INSERT INTO analytics_referrers(video_id, day, referrer, creator_id, views) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(video_id, day, referrer) DO UPDATE SET views = analytics_referrers.views + excluded.views`, len(d.refs), func(st *sql.Stmt) error {
			for k, c := range d.refs {
				if _, err := st.ExecContext(ctx, k.a, k.b, k.s, c.creator, c.switches); err != nil {
					return err
				}
			}
			return nil
		}},
		{`INSERT INTO analytics_pages(day, path, views) VALUES (?, ?, ?)
			ON CONFLICT(day, path) DO UPDATE SET views = analytics_pages.views + excluded.views`, len(d.pages), func(st *sql.Stmt) error {
			for k, n := range d.pages {
				if _, err := st.ExecContext(ctx, k.a, k.s, n); err != nil {
					return err
				}
			}
			return nil
		}},
		{`INSERT INTO analytics_sessions(id, video_id, viewer, state, max_seq, max_pos, last_at) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET state = excluded.state, max_seq = excluded.max_seq, max_pos = excluded.max_pos, last_at = excluded.last_at`,
			len(d.sessions), func(st *sql.Stmt) error {
				for id, ss := range d.sessions {
					if _, err := st.ExecContext(ctx, id, ss.video, ss.viewer, ss.state, ss.maxSeq, ss.maxPos, ss.lastAt); err != nil {
						return err
					}
				}
				return nil
			}},
		{`INSERT INTO analytics_viewer_views(video_id, viewer, last_at) VALUES (?, ?, ?)
			ON CONFLICT(video_id, viewer) DO UPDATE SET last_at = excluded.last_at`, len(d.viewers), func(st *sql.Stmt) error {
			for k, t := range d.viewers {
				if _, err := st.ExecContext(ctx, k.a, k.b, t); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, s := range steps {
		if err := exec(s.query, s.n, s.each); err != nil {
			return err
		}
	}
	return nil
}
