// Package search is the search service: videos and creators indexed from
// the domain events, found by title, description, #tags and creator name,
// with typo tolerance, prefix (as-you-type) matching of the last word, and
// a ranking that blends text relevance with freshness and popularity.
//
// The Index interface has two drivers with one conformance suite
// (searchtest): Bleve v2 embedded in the process (the default; a scorch
// index on disk under data_dir/search) and PostgreSQL full-text search
// (tsvector + GIN, pg_trgm for typo candidates) for deployments on
// PostgreSQL. The Indexer keeps an Index up to date from the event stream
// and can rebuild it from the SQL tables; the Module serves the API and the
// search page.
package search

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// Limits on client-controlled input.
const (
	MaxQueryRunes   = 200  // longest query text, in characters
	MaxWords        = 10   // most words in a query
	MaxWordRunes    = 64   // longer words are cut to this length, when indexed and when searched
	MaxPageSize     = 50   // most hits per page
	DefaultPageSize = 20   // hits per page when the caller does not say
	MaxWindow       = 1000 // deepest result reachable by paging (page × size)
	MaxTags         = 20   // most #tags taken from one document
	MaxIndexedRunes = 5000 // longest description indexed
	SnippetRunes    = 200  // description text kept for result pages
)

// DocType is the kind of a search document.
type DocType string

// Document kinds.
const (
	Video   DocType = "video"
	Creator DocType = "creator"
)

func (t DocType) valid() bool { return t == Video || t == Creator }

// Doc is one searchable document. For a video, Title and Description are
// the video's, Creator is its uploader's username; for a creator, Title is
// the username. Popularity is the number of likes (of the video, or of all
// of a creator's videos); CreatedAt is when the item was published.
type Doc struct {
	Type        DocType
	ID          int64
	Title       string
	Description string
	Tags        []string
	Creator     string
	CreatorID   int64
	Thumbnail   string // object key of the poster image, may be empty
	CreatedAt   time.Time
	Popularity  int64
}

func (d Doc) key() string { return string(d.Type) + ":" + strconv.FormatInt(d.ID, 10) }

func docKey(t DocType, id int64) string { return string(t) + ":" + strconv.FormatInt(id, 10) }

func (d Doc) validate() error {
	if !d.Type.valid() {
		return fmt.Errorf("search: document type %q", d.Type)
	}
	if d.ID <= 0 {
		return fmt.Errorf("search: document id %d", d.ID)
	}
	return nil
}

// Hit is one search result.
type Hit struct {
	Type       DocType   `json:"type"`
	ID         int64     `json:"id,string"`
	Title      string    `json:"title"`
	Snippet    string    `json:"snippet,omitempty"`
	Tags       []string  `json:"tags,omitempty"`
	Creator    string    `json:"creator"`
	CreatorID  int64     `json:"creator_id,string"`
	Thumbnail  string    `json:"-"`
	CreatedAt  time.Time `json:"created_at"`
	Popularity int64     `json:"popularity"`
	Score      float64   `json:"score"`
}

// Result is one page of hits and the number of all matches.
type Result struct {
	Total int   `json:"total"`
	Hits  []Hit `json:"hits"`
}

// Query is a search request. Page counts from 1. Now is the time freshness
// is measured against (zero: the current time).
type Query struct {
	Text string
	Type DocType
	Page int
	Size int
	Now  time.Time
}

// terms is a query broken into the words every match must contain (each
// exactly or within its typo budget); when prefix is set the last word
// also matches as the beginning of a longer word, because the user is
// still typing it.
type terms struct {
	words  []string
	prefix bool
}

// maxFuzziness returns the largest Fuzziness of t's words.
func (t terms) maxFuzziness() int {
	k := 0
	for _, w := range t.words {
		k = max(k, Fuzziness(w))
	}
	return k
}

// MinPrefixRunes is the shortest last word that is also matched as a
// prefix; a single letter would match a large part of the vocabulary.
const MinPrefixRunes = 2

// check validates q and fills in defaults; it returns an errs.Invalid
// error naming the parameter.
func (q *Query) check() (terms, error) {
	if q.Type == "" {
		q.Type = Video
	}
	if !q.Type.valid() {
		return terms{}, errs.E(errs.Invalid, "type: want videos or creators")
	}
	if q.Page == 0 {
		q.Page = 1
	}
	if q.Size == 0 {
		q.Size = DefaultPageSize
	}
	if q.Page < 1 {
		return terms{}, errs.E(errs.Invalid, "page: must be 1 or more")
	}
	if q.Size < 1 || q.Size > MaxPageSize {
		return terms{}, errs.E(errs.Invalid, "size: must be between 1 and %d", MaxPageSize)
	}
	if q.Page > MaxWindow/q.Size {
		return terms{}, errs.E(errs.Invalid, "page: only the first %d results can be paged through", MaxWindow)
	}
	if !utf8.ValidString(q.Text) {
		return terms{}, errs.E(errs.Invalid, "q: not valid UTF-8")
	}
	if utf8.RuneCountInString(q.Text) > MaxQueryRunes {
		return terms{}, errs.E(errs.Invalid, "q: longer than %d characters", MaxQueryRunes)
	}
	words := Words(q.Text)
	if len(words) == 0 {
		return terms{}, errs.E(errs.Invalid, "q: no words to search for")
	}
	words = dedupe(words)
	if len(words) > MaxWords {
		return terms{}, errs.E(errs.Invalid, "q: at most %d words", MaxWords)
	}
	// The last word is a prefix while it is being typed: the text does not
	// end with a separator after it.
	last, _ := utf8.DecodeLastRuneInString(q.Text)
	prefix := isWordRune(last) && utf8.RuneCountInString(words[len(words)-1]) >= MinPrefixRunes
	if q.Now.IsZero() {
		q.Now = time.Now()
	}
	return terms{words: words, prefix: prefix}, nil
}

// Check validates q like a driver's Search does and fills in its defaults.
func (q *Query) Check() error {
	_, err := q.check()
	return err
}

// ParseQuery reads a query from URL parameters: q (the text), type
// (videos or creators; default videos), page (from 1) and size (1–50).
func ParseQuery(v url.Values) (Query, error) {
	var q Query
	for _, k := range []string{"q", "type", "page", "size"} {
		if len(v[k]) > 1 {
			return q, errs.E(errs.Invalid, "%s: given more than once", k)
		}
	}
	q.Text = v.Get("q")
	switch t := v.Get("type"); t {
	case "", "videos", "video":
		q.Type = Video
	case "creators", "creator":
		q.Type = Creator
	default:
		if len(t) > 20 {
			t = t[:20] + "…"
		}
		return q, errs.E(errs.Invalid, "type: %q; want videos or creators", t)
	}
	for _, p := range []struct {
		key string
		dst *int
	}{{"page", &q.Page}, {"size", &q.Size}} {
		s := v.Get(p.key)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || len(s) > 6 {
			return q, errs.E(errs.Invalid, "%s: not a number", p.key)
		}
		*p.dst = n
		if n == 0 {
			return q, errs.E(errs.Invalid, "%s: must be 1 or more", p.key)
		}
	}
	if _, err := q.check(); err != nil {
		return q, err
	}
	return q, nil
}

func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsNumber(r) || unicode.IsMark(r)
}

// Words breaks text into lower-case words: runs of letters, digits and
// combining marks, each cut to MaxWordRunes. Every driver indexes and
// queries these same words, so "don't" is "don" and "t" everywhere and a
// title matches its own text under every driver.
func Words(text string) []string {
	var out []string
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		w := strings.ToLower(text[start:end])
		if utf8.RuneCountInString(w) > MaxWordRunes {
			w = string([]rune(w)[:MaxWordRunes])
		}
		if w != "" && utf8.ValidString(w) {
			out = append(out, w)
		}
		start = -1
	}
	for i, r := range text {
		if r != utf8.RuneError && isWordRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		flush(i)
	}
	flush(len(text))
	return out
}

// Normalize returns text as its Words joined by single spaces: what a
// driver whose own tokenizer differs (PostgreSQL's parser knows e-mail
// addresses, URLs and file paths) is given to index.
func Normalize(text string) string { return strings.Join(Words(text), " ") }

func dedupe(words []string) []string {
	seen := make(map[string]bool, len(words))
	out := words[:0:0]
	for _, w := range words {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// Fuzziness is the number of typos (edits) a query word may contain: 0 for
// words shorter than 4 characters, 1 from 4, 2 from 8.
func Fuzziness(word string) int {
	switch n := utf8.RuneCountInString(word); {
	case n >= 8:
		return 2
	case n >= 4:
		return 1
	}
	return 0
}

// Tags returns the #hashtags in text, lower-cased, without the '#', in
// order of first appearance, at most MaxTags. A tag is a '#' not preceded
// by a word character, followed by letters, digits, marks or underscores.
func Tags(text string) []string {
	var out []string
	seen := map[string]bool{}
	prev := ' '
	for i := 0; i < len(text) && len(out) < MaxTags; {
		r, n := utf8.DecodeRuneInString(text[i:])
		i += n
		if r != '#' || isTagRune(prev) || prev == '#' {
			prev = r
			continue
		}
		j := i
		for j < len(text) {
			r2, n2 := utf8.DecodeRuneInString(text[j:])
			if !isTagRune(r2) {
				break
			}
			j += n2
		}
		if j == i {
			prev = r
			continue
		}
		prev, _ = utf8.DecodeLastRuneInString(text[i:j])
		tag := strings.Trim(strings.ToLower(text[i:j]), "_")
		i = j
		tag = truncate(tag, MaxWordRunes)
		if tag != "" && !seen[tag] {
			seen[tag] = true
			out = append(out, tag)
		}
	}
	return out
}

func isTagRune(r rune) bool { return r != utf8.RuneError && (isWordRune(r) || r == '_') }

// snippet returns the beginning of text for result pages, cut at a word
// boundary.
func snippet(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(text) <= SnippetRunes {
		return text
	}
	r := []rune(text)[:SnippetRunes]
	s := string(r)
	if i := strings.LastIndexByte(s, ' '); i > SnippetRunes/2 {
		s = s[:i]
	}
	return s + "…"
}

// truncate cuts text to at most n runes.
func truncate(text string, n int) string {
	if utf8.RuneCountInString(text) <= n {
		return text
	}
	return string([]rune(text)[:n])
}

// Ranking blends text relevance with freshness and popularity:
//
//	score = relevance × (1 + FreshnessWeight × 0.5^(age / HalfLife))
//	                  × (1 + PopularityWeight × ln(1 + popularity))
//
// relevance is the driver's text score (BM25 over the weighted fields in
// Bleve, ts_rank in PostgreSQL), age is now minus the publication time
// (never negative), popularity is the like count. Both factors multiply,
// so the blend does not depend on the scale of the driver's scores: with
// the defaults a video published today counts 1.5× one from long ago with
// the same text match, and 100 likes count 2.15× none.
type Ranking struct {
	FreshnessWeight  float64
	HalfLife         time.Duration
	PopularityWeight float64
}

// DefaultRanking is the ranking used when none is configured.
var DefaultRanking = Ranking{FreshnessWeight: 0.5, HalfLife: 30 * 24 * time.Hour, PopularityWeight: 0.25}

// Validate reports an error for weights that are negative or not finite,
// or a half-life that is not positive.
func (r Ranking) Validate() error {
	for _, w := range []float64{r.FreshnessWeight, r.PopularityWeight} {
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return fmt.Errorf("search: ranking weight %v: must be 0 or more", w)
		}
	}
	if r.HalfLife <= 0 {
		return fmt.Errorf("search: ranking half-life %v: must be positive", r.HalfLife)
	}
	return nil
}

// Blend returns the final score of a match with the given text relevance,
// publication time (Unix seconds) and popularity.
func (r Ranking) Blend(relevance, published float64, popularity float64, now time.Time) float64 {
	age := float64(now.Unix()) - published
	if age < 0 {
		age = 0
	}
	fresh := math.Exp2(-age / r.HalfLife.Seconds())
	if popularity < 0 {
		popularity = 0
	}
	return relevance * (1 + r.FreshnessWeight*fresh) * (1 + r.PopularityWeight*math.Log1p(popularity))
}
