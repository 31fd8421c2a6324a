package analytics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/idgen"
)

// SessionRequest is the body of POST /api/v1/analytics/sessions.
type SessionRequest struct {
	VideoID string `json:"video_id,omitempty"` // empty for pages other than watch pages
}

// SessionResponse is the answer to POST /api/v1/analytics/sessions.
type SessionResponse struct {
	Tracking         bool   `json:"tracking"` // false for bots: send nothing
	Session          string `json:"session,omitempty"`
	HeartbeatSeconds int    `json:"heartbeat_seconds"`
	MaxBatchEvents   int    `json:"max_batch_events"`
}

// IngestResponse is the answer to POST /api/v1/analytics/events.
type IngestResponse struct {
	Accepted  int    `json:"accepted"`
	Duplicate bool   `json:"duplicate,omitempty"` // the batch ID was stored before; stored once
	Dropped   int    `json:"dropped,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

func (s *Service) fail(w http.ResponseWriter, r *http.Request, reason string, err error) {
	s.m.ingestRejected.WithLabelValues(reason).Inc()
	httpx.Error(w, r, s.logger, err)
}

// handleSession issues a view session for one page load and makes sure
// the browser has a viewer cookie.
func (s *Service) handleSession(w http.ResponseWriter, r *http.Request) {
	var in SessionRequest
	if r.ContentLength != 0 {
		if err := httpx.Decode(r, 4096, &in); err != nil {
			httpx.Error(w, r, s.logger, err)
			return
		}
	}
	out := SessionResponse{HeartbeatSeconds: s.cfg.HeartbeatSeconds, MaxBatchEvents: s.cfg.MaxBatchEvents}
	if s.isBot(r.UserAgent()) {
		s.m.sessions.WithLabelValues("bot").Inc()
		httpx.JSON(w, http.StatusOK, out)
		return
	}
	var video int64
	if in.VideoID != "" {
		id, err := idgen.Parse(in.VideoID)
		if err != nil {
			httpx.Error(w, r, s.logger, errs.E(errs.Invalid, "video_id %q is not an id", in.VideoID))
			return
		}
		v, err := s.lookup(r.Context(), id)
		if err != nil {
			httpx.Error(w, r, s.logger, err)
			return
		}
		if !v.Ready && v.CreatorID != account.FromContext(r.Context()).UserID {
			httpx.Error(w, r, s.logger, errs.E(errs.NotFound, "no video with id %d", id))
			return
		}
		video = id
	}
	viewer, fresh := s.viewerOf(r)
	if ok, wait := s.limit.Allow(strconv.FormatInt(viewer, 36)); !ok {
		s.m.sessions.WithLabelValues("limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		httpx.Error(w, r, s.logger, errs.E(errs.TooMany, "too many view sessions for this viewer; retry after %s", wait.Round(time.Second)))
		return
	}
	if fresh {
		http.SetCookie(w, &http.Cookie{
			Name: ViewerCookie, Value: s.sign.viewerCookie(viewer), Path: "/", HttpOnly: true, Secure: s.cfg.SecureCookie,
			SameSite: http.SameSiteLaxMode, MaxAge: 400 * 24 * 3600,
		})
	}
	out.Tracking = true
	out.Session = s.sign.sessionToken(sessionClaims{Session: randomID(), Viewer: viewer, Video: video, Issued: s.now()})
	s.m.sessions.WithLabelValues("issued").Inc()
	w.Header().Set("Cache-Control", "no-store")
	httpx.JSON(w, http.StatusCreated, out)
}

// viewerOf returns the caller's viewer ID: the account's when logged in,
// else the viewer cookie's; fresh reports a new cookie ID to set.
func (s *Service) viewerOf(r *http.Request) (id int64, fresh bool) {
	if u := account.FromContext(r.Context()).UserID; u != 0 {
		return accountViewer(u), false
	}
	if c, err := r.Cookie(ViewerCookie); err == nil {
		if id, ok := s.sign.parseViewerCookie(c.Value); ok {
			return id, false
		}
	}
	return randomID(), true
}

// handleEvents is the batched ingest: validate, publish to the stream,
// answer 202 after the PubAck.
func (s *Service) handleEvents(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if s.isBot(r.UserAgent()) {
		httpx.Drain(r.Body)
		s.m.ingestEvents.WithLabelValues("bot").Inc()
		httpx.JSON(w, http.StatusAccepted, IngestResponse{Reason: "bot user agent: events dropped"})
		return
	}
	if r.ContentLength > s.cfg.MaxBatchBytes {
		s.m.ingestRejected.WithLabelValues("too_large").Inc()
		httpx.JSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("batch over %d bytes", s.cfg.MaxBatchBytes)})
		return
	}
	bodyBuf := s.buffer()
	defer s.putBuffer(bodyBuf)
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBatchBytes), *bodyBuf, r.ContentLength)
	*bodyBuf = body
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.m.ingestRejected.WithLabelValues("too_large").Inc()
			httpx.JSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("batch over %d bytes", s.cfg.MaxBatchBytes)})
			return
		}
		s.fail(w, r, "invalid", errs.E(errs.Invalid, "reading the batch: %v", err))
		return
	}
	rec, msgID, err := s.parseBatch(body, s.now())
	if err != nil {
		s.fail(w, r, "invalid", err)
		return
	}
	// The NATS client copies data into its write buffer before Publish
	// returns, so the buffer goes back to the pool after it.
	dataBuf := s.buffer()
	defer s.putBuffer(dataBuf)
	data := AppendRecord(*dataBuf, rec)
	*dataBuf = data
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	ack, err := s.js.Publish(ctx, subject, data, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(StreamName))
	if err != nil {
		s.logger.Warn("analytics: publish failed", "err", err)
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, "unavailable", errs.E(errs.Unavailable, "the event stream is unavailable; retry the same batch"))
		return
	}
	out := IngestResponse{Accepted: len(rec.Events), Duplicate: ack.Duplicate}
	if ack.Duplicate {
		s.m.ingestEvents.WithLabelValues("duplicate").Add(float64(len(rec.Events)))
	} else {
		s.m.ingestEvents.WithLabelValues("accepted").Add(float64(len(rec.Events)))
	}
	s.m.ingestDuration.Observe(time.Since(start).Seconds())
	httpx.JSON(w, http.StatusAccepted, out)
}

// readBody reads r to its end, appending to buf; size is the declared
// length when known (then the buffer grows once at most).
func readBody(r io.Reader, buf []byte, size int64) ([]byte, error) {
	if size > 0 && int64(cap(buf)-len(buf)) < size+1 {
		buf = append(make([]byte, 0, int64(len(buf))+size+1), buf...)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// parseBatch decodes and validates a batch body and returns the record to
// publish and its message ID (the stream de-duplicates on it).
func (s *Service) parseBatch(body []byte, now time.Time) (Record, string, error) {
	b, ok := fastBatch(body)
	if !ok {
		var err error
		if b, err = decodeBatch(body); err != nil {
			return Record{}, "", err
		}
	}
	if !validBatchID(b.BatchID) {
		return Record{}, "", errs.E(errs.Invalid, "batch_id must be %d–%d characters of A-Z a-z 0-9 - _", minBatchIDLen, maxBatchIDLen)
	}
	if len(b.Events) == 0 {
		return Record{}, "", errs.E(errs.Invalid, "batch has no events")
	}
	if len(b.Events) > s.cfg.MaxBatchEvents {
		return Record{}, "", errs.E(errs.Invalid, "batch has %d events; at most %d", len(b.Events), s.cfg.MaxBatchEvents)
	}
	claims := map[string]sessionClaims{}
	session := func(tok string) (sessionClaims, error) {
		if c, ok := claims[tok]; ok {
			return c, nil
		}
		c, err := s.sign.parseSession(tok, now, s.cfg.SessionTTL)
		if err != nil {
			return c, err
		}
		claims[tok] = c
		return c, nil
	}
	maxPlayed := int64(2*s.cfg.HeartbeatSeconds+5) * 1000
	maxPos := s.cfg.MaxPosition.Milliseconds()
	rec := Record{RecvMs: now.UnixMilli(), Events: make([]Event, 0, len(b.Events))}
	var first int64
	for i, in := range b.Events {
		tok := in.Session
		if tok == "" {
			tok = b.Session
		}
		if tok == "" {
			return Record{}, "", errs.E(errs.Invalid, "event %d: no session (set the batch's or the event's session)", i)
		}
		c, err := session(tok)
		if err != nil {
			return Record{}, "", errs.E(errs.Invalid, "event %d: %v", i, err)
		}
		e, err := in.validate(c, maxPlayed, maxPos)
		if err != nil {
			return Record{}, "", errs.E(errs.Invalid, "event %d: %v", i, err)
		}
		if i == 0 {
			first = c.Session
		}
		rec.Events = append(rec.Events, e)
	}
	// The batch ID is the client's; scoping it by the first event's
	// session keeps one client from shadowing another's batch.
	return rec, "ab-" + strconv.FormatInt(first, 36) + "-" + b.BatchID, nil
}

// decodeBatch parses a batch body with encoding/json, strictly.
func decodeBatch(body []byte) (Batch, error) {
	var b Batch
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return Batch{}, errs.E(errs.Invalid, "batch is not valid JSON: %v", err)
	}
	if dec.More() {
		return Batch{}, errs.E(errs.Invalid, "batch has data after the JSON value")
	}
	return b, nil
}
