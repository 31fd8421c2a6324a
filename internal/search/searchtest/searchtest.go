// Package searchtest is the conformance suite every search.Index driver
// passes: matching (exact, typo, prefix, every field, all words), type
// filtering, upsert/delete semantics, ranking, paging, hit contents and
// input validation.
package searchtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/search"
)

// Now is the clock the suite's queries use; documents are dated relative
// to it.
var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func video(id int64, title, desc, creator string, age time.Duration, likes int64) search.Doc {
	return search.Doc{
		Type: search.Video, ID: id, Title: title, Description: desc, Tags: search.Tags(title + " " + desc),
		Creator: creator, CreatorID: 1000 + int64(len(creator)), Thumbnail: fmt.Sprintf("thumbs/%d.jpg", id),
		CreatedAt: now.Add(-age), Popularity: likes,
	}
}

func creator(id int64, name string, age time.Duration) search.Doc {
	return search.Doc{Type: search.Creator, ID: id, Title: name, Creator: name, CreatorID: id, CreatedAt: now.Add(-age)}
}

// Run runs the suite. newIndex must return a new, empty index, closed by
// the caller's cleanup.
func Run(t *testing.T, newIndex func(t *testing.T) search.Index) {
	ctx := context.Background()
	day := 24 * time.Hour
	corpus := []search.Doc{
		video(1, "Climbing the mountain at dawn", "A long walk up the ridge. #hiking #alps", "alice", 3*day, 2),
		video(2, "Sourdough bread at home", "Flour, water, salt and patience. #baking", "bob", 10*day, 5),
		video(3, "Fountain pens reviewed", "Nibs and inks compared", "carol", 20*day, 0),
		video(4, "Street food tour", "Noodles and dumplings in the night market", "dmitri_k", 2*day, 1),
		video(5, "Café Müller rehearsal", "Dance theatre, Wuppertal", "eve", 40*day, 0),
		video(6, "Photography basics", "Aperture, shutter speed and ISO explained for beginners", "frank", 5*day, 9),
		creator(101, "alice", 100*day),
		creator(102, "bob", 90*day),
		creator(103, "mountainman", 80*day),
	}
	load := func(t *testing.T) search.Index {
		t.Helper()
		idx := newIndex(t)
		if err := idx.Upsert(ctx, corpus...); err != nil {
			t.Fatal(err)
		}
		return idx
	}
	find := func(t *testing.T, idx search.Index, q search.Query) search.Result {
		t.Helper()
		if q.Now.IsZero() {
			q.Now = now
		}
		res, err := idx.Search(ctx, q)
		if err != nil {
			t.Fatalf("search %q: %v", q.Text, err)
		}
		return res
	}
	ids := func(r search.Result) []int64 {
		out := []int64{}
		for _, h := range r.Hits {
			out = append(out, h.ID)
		}
		return out
	}
	expect := func(t *testing.T, idx search.Index, text string, want ...int64) {
		t.Helper()
		got := ids(find(t, idx, search.Query{Text: text}))
		a, b := slices.Clone(got), slices.Clone(want)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			t.Errorf("search %q: got %v, want %v (any order)", text, got, want)
		}
	}

	includes := func(t *testing.T, idx search.Index, text string, want int64) {
		t.Helper()
		if got := ids(find(t, idx, search.Query{Text: text})); !slices.Contains(got, want) {
			t.Errorf("search %q: got %v, want %d among them", text, got, want)
		}
	}

	t.Run("Empty", func(t *testing.T) {
		idx := newIndex(t)
		res := find(t, idx, search.Query{Text: "anything"})
		if res.Total != 0 || len(res.Hits) != 0 {
			t.Fatalf("empty index: %+v", res)
		}
		if n, err := idx.Count(ctx); err != nil || n != 0 {
			t.Fatalf("Count = %d, %v; want 0", n, err)
		}
	})

	t.Run("Exact", func(t *testing.T) {
		idx := load(t)
		expect(t, idx, "ridge ", 1)
		expect(t, idx, "RIDGE ", 1)
		expect(t, idx, "sourdough bread ", 2)
		// 8 letters allow 2 typos, so "mountain" finds "fountain" too.
		expect(t, idx, "mountain ", 1, 3)
		expect(t, idx, "zebra ")
	})

	t.Run("Typos", func(t *testing.T) {
		idx := load(t)
		// A transposition away from "mountain". (It is 2 edits from
		// "fountain" too, which Bleve finds and the PostgreSQL driver's
		// trigram candidates may miss; the suite does not require it.)
		includes(t, idx, "mountian ", 1)
		expect(t, idx, "sourdogh ", 2)   // 1 deletion
		expect(t, idx, "breed ", 2)      // 5 letters, 1 substitution
		expect(t, idx, "photografy ", 6) // 10 letters, 2 edits
		expect(t, idx, "noodels ", 4)    // 7 letters, a transposition is 1 edit
		expect(t, idx, "muller ", 5)     // ü → u is one edit
		expect(t, idx, "toor ", 4)       // 4 letters, 1 edit
		expect(t, idx, "tuor ", 4)       // 4 letters, a transposition
		expect(t, idx, "tpuor ")         // 5 letters, 2 edits
		expect(t, idx, "fod ")           // 3 letters: no typo allowed
		expect(t, idx, "phtgrphy ")      // 8 letters, 3 edits
		expect(t, idx, "clmbing mountian ", 1)
	})

	t.Run("Prefix", func(t *testing.T) {
		idx := load(t)
		expect(t, idx, "sourd", 2)
		expect(t, idx, "photo", 6)
		expect(t, idx, "street fo", 4)
		expect(t, idx, "hik", 1)  // a tag
		expect(t, idx, "dmit", 4) // a creator name
		expect(t, idx, "dumpl")   // description words are not prefix-matched
		expect(t, idx, "sourd ")  // a finished word is not a prefix
		expect(t, idx, "s")       // too short to expand
	})

	t.Run("Fields", func(t *testing.T) {
		idx := load(t)
		expect(t, idx, "dumplings ", 4) // description
		expect(t, idx, "hiking ", 1)    // tag
		expect(t, idx, "#baking", 2)    // tag written as a tag
		expect(t, idx, "carol ", 3)     // creator name
		expect(t, idx, "dmitri ", 4)    // creator name, split at the underscore
	})

	t.Run("AllWords", func(t *testing.T) {
		idx := load(t)
		expect(t, idx, "mountain bread ")
		expect(t, idx, "bread patience ", 2)
	})

	t.Run("Creators", func(t *testing.T) {
		idx := load(t)
		res := find(t, idx, search.Query{Text: "alice", Type: search.Creator})
		if got := ids(res); !slices.Equal(got, []int64{101}) {
			t.Fatalf("creators alice: %v", got)
		}
		h := res.Hits[0]
		if h.Type != search.Creator || h.Title != "alice" || h.CreatorID != 101 {
			t.Fatalf("creator hit: %+v", h)
		}
		if got := ids(find(t, idx, search.Query{Text: "mountain", Type: search.Creator})); !slices.Equal(got, []int64{103}) {
			t.Fatalf("creators mountain: %v", got)
		}
		if got := ids(find(t, idx, search.Query{Text: "mountainman ", Type: search.Video})); len(got) != 0 {
			t.Fatalf("a creator came back as a video: %v", got)
		}
	})

	t.Run("UpsertReplacesAndIsIdempotent", func(t *testing.T) {
		idx := load(t)
		n0, err := idx.Count(ctx)
		if err != nil || n0 != int64(len(corpus)) {
			t.Fatalf("Count = %d, %v; want %d", n0, err, len(corpus))
		}
		d := corpus[1]
		d.Title, d.Description, d.Tags = "Rye crackers", "Crispy", nil
		for range 2 {
			if err := idx.Upsert(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		if n, _ := idx.Count(ctx); n != n0 {
			t.Fatalf("Count after re-upsert = %d, want %d", n, n0)
		}
		expect(t, idx, "sourdough ")
		expect(t, idx, "crackers ", 2)
		// The same key twice in one batch: the last one wins.
		d2 := d
		d2.Title = "Spelt crackers"
		if err := idx.Upsert(ctx, d, d2); err != nil {
			t.Fatal(err)
		}
		expect(t, idx, "spelt ", 2)
		expect(t, idx, "rye ")
	})

	t.Run("Delete", func(t *testing.T) {
		idx := load(t)
		if err := idx.Delete(ctx, search.Video, 1, 999); err != nil {
			t.Fatal(err)
		}
		expect(t, idx, "ridge ")
		if got := ids(find(t, idx, search.Query{Text: "mountain", Type: search.Creator})); !slices.Equal(got, []int64{103}) {
			t.Fatalf("deleting video 1 touched creators: %v", got)
		}
		if n, _ := idx.Count(ctx); n != int64(len(corpus)-1) {
			t.Fatalf("Count = %d, want %d", n, len(corpus)-1)
		}
		if err := idx.Delete(ctx, search.Video); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Ranking", func(t *testing.T) {
		idx := newIndex(t)
		docs := []search.Doc{
			// Same text, different age.
			video(11, "kayak trip one", "", "x", 400*day, 0),
			video(12, "kayak trip two", "", "x", 1*day, 0),
			// Same text and age, different popularity.
			video(21, "glacier walk one", "", "x", 30*day, 0),
			video(22, "glacier walk two", "", "x", 30*day, 500),
			// Title match against description match, same age and likes.
			video(31, "volcano hike", "a day out", "x", 30*day, 0),
			video(32, "island hike", "volcano", "x", 30*day, 0),
			// An exact match against a typo match of the same query.
			video(41, "lantern festival", "", "x", 30*day, 0),
			video(42, "lanterm festival", "", "x", 30*day, 0),
		}
		if err := idx.Upsert(ctx, docs...); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			q     string
			first int64
			why   string
		}{
			{"kayak ", 12, "fresher first"},
			{"glacier ", 22, "more popular first"},
			{"volcano ", 31, "title above description"},
			{"lantern ", 41, "exact above typo"},
		} {
			got := ids(find(t, idx, search.Query{Text: c.q}))
			if len(got) != 2 || got[0] != c.first {
				t.Errorf("%s: %q ranked %v, want %d first of 2", c.why, c.q, got, c.first)
			}
		}
		res := find(t, idx, search.Query{Text: "kayak "})
		if len(res.Hits) == 2 && !(res.Hits[0].Score > res.Hits[1].Score && res.Hits[1].Score > 0) {
			t.Errorf("scores not descending and positive: %v, %v", res.Hits[0].Score, res.Hits[1].Score)
		}
	})

	t.Run("Paging", func(t *testing.T) {
		idx := newIndex(t)
		var docs []search.Doc
		for i := range 23 {
			docs = append(docs, video(int64(100+i), fmt.Sprintf("river clip %d", i), "", "x", time.Duration(i)*day, int64(i%4)))
		}
		if err := idx.Upsert(ctx, docs...); err != nil {
			t.Fatal(err)
		}
		var all []int64
		for page := 1; page <= 4; page++ {
			res := find(t, idx, search.Query{Text: "river", Page: page, Size: 10})
			if res.Total != 23 {
				t.Fatalf("page %d: total %d, want 23", page, res.Total)
			}
			want := min(10, max(0, 23-(page-1)*10))
			if len(res.Hits) != want {
				t.Fatalf("page %d: %d hits, want %d", page, len(res.Hits), want)
			}
			all = append(all, ids(res)...)
		}
		slices.Sort(all)
		if len(slices.Compact(all)) != 23 {
			t.Fatalf("pages overlap or miss hits: %v", all)
		}
		// Same query, same order.
		a := ids(find(t, idx, search.Query{Text: "river", Size: 50}))
		b := ids(find(t, idx, search.Query{Text: "river", Size: 50}))
		if !slices.Equal(a, b) {
			t.Fatalf("order not stable: %v vs %v", a, b)
		}
	})

	t.Run("HitContents", func(t *testing.T) {
		idx := newIndex(t)
		long := strings.Repeat("word ", 100)
		d := video(7, "Night #timelapse over the bay", long, "ann_lee", 2*day, 42)
		if err := idx.Upsert(ctx, d); err != nil {
			t.Fatal(err)
		}
		res := find(t, idx, search.Query{Text: "timelapse"})
		if len(res.Hits) != 1 {
			t.Fatalf("hits: %+v", res)
		}
		h := res.Hits[0]
		if h.Type != search.Video || h.ID != 7 || h.Title != d.Title || h.Creator != "ann_lee" || h.CreatorID != d.CreatorID ||
			h.Thumbnail != "thumbs/7.jpg" || !h.CreatedAt.Equal(d.CreatedAt.Truncate(time.Second)) || h.Popularity != 42 {
			t.Fatalf("hit %+v\nfrom doc %+v", h, d)
		}
		if !slices.Equal(h.Tags, []string{"timelapse"}) {
			t.Fatalf("tags %q", h.Tags)
		}
		if h.Snippet == "" || len([]rune(h.Snippet)) > search.SnippetRunes+1 || !strings.HasPrefix(h.Snippet, "word word") {
			t.Fatalf("snippet %q", h.Snippet)
		}
	})

	t.Run("Unicode", func(t *testing.T) {
		idx := newIndex(t)
		if err := idx.Upsert(ctx, video(8, "Ночная прогулка по Москве", "東京 夜景", "юля", day, 0)); err != nil {
			t.Fatal(err)
		}
		expect(t, idx, "прогулка ", 8)
		expect(t, idx, "прогулко ", 8)
		expect(t, idx, "моск", 8)
		expect(t, idx, "юля ", 8)
	})

	t.Run("BadQueries", func(t *testing.T) {
		idx := load(t)
		for _, q := range []search.Query{
			{Text: ""},
			{Text: "  !!! ,,, "},
			{Text: strings.Repeat("a", search.MaxQueryRunes+1)},
			{Text: "a b c d e f g h i j k"},
			{Text: "ok", Size: search.MaxPageSize + 1},
			{Text: "ok", Size: -1},
			{Text: "ok", Page: -2},
			{Text: "ok", Page: search.MaxWindow/10 + 1, Size: 10},
			{Text: "ok", Type: "playlist"},
			{Text: "bad \xff utf8"},
		} {
			_, err := idx.Search(ctx, q)
			if errs.KindOf(err) != errs.Invalid {
				t.Errorf("query %+v: err %v, want an Invalid error", q, err)
			}
		}
		if err := idx.Upsert(ctx, search.Doc{Type: "bogus", ID: 1}); err == nil {
			t.Error("upsert of a document of unknown type succeeded")
		}
		if err := idx.Upsert(ctx, search.Doc{Type: search.Video}); err == nil {
			t.Error("upsert of a document without an ID succeeded")
		}
	})
}
