package search

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/custom"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/keyword"
	"github.com/blevesearch/bleve/v2/analysis/token/edgengram"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/whitespace"
	"github.com/blevesearch/bleve/v2/mapping"
	bsearch "github.com/blevesearch/bleve/v2/search"
	"github.com/blevesearch/bleve/v2/search/query"
	index "github.com/blevesearch/bleve_index_api"
)

// bleveLayout names the index mapping below; an index on disk with another
// layout is rebuilt (moved aside and recreated empty, for Reindex to fill).
const bleveLayout = "blueprint-search-6"

const bleveLayoutKey = "blueprint_layout"

// maxEdgeGram is the longest word beginning indexed for prefix matching;
// longer prefixes are expanded over the term dictionary (few terms share
// a long beginning).
const maxEdgeGram = 15

// Weighted text fields, searched exactly by every query word. "all" holds
// title, tags, creator name and description: it stands for the
// description (weight 1) and is where typos are matched.
var textFields = []struct {
	name  string
	boost float64
}{{"title", 3}, {"tags", 2}, {"creator", 1.5}, {"all", 1}}

// BleveConfig configures the embedded Bleve index.
type BleveConfig struct {
	Path    string  // index directory, created when missing
	Ranking Ranking // zero value: DefaultRanking
	// LockTimeout bounds the wait for an index another process holds open
	// (default 5 s); then OpenBleve fails instead of hanging.
	LockTimeout time.Duration
}

// Bleve is the embedded driver: a Bleve v2 scorch index on local disk,
// BM25 scoring, typo tolerance with fuzzy (Levenshtein automaton) term
// queries and prefix queries on the last word. A process holds its index
// exclusively.
type Bleve struct {
	idx  bleve.Index
	rank Ranking
	path string
	// Recreated is set when OpenBleve found no usable index at Path and made
	// a new, empty one (the old one, if any, moved aside), so the caller
	// knows to Reindex.
	Recreated bool
	// MovedAside is where an unusable old index was moved, if one was.
	MovedAside string
}

// OpenBleve opens the index at cfg.Path, creating it when it does not
// exist. An index of an older layout of this package is deleted and
// created anew; one that cannot be opened for any other reason than
// another process holding it (corrupt, not ours) is renamed to
// Path.broken-<unix time> and replaced with a new, empty one. The index
// holds only data derived from the SQL store, so Indexer.Reindex restores
// it.
func OpenBleve(cfg BleveConfig) (*Bleve, error) {
	if cfg.Ranking == (Ranking{}) {
		cfg.Ranking = DefaultRanking
	}
	if err := cfg.Ranking.Validate(); err != nil {
		return nil, err
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = 5 * time.Second
	}
	rt := map[string]any{"bolt_timeout": cfg.LockTimeout.String()}
	b := &Bleve{rank: cfg.Ranking, path: cfg.Path}
	idx, err := bleve.OpenUsing(cfg.Path, rt)
	switch {
	case err == nil:
		if v, verr := idx.GetInternal([]byte(bleveLayoutKey)); verr == nil && string(v) != bleveLayout && strings.HasPrefix(string(v), "blueprint-search-") {
			// An index of an older layout: rebuilt from scratch.
			idx.Close()
			if err := os.RemoveAll(cfg.Path); err != nil {
				return nil, fmt.Errorf("search: remove index %s of layout %s: %w", cfg.Path, v, err)
			}
			idx = nil
		} else if verr != nil || string(v) != bleveLayout {
			idx.Close()
			idx, err = nil, fmt.Errorf("index layout %q, want %q", v, bleveLayout)
		}
	case errors.Is(err, bleve.ErrorIndexPathDoesNotExist):
		idx, err = nil, nil
	case isLockTimeout(err):
		return nil, fmt.Errorf("search: index %s is held open by another process (each process needs its own data_dir, or use search.driver postgres): %w", cfg.Path, err)
	}
	if err != nil {
		idx = nil
		aside := fmt.Sprintf("%s.broken-%d", cfg.Path, time.Now().Unix())
		if rerr := os.Rename(cfg.Path, aside); rerr != nil {
			return nil, fmt.Errorf("search: open index %s: %w (and moving it aside failed: %v)", cfg.Path, err, rerr)
		}
		b.MovedAside = aside
	}
	if idx == nil {
		idx, err = bleve.NewUsing(cfg.Path, bleveMapping(), bleve.Config.DefaultIndexType, bleve.Config.DefaultKVStore, rt)
		if err != nil {
			return nil, fmt.Errorf("search: create index %s: %w", cfg.Path, err)
		}
		if err := idx.SetInternal([]byte(bleveLayoutKey), []byte(bleveLayout)); err != nil {
			idx.Close()
			return nil, fmt.Errorf("search: create index %s: %w", cfg.Path, err)
		}
		b.Recreated = true
	}
	b.idx = idx
	return b, nil
}

func isLockTimeout(err error) bool {
	// bbolt's ErrTimeout reaches us as text through scorch's wrapping.
	return err != nil && strings.Contains(err.Error(), "timeout")
}

func bleveMapping() mapping.IndexMapping {
	im := bleve.NewIndexMapping()
	im.ScoringModel = index.BM25Scoring
	// The text is Normalize()d before indexing: lower-case words separated
	// by single spaces. Splitting at the spaces gives back exactly those
	// words, the same ones PostgreSQL and the query parser use.
	if err := im.AddCustomAnalyzer("bp", map[string]any{"type": custom.Name, "tokenizer": whitespace.Name}); err != nil {
		panic(err)
	}
	// The "prefix" field holds the beginnings (2 to maxEdgeGram
	// characters) of every title, tag and creator word, so the word being
	// typed is one term lookup instead of an expansion over every term
	// that starts with it.
	if err := im.AddCustomTokenFilter("bp_edge", map[string]any{"type": edgengram.Name, "min": float64(MinPrefixRunes), "max": float64(maxEdgeGram)}); err != nil {
		panic(err)
	}
	if err := im.AddCustomAnalyzer("bp_prefix", map[string]any{"type": custom.Name, "tokenizer": whitespace.Name, "token_filters": []any{"bp_edge"}}); err != nil {
		panic(err)
	}
	im.DefaultAnalyzer = "bp"
	im.IndexDynamic, im.StoreDynamic, im.DocValuesDynamic = false, false, false

	dm := bleve.NewDocumentStaticMapping()
	for _, name := range []string{"title", "tags", "creator", "all"} {
		fm := bleve.NewTextFieldMapping()
		fm.Analyzer, fm.Store, fm.DocValues, fm.IncludeInAll, fm.IncludeTermVectors = "bp", false, false, false, false
		dm.AddFieldMappingsAt(name, fm)
	}
	pm := bleve.NewTextFieldMapping()
	pm.Analyzer, pm.Store, pm.DocValues, pm.IncludeInAll, pm.IncludeTermVectors = "bp_prefix", false, false, false, false
	dm.AddFieldMappingsAt("prefix", pm)
	typ := bleve.NewKeywordFieldMapping()
	typ.Analyzer, typ.Store, typ.DocValues, typ.IncludeInAll = keyword.Name, false, false, false
	dm.AddFieldMappingsAt("type", typ)
	// The ranking inputs, "<published unix seconds> <likes>", as one
	// keyword term with doc values: the custom scorer reads it for every
	// hit. (A numeric field's doc values hold all its prefix-coded terms,
	// and decompressing those made up 40 % of query time.)
	rank := bleve.NewKeywordFieldMapping()
	rank.Analyzer, rank.Store, rank.DocValues, rank.IncludeInAll = keyword.Name, false, true, false
	dm.AddFieldMappingsAt("rank", rank)
	// Display fields: stored, not searched.
	for _, name := range []string{"d_title", "d_snippet", "d_tags", "d_creator", "d_creator_id", "d_thumb", "d_created", "d_pop"} {
		fm := bleve.NewTextFieldMapping()
		fm.Index, fm.Store, fm.DocValues, fm.IncludeInAll = false, true, false, false
		dm.AddFieldMappingsAt(name, fm)
	}
	// No "_all" composite field: every field says where it is searched.
	dm.AddSubDocumentMapping("_all", bleve.NewDocumentDisabledMapping())
	im.DefaultMapping = dm
	return im
}

func bleveDoc(d Doc) map[string]any {
	tags := make([]string, 0, len(d.Tags))
	for _, t := range d.Tags {
		tags = append(tags, Normalize(t))
	}
	title, creator, desc := Normalize(d.Title), Normalize(d.Creator), Normalize(truncate(d.Description, MaxIndexedRunes))
	return map[string]any{
		"type":         string(d.Type),
		"title":        title,
		"tags":         tags,
		"creator":      creator,
		"all":          strings.Join([]string{title, strings.Join(tags, " "), creator, desc}, " "),
		"prefix":       strings.Join([]string{title, strings.Join(tags, " "), creator}, " "),
		"rank":         strconv.FormatInt(d.CreatedAt.Unix(), 10) + " " + strconv.FormatInt(d.Popularity, 10),
		"d_created":    strconv.FormatInt(d.CreatedAt.Unix(), 10),
		"d_pop":        strconv.FormatInt(d.Popularity, 10),
		"d_title":      d.Title,
		"d_snippet":    snippet(d.Description),
		"d_tags":       strings.Join(d.Tags, " "),
		"d_creator":    d.Creator,
		"d_creator_id": strconv.FormatInt(d.CreatorID, 10),
		"d_thumb":      d.Thumbnail,
	}
}

// Driver returns "bleve".
func (b *Bleve) Driver() string { return "bleve" }

// Path returns the index directory.
func (b *Bleve) Path() string { return b.path }

// Upsert indexes docs in one batch.
func (b *Bleve) Upsert(ctx context.Context, docs ...Doc) error {
	if len(docs) == 0 {
		return nil
	}
	batch := b.idx.NewBatch()
	for _, d := range docs {
		if err := d.validate(); err != nil {
			return err
		}
		if err := batch.Index(d.key(), bleveDoc(d)); err != nil {
			return fmt.Errorf("search: index %s: %w", d.key(), err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.idx.Batch(batch); err != nil {
		return fmt.Errorf("search: index batch: %w", err)
	}
	return nil
}

// Delete removes documents.
func (b *Bleve) Delete(ctx context.Context, typ DocType, ids ...int64) error {
	if !typ.valid() {
		return fmt.Errorf("search: document type %q", typ)
	}
	batch := b.idx.NewBatch()
	for _, id := range ids {
		batch.Delete(docKey(typ, id))
	}
	if err := b.idx.Batch(batch); err != nil {
		return fmt.Errorf("search: delete: %w", err)
	}
	return nil
}

// Count returns the number of documents.
func (b *Bleve) Count(ctx context.Context) (int64, error) {
	n, err := b.idx.DocCount()
	if err != nil {
		return 0, fmt.Errorf("search: count: %w", err)
	}
	return int64(n), nil
}

// Close closes the index.
func (b *Bleve) Close() error { return b.idx.Close() }

// Search runs q. Typos are tried in two steps: first every word of 4+
// characters with one edit; only when that finds nothing, again with the
// whole budget of Fuzziness (two edits from 8 characters). A
// two-edit Levenshtein automaton walks several times more of the term
// dictionary than a one-edit one (4× the median query time on the
// benchmark corpus), and a query that finds documents with one edit
// rarely wants the ones two edits away.
func (b *Bleve) Search(ctx context.Context, q Query) (Result, error) {
	t, err := q.check()
	if err != nil {
		return Result{}, err
	}
	res, err := b.search(ctx, q, t, 1)
	if err == nil && res.Total == 0 && t.maxFuzziness() > 1 {
		res, err = b.search(ctx, q, t, 2)
	}
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{}, fmt.Errorf("search: bleve: %w", err)
	}
	out := Result{Total: int(res.Total), Hits: make([]Hit, 0, len(res.Hits))}
	for _, h := range res.Hits {
		typ, idStr, _ := strings.Cut(h.ID, ":")
		id, _ := strconv.ParseInt(idStr, 10, 64)
		hit := Hit{Type: DocType(typ), ID: id, Score: h.Score}
		hit.Title, _ = h.Fields["d_title"].(string)
		hit.Snippet, _ = h.Fields["d_snippet"].(string)
		hit.Creator, _ = h.Fields["d_creator"].(string)
		hit.Thumbnail, _ = h.Fields["d_thumb"].(string)
		if s, ok := h.Fields["d_creator_id"].(string); ok {
			hit.CreatorID, _ = strconv.ParseInt(s, 10, 64)
		}
		if s, ok := h.Fields["d_tags"].(string); ok && s != "" {
			hit.Tags = strings.Fields(s)
		}
		if s, ok := h.Fields["d_created"].(string); ok {
			n, _ := strconv.ParseInt(s, 10, 64)
			hit.CreatedAt = time.Unix(n, 0).UTC()
		}
		if s, ok := h.Fields["d_pop"].(string); ok {
			hit.Popularity, _ = strconv.ParseInt(s, 10, 64)
		}
		out.Hits = append(out.Hits, hit)
	}
	return out, nil
}

// search runs one Bleve search for t, with at most maxFuzz edits per
// word.
func (b *Bleve) search(ctx context.Context, q Query, t terms, maxFuzz int) (*bleve.SearchResult, error) {
	words := query.NewConjunctionQuery(nil)
	for i, w := range t.words {
		last := i == len(t.words)-1
		var alts []query.Query
		// Exact matches score per field, with the field's weight. Typos
		// are matched once, in the "all" field: one automaton and one
		// term-dictionary walk per word instead of four. An exact match
		// also matches there, so it outranks a typo. The word being typed
		// matches the beginnings of title, tag and creator words.
		for _, f := range textFields {
			tq := query.NewTermQuery(w)
			tq.SetField(f.name)
			tq.SetBoost(f.boost)
			alts = append(alts, tq)
		}
		if k := min(Fuzziness(w), maxFuzz); k > 0 {
			fq := query.NewFuzzyQuery(w)
			fq.SetField("all")
			fq.SetFuzziness(k)
			alts = append(alts, fq)
		}
		if last && t.prefix {
			if utf8.RuneCountInString(w) <= maxEdgeGram {
				pq := query.NewTermQuery(w)
				pq.SetField("prefix")
				alts = append(alts, pq)
			} else {
				for _, f := range []string{"title", "tags", "creator"} {
					pq := query.NewPrefixQuery(w)
					pq.SetField(f)
					alts = append(alts, pq)
				}
			}
		}
		words.AddQuery(query.NewDisjunctionQuery(alts))
	}
	typ := query.NewTermQuery(string(q.Type))
	typ.SetField("type")
	bq := query.NewBooleanQuery([]query.Query{words}, nil, nil)
	bq.AddFilter(typ)
	now := q.Now
	scored := query.NewCustomScoreQueryWithScorer(bq, func(_ context.Context, d *bsearch.DocumentMatch) (float64, error) {
		created, pop := parseRank(d.Fields["rank"])
		return b.rank.Blend(d.Score, created, pop, now), nil
	}, []string{"rank"}, nil)

	req := bleve.NewSearchRequestOptions(scored, q.Size, (q.Page-1)*q.Size, false)
	req.Fields = []string{"d_title", "d_snippet", "d_tags", "d_creator", "d_creator_id", "d_thumb", "d_created", "d_pop"}
	req.SortBy([]string{"-_score", "-_id"})
	return b.idx.SearchInContext(ctx, req)
}

// parseRank reads the "rank" doc value: "<published> <likes>".
func parseRank(v any) (published, likes float64) {
	s, _ := v.(string)
	a, b, _ := strings.Cut(s, " ")
	published, _ = strconv.ParseFloat(a, 64)
	likes, _ = strconv.ParseFloat(b, 64)
	return published, likes
}
