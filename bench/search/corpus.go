package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/blueprint-media/blueprint/internal/search"
)

// corpus is a generated set of video documents and the query sets made
// from them. Everything comes from one seed, so every engine gets the same
// documents and queries.
type corpus struct {
	docs    []search.Doc
	vocab   []string       // by frequency rank: vocab[0] is the most frequent
	rank    map[string]int // word → rank
	queries map[string][]query
}

// query is one benchmark query: its text and the document it was made
// from (0 for queries without an intended document).
type query struct {
	text   string
	target int64
	kind   string // the edit of a typo query: insert, delete, substitute, transpose (two for typo2)
	word   string // the word the typo was made in, before the edit
}

// Query set names, in report order.
var querySets = []string{"exact", "prefix", "typo1", "typo2"}

var (
	onsets = []string{"b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "tr", "th"}
	vowels = []string{"a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "y"}
	codas  = []string{"", "", "", "n", "r", "s", "t", "l", "m", "nd", "rt", "st", "ck"}
)

// word returns a pronounceable pseudo-word of 1–4 syllables.
func word(r *rand.Rand) string {
	var b strings.Builder
	for range 1 + r.IntN(4) {
		b.WriteString(onsets[r.IntN(len(onsets))])
		b.WriteString(vowels[r.IntN(len(vowels))])
		b.WriteString(codas[r.IntN(len(codas))])
	}
	return b.String()
}

// newCorpus generates n video documents: titles of 3–9 words and
// descriptions of descMin–descMax words drawn Zipf-style (s = 1.1) from a
// vocabulary of 40,000 pseudo-words, 0–8 tags, 5,000 creators, Zipf(1.1)
// like counts and publication dates spread over five years before now.
// Then nq queries per set.
func newCorpus(seed uint64, n, descMin, descMax, nq int, now time.Time) *corpus {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c := &corpus{rank: map[string]int{}, queries: map[string][]query{}}
	for len(c.vocab) < 40000 {
		w := word(r)
		if _, dup := c.rank[w]; dup || utf8.RuneCountInString(w) < 3 {
			continue
		}
		c.rank[w] = len(c.vocab)
		c.vocab = append(c.vocab, w)
	}
	zipf := rand.NewZipf(r, 1.1, 1, uint64(len(c.vocab)-1))
	likes := rand.NewZipf(r, 1.1, 1, 1_000_000)
	pick := func() string { return c.vocab[zipf.Uint64()] }
	creators := make([]string, 5000)
	for i := range creators {
		creators[i] = fmt.Sprintf("%s_%s%d", word(r), word(r), i)
	}
	words := func(k int) string {
		ws := make([]string, k)
		for i := range ws {
			ws[i] = pick()
		}
		return strings.Join(ws, " ")
	}
	span := int64(5 * 365 * 24 * time.Hour / time.Second)
	for i := range n {
		title := words(3 + r.IntN(7))
		title = strings.ToUpper(title[:1]) + title[1:]
		desc := words(descMin + r.IntN(descMax-descMin+1))
		var tags []string
		for range r.IntN(9) {
			tags = append(tags, c.vocab[r.IntN(2000)]) // tags come from the commoner words
		}
		if len(tags) > 0 {
			desc += " #" + strings.Join(tags, " #")
		}
		cr := r.IntN(len(creators))
		c.docs = append(c.docs, search.Doc{
			Type: search.Video, ID: int64(i + 1), Title: title, Description: desc, Tags: search.Tags(desc),
			Creator: creators[cr], CreatorID: int64(cr + 1), Thumbnail: fmt.Sprintf("thumbs/%d.jpg", i+1),
			CreatedAt: now.Add(-time.Duration(r.Int64N(span)) * time.Second), Popularity: int64(likes.Uint64()),
		})
	}
	// Queries are made from a document's two rarest title words, and only
	// from documents whose two words occur together (in any searched
	// field) in at most maxMatches documents: the exact query then has at
	// most maxMatches hits, so the intended document is in its top 10
	// whatever the ranking, and recall@10 of the typo and prefix forms
	// measures their matching and ranking, not ties among thousands of
	// documents that contain the same two common words (with Zipf-drawn
	// titles, 12 % of random documents have only common title words).
	postings := map[string][]int32{}
	for i, d := range c.docs {
		seen := map[string]bool{}
		for _, w := range search.Words(d.Title + " " + d.Description + " " + d.Creator) {
			if !seen[w] {
				seen[w] = true
				postings[w] = append(postings[w], int32(i))
			}
		}
	}
	rarest := func(d search.Doc) []string {
		ws := slices.Compact(slices.Sorted(slices.Values(search.Words(d.Title))))
		sort.SliceStable(ws, func(i, j int) bool { return c.rank[ws[i]] > c.rank[ws[j]] })
		if len(ws) > 2 {
			ws = ws[:2]
		}
		return ws
	}
	// pickDoc returns a random document whose rarest title words are
	// distinctive, and those words.
	pickDoc := func() (search.Doc, []string) {
		for {
			d := c.docs[r.IntN(len(c.docs))]
			ws := rarest(d)
			if len(ws) == 2 && cooccur(postings[ws[0]], postings[ws[1]]) <= maxMatches {
				return d, ws
			}
		}
	}
	for len(c.queries["exact"]) < nq {
		d, ws := pickDoc()
		c.queries["exact"] = append(c.queries["exact"], query{text: strings.Join(ws, " ") + " ", target: d.ID})
	}
	for len(c.queries["prefix"]) < nq {
		d, ws := pickDoc()
		last := []rune(ws[len(ws)-1])
		if len(last) < 3 {
			continue
		}
		cut := min(len(last), 2+r.IntN(4)) // the first 2–5 characters of the last word
		ws[len(ws)-1] = string(last[:cut])
		c.queries["prefix"] = append(c.queries["prefix"], query{text: strings.Join(ws, " "), target: d.ID})
	}
	for _, set := range []struct {
		name   string
		edits  int
		minLen int
	}{{"typo1", 1, 5}, {"typo2", 2, 9}} {
		for tries := 0; len(c.queries[set.name]) < nq && tries < 1000*nq; tries++ {
			d, ws := pickDoc()
			j := -1
			for i, w := range ws {
				if utf8.RuneCountInString(w) >= set.minLen {
					j = i
					break
				}
			}
			if j < 0 {
				continue
			}
			w := ws[j]
			var kinds []string
			for range set.edits {
				var k string
				w, k = typo(r, w)
				kinds = append(kinds, k)
			}
			if w == ws[j] {
				continue
			}
			orig := ws[j]
			ws[j] = w
			c.queries[set.name] = append(c.queries[set.name], query{strings.Join(ws, " ") + " ", d.ID, strings.Join(kinds, "+"), orig})
		}
	}
	return c
}

// maxMatches is the most documents the two words of a query may occur in
// together.
const maxMatches = 10

// cooccur counts the documents in both sorted posting lists.
func cooccur(a, b []int32) int {
	n := 0
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			n++
			i++
			j++
		}
	}
	return n
}

// typo applies one random edit: insert, delete, substitute or transpose.
func typo(r *rand.Rand, w string) (string, string) {
	rs := []rune(w)
	i := r.IntN(len(rs))
	letter := rune('a' + r.IntN(26))
	kind := ""
	switch r.IntN(4) {
	case 0:
		rs, kind = append(rs[:i], append([]rune{letter}, rs[i:]...)...), "insert"
	case 1:
		if len(rs) > 1 {
			rs = append(rs[:i], rs[i+1:]...)
		}
		kind = "delete"
	case 2:
		rs[i], kind = letter, "substitute"
	default:
		if i+1 < len(rs) {
			rs[i], rs[i+1] = rs[i+1], rs[i]
		}
		kind = "transpose"
	}
	if i == 0 {
		kind += "@0"
	}
	return string(rs), kind
}
