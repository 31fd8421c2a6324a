package search

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// postgresSchema creates the driver's tables. search_docs holds one row
// per document with a weighted tsvector (A title, B tags, C creator, D
// description) under a GIN index; search_words is the vocabulary of words
// long enough to be misspelled, where a query
// word finds its typo candidates (the "table of unique words" pattern of
// the pg_trgm documentation), under a trigram GIN index. Both GIN indexes
// have fastupdate off: with it on, new entries wait in a pending list that
// every query scans linearly until (auto)vacuum merges it, which made
// queries after a bulk load some 100× slower; here writes pay instead.
const postgresSchema = `
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE IF NOT EXISTS search_docs (
	kind       text     NOT NULL,
	id         bigint   NOT NULL,
	title      text     NOT NULL,
	snippet    text     NOT NULL,
	tags       text     NOT NULL,
	creator    text     NOT NULL,
	creator_id bigint   NOT NULL,
	thumb      text     NOT NULL,
	created_at bigint   NOT NULL,
	popularity bigint   NOT NULL,
	tsv        tsvector NOT NULL,
	PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING gin (tsv) WITH (fastupdate = off);
CREATE TABLE IF NOT EXISTS search_words (word text PRIMARY KEY);
CREATE INDEX IF NOT EXISTS search_words_trgm ON search_words USING gin (word gin_trgm_ops) WITH (fastupdate = off);
`

// trgmThreshold is the trigram similarity from which a vocabulary word is
// checked as a typo candidate: low enough that one edit in a four-letter
// word passes ("cats" and "cots" share 2 of 8 trigrams).
const trgmThreshold = "0.2"

// Postgres is the PostgreSQL full-text search driver: a tsvector per
// document under a GIN index, prefix matching with to_tsquery's ':*', and
// typo tolerance by looking up each query word's nearest vocabulary words
// with pg_trgm and keeping those within Fuzziness(word) edits. It needs
// the pg_trgm extension (PostgreSQL contrib; trusted, so the database
// owner may create it). Any number of processes may share one database.
type Postgres struct {
	db   *sql.DB
	rank Ranking
}

// NewPostgres returns the driver on db (a pgx stdlib pool; the caller
// closes it) and creates its tables if needed. rank's zero value means
// DefaultRanking.
func NewPostgres(ctx context.Context, db *sql.DB, rank Ranking) (*Postgres, error) {
	if rank == (Ranking{}) {
		rank = DefaultRanking
	}
	if err := rank.Validate(); err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("search: postgres: %w", err)
	}
	defer tx.Rollback()
	// Processes starting together must not race on CREATE EXTENSION.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7302157114)`); err != nil {
		return nil, fmt.Errorf("search: postgres schema lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, postgresSchema); err != nil {
		return nil, fmt.Errorf("search: postgres schema (is the pg_trgm extension installed? it is in postgresql-contrib): %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("search: postgres schema: %w", err)
	}
	return &Postgres{db: db, rank: rank}, nil
}

// Driver returns "postgres".
func (p *Postgres) Driver() string { return "postgres" }

// Close does nothing: the caller owns the database handle.
func (p *Postgres) Close() error { return nil }

// Upsert writes docs in one transaction.
func (p *Postgres) Upsert(ctx context.Context, docs ...Doc) error {
	if len(docs) == 0 {
		return nil
	}
	// One row per key: ON CONFLICT cannot update a row twice in a statement.
	last := map[string]int{}
	for i, d := range docs {
		if err := d.validate(); err != nil {
			return err
		}
		last[d.key()] = i
	}
	var (
		kinds, titles, snippets, tags, creators, thumbs []string
		nTitles, nTags, nCreators, nDescs               []string
		ids, creatorIDs, created, pops                  []int64
		words                                           = map[string]bool{}
	)
	for i, d := range docs {
		if last[d.key()] != i {
			continue
		}
		kinds = append(kinds, string(d.Type))
		ids = append(ids, d.ID)
		titles = append(titles, d.Title)
		snippets = append(snippets, snippet(d.Description))
		tags = append(tags, strings.Join(d.Tags, " "))
		creators = append(creators, d.Creator)
		creatorIDs = append(creatorIDs, d.CreatorID)
		thumbs = append(thumbs, d.Thumbnail)
		created = append(created, d.CreatedAt.Unix())
		pops = append(pops, d.Popularity)
		nt, ntg, nc, nd := Normalize(d.Title), Normalize(strings.Join(d.Tags, " ")), Normalize(d.Creator), Normalize(truncate(d.Description, MaxIndexedRunes))
		nTitles, nTags, nCreators, nDescs = append(nTitles, nt), append(nTags, ntg), append(nCreators, nc), append(nDescs, nd)
		for _, s := range []string{nt, ntg, nc, nd} {
			for _, w := range strings.Fields(s) {
				if Fuzziness(w) > 0 {
					words[w] = true
				}
			}
		}
	}
	vocab := make([]string, 0, len(words))
	for w := range words {
		vocab = append(vocab, w)
	}
	// A fixed order, so concurrent writers take the word rows' locks in the
	// same order and cannot deadlock.
	sort.Strings(vocab)
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("search: postgres upsert: %w", err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `
INSERT INTO search_docs (kind, id, title, snippet, tags, creator, creator_id, thumb, created_at, popularity, tsv)
SELECT k, i, t, s, tg, c, ci, th, ca, po,
	setweight(to_tsvector('simple', nt), 'A') || setweight(to_tsvector('simple', ntg), 'B') ||
	setweight(to_tsvector('simple', nc), 'C') || setweight(to_tsvector('simple', nd), 'D')
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[],
	$11::text[], $12::text[], $13::text[], $14::text[]) AS u(k, i, t, s, tg, c, ci, th, ca, po, nt, ntg, nc, nd)
ON CONFLICT (kind, id) DO UPDATE SET title = EXCLUDED.title, snippet = EXCLUDED.snippet, tags = EXCLUDED.tags,
	creator = EXCLUDED.creator, creator_id = EXCLUDED.creator_id, thumb = EXCLUDED.thumb, created_at = EXCLUDED.created_at,
	popularity = EXCLUDED.popularity, tsv = EXCLUDED.tsv`,
		kinds, ids, titles, snippets, tags, creators, creatorIDs, thumbs, created, pops, nTitles, nTags, nCreators, nDescs)
	if err != nil {
		return fmt.Errorf("search: postgres upsert: %w", err)
	}
	if len(vocab) > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO search_words (word) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, vocab); err != nil {
			return fmt.Errorf("search: postgres vocabulary: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("search: postgres upsert: %w", err)
	}
	return nil
}

// Delete removes documents. Their words stay in the vocabulary, where they
// can only offer typo candidates that match nothing.
func (p *Postgres) Delete(ctx context.Context, typ DocType, ids ...int64) error {
	if !typ.valid() {
		return fmt.Errorf("search: document type %q", typ)
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := p.db.ExecContext(ctx, `DELETE FROM search_docs WHERE kind = $1 AND id = ANY($2::bigint[])`, string(typ), ids); err != nil {
		return fmt.Errorf("search: postgres delete: %w", err)
	}
	return nil
}

// Count returns the number of documents.
func (p *Postgres) Count(ctx context.Context) (int64, error) {
	var n int64
	if err := p.db.QueryRowContext(ctx, `SELECT count(*) FROM search_docs`).Scan(&n); err != nil {
		return 0, fmt.Errorf("search: postgres count: %w", err)
	}
	return n, nil
}

// Search runs q.
func (p *Postgres) Search(ctx context.Context, q Query) (Result, error) {
	t, err := q.check()
	if err != nil {
		return Result{}, err
	}
	cands, err := p.typoCandidates(ctx, t.words)
	if err != nil {
		return Result{}, err
	}
	// The query words are letters, digits and marks only (Words), so
	// quoting them as tsquery lexemes is safe.
	var all, exact []string
	for i, w := range t.words {
		alts := []string{"'" + w + "'"}
		if i == len(t.words)-1 && t.prefix {
			// The word being typed also matches the beginnings of title,
			// tag and creator words (weights A, B, C), as in Bleve.
			alts = append(alts, "'"+w+"':*ABC")
		}
		for _, c := range cands[w] {
			alts = append(alts, "'"+c+"'")
		}
		all = append(all, "("+strings.Join(alts, " | ")+")")
		exact = append(exact, "'"+w+"'")
	}
	rows, err := p.db.QueryContext(ctx, `
WITH q AS (SELECT to_tsquery('simple', $1) AS q, to_tsquery('simple', $2) AS e)
SELECT kind, id, title, snippet, tags, creator, creator_id, thumb, created_at, popularity,
	(ts_rank('{0.1, 0.15, 0.2, 0.3}', tsv, q.q, 1) + ts_rank('{0.1, 0.15, 0.2, 0.3}', tsv, q.e, 1))
	* (1 + $3::float8 * power(0.5::float8, least(greatest($4::bigint - created_at, 0)::float8 / $5::float8, 60)))
	* (1 + $6::float8 * ln(1 + greatest(popularity, 0)::float8)) AS score,
	count(*) OVER () AS total
FROM search_docs, q
WHERE kind = $7 AND tsv @@ q.q
ORDER BY score DESC, id DESC
LIMIT $8 OFFSET $9`,
		strings.Join(all, " & "), strings.Join(exact, " | "),
		p.rank.FreshnessWeight, q.Now.Unix(), p.rank.HalfLife.Seconds(), p.rank.PopularityWeight,
		string(q.Type), q.Size, (q.Page-1)*q.Size)
	if err != nil {
		return Result{}, p.queryErr(ctx, err)
	}
	defer rows.Close()
	out := Result{Hits: []Hit{}}
	for rows.Next() {
		var h Hit
		var kind, tags string
		var created, total int64
		if err := rows.Scan(&kind, &h.ID, &h.Title, &h.Snippet, &tags, &h.Creator, &h.CreatorID, &h.Thumbnail, &created, &h.Popularity, &h.Score, &total); err != nil {
			return Result{}, p.queryErr(ctx, err)
		}
		h.Type, h.Tags, h.CreatedAt = DocType(kind), strings.Fields(tags), time.Unix(created, 0).UTC()
		out.Total = int(total)
		out.Hits = append(out.Hits, h)
	}
	if err := rows.Err(); err != nil {
		return Result{}, p.queryErr(ctx, err)
	}
	if len(out.Hits) == 0 && q.Page > 1 {
		// Paged past the end: the window count came with no row.
		var n int
		err := p.db.QueryRowContext(ctx, `SELECT count(*) FROM search_docs WHERE kind = $1 AND tsv @@ to_tsquery('simple', $2)`,
			string(q.Type), strings.Join(all, " & ")).Scan(&n)
		if err != nil {
			return Result{}, p.queryErr(ctx, err)
		}
		out.Total = n
	}
	return out, nil
}

func (p *Postgres) queryErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("search: postgres query: %w", err)
}

// typoCandidates returns, for each word long enough to hold a typo, the
// vocabulary words within Fuzziness(word) edits of it (other than itself).
// Candidates come from the trigram index (similarity at least
// trgmThreshold, length within 2) plus an exact lookup of the word's
// transpositions, the one edit trigrams barely see in short words
// ("tuor" and "tour" share one trigram of nine); the edit distance itself
// is checked here.
func (p *Postgres) typoCandidates(ctx context.Context, words []string) (map[string][]string, error) {
	var fuzzy, tw, tv []string
	for _, w := range words {
		if Fuzziness(w) == 0 {
			continue
		}
		fuzzy = append(fuzzy, w)
		rs := []rune(w)
		for i := 0; i+1 < len(rs); i++ {
			if rs[i] == rs[i+1] {
				continue
			}
			v := slices.Clone(rs)
			v[i], v[i+1] = v[i+1], v[i]
			tw, tv = append(tw, w), append(tv, string(v))
		}
	}
	out := map[string][]string{}
	if len(fuzzy) == 0 {
		return out, nil
	}
	tx, err := p.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, p.queryErr(ctx, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT set_config('pg_trgm.similarity_threshold', $1, true)`, trgmThreshold); err != nil {
		return nil, p.queryErr(ctx, err)
	}
	rows, err := tx.QueryContext(ctx, `
SELECT q.w, c.word FROM unnest($1::text[]) AS q(w)
CROSS JOIN LATERAL (SELECT word FROM search_words
	WHERE word % q.w AND length(word) BETWEEN length(q.w) - 2 AND length(q.w) + 2) AS c
UNION
SELECT v.w, s.word FROM unnest($2::text[], $3::text[]) AS v(w, variant) JOIN search_words s ON s.word = v.variant`, fuzzy, tw, tv)
	if err != nil {
		return nil, p.queryErr(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var w, c string
		if err := rows.Scan(&w, &c); err != nil {
			return nil, p.queryErr(ctx, err)
		}
		if c != w && withinEdits(w, c, Fuzziness(w)) {
			out[w] = append(out[w], c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, p.queryErr(ctx, err)
	}
	return out, nil
}

// withinEdits reports whether a and b are at most k edits apart, an edit
// being the insertion, deletion or substitution of a character or the
// transposition of two adjacent ones (optimal string alignment distance:
// what Bleve's fuzzy queries use, so both drivers forgive the same typos).
func withinEdits(a, b string, k int) bool {
	ra, rb := []rune(a), []rune(b)
	if d := len(ra) - len(rb); d > k || -d > k {
		return false
	}
	// Three rows of the dynamic programme: i-2, i-1, i.
	pp := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		best := cur[0]
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], pp[j-2]+1)
			}
			best = min(best, cur[j])
		}
		if best > k {
			return false
		}
		pp, prev, cur = prev, cur, pp
	}
	return prev[len(rb)] <= k
}
