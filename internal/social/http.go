package social

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/web"
)

// Module serves the social API and the feed page on the frontends.
type Module struct {
	S            *Service
	Media        *media.Service
	Pages        *web.Pages
	Logger       *slog.Logger
	MaxBodyBytes int64
}

// Routes mounts the routes (frontend.Module).
func (m *Module) Routes(mux *http.ServeMux, instance string) {
	mux.HandleFunc("POST /api/v1/users/{id}/follow", m.follow)
	mux.HandleFunc("DELETE /api/v1/users/{id}/follow", m.follow)
	mux.HandleFunc("GET /api/v1/users/{id}/stats", m.stats)
	mux.HandleFunc("GET /api/v1/feed", m.apiFeed)
	mux.HandleFunc("GET /api/v1/activity", m.apiActivity)
	mux.HandleFunc("POST /api/v1/videos/{id}/like", m.like)
	mux.HandleFunc("DELETE /api/v1/videos/{id}/like", m.like)
	mux.HandleFunc("GET /api/v1/videos/{id}/social", m.videoSocial)
	mux.HandleFunc("GET /api/v1/videos/{id}/comments", m.comments)
	mux.HandleFunc("POST /api/v1/videos/{id}/comments", m.addComment)
	mux.HandleFunc("DELETE /api/v1/comments/{id}", m.deleteComment)
	mux.HandleFunc("GET /api/v1/comments/recent", m.recentComments)
	mux.HandleFunc("GET /feed", m.feedPage)
}

func (m *Module) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.Error(w, r, m.Logger, err)
}

func pathID(r *http.Request) (int64, error) {
	id, err := idgen.Parse(r.PathValue("id"))
	if err != nil {
		return 0, errs.E(errs.NotFound, "no such id: %q", r.PathValue("id"))
	}
	return id, nil
}

func cursorAndLimit(r *http.Request, def int) (int64, int, error) {
	q := r.URL.Query()
	var before int64
	if c := q.Get("cursor"); c != "" {
		id, err := idgen.Parse(c)
		if err != nil {
			return 0, 0, errs.E(errs.Invalid, "bad cursor %q", c)
		}
		before = id
	}
	limit := def
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			return 0, 0, errs.E(errs.Invalid, "limit must be 1..100")
		}
		limit = n
	}
	return before, limit, nil
}

// callerAndID returns the logged-in caller and the path's {id}; on error it
// writes the response and returns false.
func (m *Module) callerAndID(w http.ResponseWriter, r *http.Request) (account.Identity, int64, bool) {
	me, err := caller(r)
	if err == nil {
		var id int64
		if id, err = pathID(r); err == nil {
			return me, id, true
		}
	}
	m.fail(w, r, err)
	return me, 0, false
}

// caller returns the logged-in caller or an Unauthorized error.
func caller(r *http.Request) (account.Identity, error) {
	id := account.FromContext(r.Context())
	if id.UserID == 0 {
		return id, errs.E(errs.Unauthorized, "log in first")
	}
	return id, nil
}

func (m *Module) follow(w http.ResponseWriter, r *http.Request) {
	me, target, ok := m.callerAndID(w, r)
	if !ok {
		return
	}
	var err error
	if r.Method == http.MethodDelete {
		err = m.S.Unfollow(r.Context(), me.UserID, target)
	} else {
		err = m.S.Follow(r.Context(), me.UserID, target)
	}
	if err != nil {
		m.fail(w, r, err)
		return
	}
	st, err := m.S.Stats(r.Context(), target, me.UserID)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, st)
}

func (m *Module) stats(w http.ResponseWriter, r *http.Request) {
	target, err := pathID(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	st, err := m.S.Stats(r.Context(), target, account.FromContext(r.Context()).UserID)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, st)
}

// feed returns a page of the caller's feed as videos and the next cursor.
func (m *Module) feed(r *http.Request, user int64) ([]media.Video, int64, error) {
	before, limit, err := cursorAndLimit(r, 24)
	if err != nil {
		return nil, 0, err
	}
	ids, err := m.S.Feed(r.Context(), user, before, limit)
	if err != nil {
		return nil, 0, err
	}
	vs := make([]media.Video, 0, len(ids))
	for _, id := range ids {
		v, err := m.Media.Get(r.Context(), id)
		if errs.KindOf(err) == errs.NotFound {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		vs = append(vs, v)
	}
	var next int64
	if len(ids) == limit {
		next = ids[len(ids)-1]
	}
	return vs, next, nil
}

func (m *Module) apiFeed(w http.ResponseWriter, r *http.Request) {
	me, err := caller(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	vs, next, err := m.feed(r, me.UserID)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	out := map[string]any{"videos": vs}
	if next != 0 {
		out["next_cursor"] = strconv.FormatInt(next, 10)
	}
	httpx.JSON(w, http.StatusOK, out)
}

func (m *Module) like(w http.ResponseWriter, r *http.Request) {
	me, video, ok := m.callerAndID(w, r)
	if !ok {
		return
	}
	var err error
	liked := r.Method != http.MethodDelete
	var n int64
	if liked {
		n, err = m.S.Like(r.Context(), me.UserID, video)
	} else {
		n, err = m.S.Unlike(r.Context(), me.UserID, video)
	}
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"likes": n, "liked": liked})
}

// videoSocial is what the watch page needs besides the video: counts,
// whether the caller likes it and follows its creator.
func (m *Module) videoSocial(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	v, err := m.Media.Get(r.Context(), id)
	if err == nil && v.Status != media.StatusReady {
		err = errs.E(errs.NotFound, "no video with id %d", id)
	}
	if err != nil {
		m.fail(w, r, err)
		return
	}
	me := account.FromContext(r.Context()).UserID
	creator, err := m.S.Stats(r.Context(), v.UserID, me)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	liked := false
	if me != 0 {
		if liked, err = m.S.Liked(r.Context(), me, id); err != nil {
			m.fail(w, r, err)
			return
		}
	}
	httpx.JSON(w, http.StatusOK, map[string]any{
		"likes": v.Likes, "comments": v.Comments, "liked": liked, "creator": creator, "mine": me == v.UserID,
	})
}

func (m *Module) comments(w http.ResponseWriter, r *http.Request) {
	video, err := pathID(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	before, limit, err := cursorAndLimit(r, 50)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	cs, err := m.S.Comments(r.Context(), video, before, limit)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	out := map[string]any{"comments": cs}
	if len(cs) == limit {
		out["next_cursor"] = strconv.FormatInt(cs[len(cs)-1].ID, 10)
	}
	httpx.JSON(w, http.StatusOK, out)
}

// recentComments lists the newest comments on the whole site (?limit=,
// default 20): across every shard cluster when comments are sharded.
func (m *Module) recentComments(w http.ResponseWriter, r *http.Request) {
	_, limit, err := cursorAndLimit(r, 20)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	cs, err := m.S.RecentComments(r.Context(), limit)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"comments": cs})
}

func (m *Module) addComment(w http.ResponseWriter, r *http.Request) {
	me, video, ok := m.callerAndID(w, r)
	if !ok {
		return
	}
	var in struct{ Body string }
	if err := httpx.Decode(r, m.MaxBodyBytes, &in); err != nil {
		m.fail(w, r, err)
		return
	}
	c, err := m.S.AddComment(r.Context(), me.UserID, video, in.Body)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusCreated, c)
}

func (m *Module) deleteComment(w http.ResponseWriter, r *http.Request) {
	me, id, ok := m.callerAndID(w, r)
	if !ok {
		return
	}
	if err := m.S.DeleteComment(r.Context(), me.UserID, id); err != nil {
		m.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Module) feedPage(w http.ResponseWriter, r *http.Request) {
	me := account.FromContext(r.Context())
	if me.UserID == 0 {
		http.Redirect(w, r, "/login?next=/feed", http.StatusSeeOther)
		return
	}
	vs, next, err := m.feed(r, me.UserID)
	if err != nil {
		if errs.KindOf(err) == errs.Invalid {
			m.fail(w, r, err)
			return
		}
		m.Logger.Error("feed", "err", err)
		http.Error(w, "the feed is unavailable; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	m.Pages.Render(w, http.StatusOK, "feed", struct {
		User   account.Identity
		Videos []media.Video
		Next   int64
	}{me, vs, next})
}
