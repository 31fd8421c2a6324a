package social

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/kvstore"
)

// Activity is one entry of a user's activity list: something the user
// did, newest first.
type Activity struct {
	Kind   string    `json:"kind"`             // "follow", "like" or "comment"
	Target int64     `json:"target_id,string"` // the followed user, the liked or commented video
	At     time.Time `json:"at"`
}

// ActivityLog keeps each user's recent activity as a capped list in a
// kvstore.Store under "activity:<user>": a high-write, read-rarely list
// that needs no joins. It is written after the action's transaction
// commits and is not rebuilt from SQL: an entry lost to a crash between
// the commit and the push, or to a Redis failover, stays lost. Entries
// record what happened: unliking or unfollowing later does not remove them.
type ActivityLog struct {
	KV     kvstore.Store
	MaxLen int // entries kept per user; ≤ 0: 100
}

func (l *ActivityLog) maxLen() int {
	if l.MaxLen <= 0 {
		return 100
	}
	return l.MaxLen
}

func activityKey(user int64) string { return "activity:" + idStr(user) }

// record pushes one entry; a failure is logged, not returned: the action
// itself has committed.
func (s *Service) record(ctx context.Context, user int64, kind string, target int64) {
	l := s.cfg.Activity
	if l == nil {
		return
	}
	b, err := json.Marshal(Activity{Kind: kind, Target: target, At: s.now().UTC().Truncate(time.Second)})
	if err == nil {
		err = l.KV.Push(ctx, activityKey(user), b, l.maxLen())
	}
	if err != nil && s.logger != nil {
		s.logger.Warn("social: activity entry lost", "user", user, "kind", kind, "err", err)
	}
}

// Activity returns up to limit of user's newest activity entries. Without
// an activity log it is an empty list.
func (s *Service) Activity(ctx context.Context, user int64, limit int) ([]Activity, error) {
	if limit < 1 || limit > 100 {
		return nil, errs.E(errs.Invalid, "limit must be 1..100")
	}
	out := []Activity{}
	if s.cfg.Activity == nil {
		return out, nil
	}
	raw, err := s.cfg.Activity.KV.Range(ctx, activityKey(user), limit)
	if err != nil {
		return nil, fmt.Errorf("social: activity: %w", err)
	}
	for _, b := range raw {
		var a Activity
		if err := json.Unmarshal(b, &a); err != nil {
			return nil, fmt.Errorf("social: activity: corrupt entry: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// apiActivity serves GET /api/v1/activity: the caller's own recent
// activity.
func (m *Module) apiActivity(w http.ResponseWriter, r *http.Request) {
	me, err := caller(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	_, limit, err := cursorAndLimit(r, 20)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	items, err := m.S.Activity(r.Context(), me.UserID, limit)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"items": items, "enabled": m.S.cfg.Activity != nil})
}
