package search

import (
	"math"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/blueprint-media/blueprint/internal/errs"
)

func TestWords(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"Hello, World!", []string{"hello", "world"}},
		{"don't stop-me now_", []string{"don", "t", "stop", "me", "now"}},
		{"x264 4K café", []string{"x264", "4k", "café"}},
		{"mail@example.com /usr/bin", []string{"mail", "example", "com", "usr", "bin"}},
		{"Ночная ПРОГУЛКА", []string{"ночная", "прогулка"}},
		{"東京 夜景", []string{"東京", "夜景"}},
		{"  \t\n ", nil},
		{"bad\xffbyte", []string{"bad", "byte"}},
		{strings.Repeat("a", 100), []string{strings.Repeat("a", MaxWordRunes)}},
	} {
		if got := Words(c.in); !slices.Equal(got, c.want) {
			t.Errorf("Words(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTags(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"Sunset #Timelapse over the #bay, #timelapse again", []string{"timelapse", "bay"}},
		{"issue#12 and a# and ##double and #_under_score_", []string{"under_score"}},
		{"#go_lang #Москва #4k", []string{"go_lang", "москва", "4k"}},
		{"(#paren) #end", []string{"paren", "end"}},
		{"no tags here", nil},
	} {
		if got := Tags(c.in); !slices.Equal(got, c.want) {
			t.Errorf("Tags(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	var b strings.Builder
	for i := range 40 {
		b.WriteString(" #tag")
		b.WriteString(strings.Repeat("z", i))
	}
	if n := len(Tags(b.String())); n != MaxTags {
		t.Errorf("%d tags from 40, want the first %d", n, MaxTags)
	}
}

func TestFuzziness(t *testing.T) {
	for w, k := range map[string]int{"cat": 0, "cats": 1, "kitten": 1, "kittens": 1, "mountain": 2, "прогулка": 2, "ёжик": 1} {
		if got := Fuzziness(w); got != k {
			t.Errorf("Fuzziness(%q) = %d, want %d", w, got, k)
		}
	}
}

func TestWithinEdits(t *testing.T) {
	for _, c := range []struct {
		a, b string
		k    int
		want bool
	}{
		{"mountain", "mountain", 0, true},
		{"mountian", "mountain", 1, true}, // transposition
		{"mountian", "fountain", 1, false},
		{"mountian", "fountain", 2, true},
		{"sourdogh", "sourdough", 1, true},
		{"cats", "cots", 1, true},
		{"cats", "dogs", 2, false},
		{"abc", "abcdef", 2, false},
		{"müller", "muller", 1, true},
		{"", "ab", 2, true},
		{"ab", "", 1, false},
	} {
		if got := withinEdits(c.a, c.b, c.k); got != c.want {
			t.Errorf("withinEdits(%q, %q, %d) = %v, want %v", c.a, c.b, c.k, got, c.want)
		}
	}
}

func TestBlend(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := DefaultRanking
	fresh := r.Blend(1, float64(now.Unix()), 0, now)
	if math.Abs(fresh-1.5) > 1e-9 {
		t.Errorf("brand new, no likes: %v, want 1.5", fresh)
	}
	halfAge := r.Blend(1, float64(now.Add(-r.HalfLife).Unix()), 0, now)
	if math.Abs(halfAge-1.25) > 1e-9 {
		t.Errorf("one half-life old: %v, want 1.25", halfAge)
	}
	future := r.Blend(1, float64(now.Add(time.Hour).Unix()), 0, now)
	if future != fresh {
		t.Errorf("a publication time in the future counts as now: %v vs %v", future, fresh)
	}
	ancient := r.Blend(2, 0, 100, now)
	if want := 2 * (1 + 0.25*math.Log1p(100)); math.Abs(ancient-want) > 1e-6 {
		t.Errorf("ancient, 100 likes: %v, want %v", ancient, want)
	}
	if r.Blend(1, 0, -5, now) != r.Blend(1, 0, 0, now) {
		t.Error("negative popularity is not treated as none")
	}
	for _, bad := range []Ranking{{FreshnessWeight: -1, HalfLife: time.Hour}, {HalfLife: 0}, {PopularityWeight: math.NaN(), HalfLife: time.Hour}} {
		if bad.Validate() == nil {
			t.Errorf("ranking %+v validated", bad)
		}
	}
}

func TestParseQuery(t *testing.T) {
	ok := []string{"q=cat", "q=cats&type=creators&page=3&size=50", "q=%D0%BC%D0%BE%D1%81%D0%BA", "q=a+b&type=videos&page=1"}
	for _, raw := range ok {
		v, _ := url.ParseQuery(raw)
		if _, err := ParseQuery(v); err != nil {
			t.Errorf("ParseQuery(%s): %v", raw, err)
		}
	}
	bad := map[string]string{
		"":                              "q:",
		"q=":                            "q:",
		"q=%21%21":                      "q:",
		"q=a&q=b":                       "q: given more than once",
		"q=a&type=playlists":            "type:",
		"q=a&page=x":                    "page:",
		"q=a&page=0":                    "page:",
		"q=a&page=-1":                   "page:",
		"q=a&page=99999999999":          "page:",
		"q=a&size=51":                   "size:",
		"q=a&size=10&page=101":          "page:",
		"q=a+b+c+d+e+f+g+h+i+j+k":       "q: at most",
		"q=" + strings.Repeat("a", 201): "q: longer",
		"q=%FF":                         "q: not valid",
	}
	for raw, prefix := range bad {
		v, _ := url.ParseQuery(raw)
		_, err := ParseQuery(v)
		if errs.KindOf(err) != errs.Invalid || !strings.HasPrefix(errs.Message(err), prefix) {
			t.Errorf("ParseQuery(%s) = %v, want an Invalid error starting %q", raw, err, prefix)
		}
	}
	v, _ := url.ParseQuery("q=photo")
	q, _ := ParseQuery(v)
	if q.Type != Video || q.Page != 1 || q.Size != DefaultPageSize {
		t.Errorf("defaults: %+v", q)
	}
	tm, _ := q.check()
	if !tm.prefix {
		t.Error("a query ending inside a word does not treat it as a prefix")
	}
	q = Query{Text: "photo "}
	if tm, _ := q.check(); tm.prefix {
		t.Error("a query ending in a space treats its last word as a prefix")
	}
	q = Query{Text: "a"}
	if tm, _ := q.check(); tm.prefix {
		t.Errorf("a one-letter last word is a prefix")
	}
}

// FuzzParseQuery: no input makes the parser panic, and whatever it
// accepts is within the limits.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"q=cat", "q=cats&type=creators&page=3&size=50", "q=%FF%FE", "q=a&q=b", "q=" + strings.Repeat("ж", 200),
		"q=%23tag+with+%23tags&page=2", "type=&page=&size=", "q=a+b+c+d+e+f+g+h+i+j", "page=1e9&q=x", "q=%00%01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v)
		if err != nil {
			if errs.KindOf(err) != errs.Invalid {
				t.Fatalf("error without the Invalid kind: %v", err)
			}
			return
		}
		tm, err := q.check()
		if err != nil {
			t.Fatalf("accepted query fails its own check: %v", err)
		}
		if len(tm.words) == 0 || len(tm.words) > MaxWords || q.Size < 1 || q.Size > MaxPageSize || q.Page < 1 || q.Page*q.Size > MaxWindow {
			t.Fatalf("accepted query out of limits: %+v %+v", q, tm)
		}
		if utf8.RuneCountInString(q.Text) > MaxQueryRunes || !q.Type.valid() {
			t.Fatalf("accepted query out of limits: %+v", q)
		}
	})
}

// FuzzWordsAndTags: words and tags are valid, bounded, made of word
// characters, and normalising is idempotent.
func FuzzWordsAndTags(f *testing.F) {
	for _, s := range []string{"Hello, World!", "#tag #Tag2 x#no", "don't", "\xff\xfe#\xff", "İstanbul ǅemal", "ﬁne ß", "#" + strings.Repeat("é", 80), "a\u0301b", "١٢٣ #٤٥"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, w := range Words(s) {
			if w == "" || !utf8.ValidString(w) || utf8.RuneCountInString(w) > MaxWordRunes {
				t.Fatalf("bad word %q from %q", w, s)
			}
			for _, r := range w {
				if !isWordRune(r) {
					t.Fatalf("word %q from %q has %q", w, s, r)
				}
			}
		}
		n := Normalize(s)
		if Normalize(n) != n {
			t.Fatalf("Normalize not idempotent on %q: %q then %q", s, n, Normalize(n))
		}
		tags := Tags(s)
		if len(tags) > MaxTags {
			t.Fatalf("%d tags", len(tags))
		}
		for _, tag := range tags {
			if tag == "" || !utf8.ValidString(tag) || utf8.RuneCountInString(tag) > MaxWordRunes || strings.ContainsRune(tag, '#') {
				t.Fatalf("bad tag %q from %q", tag, s)
			}
		}
		_ = snippet(s)
	})
}
