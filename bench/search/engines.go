package main

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/blevesearch/bleve/v2"
	bquery "github.com/blevesearch/bleve/v2/search/query"

	_ "modernc.org/sqlite" // the "sqlite" driver, with FTS5

	"github.com/blueprint-media/blueprint/internal/search"
)

// engine is one search engine under test.
type engine interface {
	name() string
	load(ctx context.Context, docs []search.Doc) error
	// search returns the IDs of the first 10 hits and the total.
	search(ctx context.Context, text string, now time.Time) ([]int64, int, error)
	size(ctx context.Context) (int64, error)
	close() error
}

// indexEngine runs a search.Index driver (Blueprint's own).
type indexEngine struct {
	label string
	idx   search.Index
	sizeF func(ctx context.Context) (int64, error)
}

func (e *indexEngine) name() string { return e.label }

func (e *indexEngine) load(ctx context.Context, docs []search.Doc) error {
	for i := 0; i < len(docs); i += batchSize {
		if err := e.idx.Upsert(ctx, docs[i:min(i+batchSize, len(docs))]...); err != nil {
			return err
		}
	}
	return nil
}

func (e *indexEngine) search(ctx context.Context, text string, now time.Time) ([]int64, int, error) {
	res, err := e.idx.Search(ctx, search.Query{Text: text, Size: 10, Now: now})
	if err != nil {
		return nil, 0, err
	}
	ids := make([]int64, len(res.Hits))
	for i, h := range res.Hits {
		ids[i] = h.ID
	}
	return ids, res.Total, nil
}

func (e *indexEngine) size(ctx context.Context) (int64, error) { return e.sizeF(ctx) }
func (e *indexEngine) close() error                            { return e.idx.Close() }

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// fts5Engine is the peer: SQLite FTS5 (modernc.org/sqlite) with the same
// weighted fields (bm25 weights 3/2/1.5/1 like the Bleve boosts), the
// last word as a prefix query, and the same freshness × popularity blend
// in SQL. FTS5 has no typo tolerance: a misspelled word matches nothing.
type fts5Engine struct {
	db   *sql.DB
	path string
	rank search.Ranking
}

func newFTS5(path string, rank search.Ranking) (*fts5Engine, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	_, err = db.Exec(`
CREATE TABLE meta (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, created_at INTEGER NOT NULL, popularity INTEGER NOT NULL,
	title TEXT NOT NULL, creator TEXT NOT NULL, thumb TEXT NOT NULL);
CREATE VIRTUAL TABLE docs USING fts5(title, tags, creator, description, tokenize = 'unicode61 remove_diacritics 0');`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("fts5: schema: %w", err)
	}
	return &fts5Engine{db: db, path: path, rank: rank}, nil
}

func (e *fts5Engine) name() string { return "sqlite-fts5" }

func (e *fts5Engine) load(ctx context.Context, docs []search.Doc) error {
	for i := 0; i < len(docs); i += batchSize {
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		m, err := tx.PrepareContext(ctx, `INSERT INTO meta(id, kind, created_at, popularity, title, creator, thumb) VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			tx.Rollback()
			return err
		}
		f, err := tx.PrepareContext(ctx, `INSERT INTO docs(rowid, title, tags, creator, description) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			tx.Rollback()
			return err
		}
		for _, d := range docs[i:min(i+batchSize, len(docs))] {
			if _, err := m.ExecContext(ctx, d.ID, string(d.Type), d.CreatedAt.Unix(), d.Popularity, d.Title, d.Creator, d.Thumbnail); err != nil {
				tx.Rollback()
				return err
			}
			if _, err := f.ExecContext(ctx, d.ID, search.Normalize(d.Title), search.Normalize(strings.Join(d.Tags, " ")),
				search.Normalize(d.Creator), search.Normalize(d.Description)); err != nil {
				tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

func (e *fts5Engine) search(ctx context.Context, text string, now time.Time) ([]int64, int, error) {
	words := search.Words(text)
	if len(words) == 0 {
		return nil, 0, nil
	}
	prefix := !strings.HasSuffix(text, " ") && len([]rune(words[len(words)-1])) >= search.MinPrefixRunes
	terms := make([]string, len(words))
	for i, w := range words {
		terms[i] = `"` + w + `"` // letters and digits only: safe inside quotes
		if i == len(words)-1 && prefix {
			// As in Blueprint's drivers: the word being typed also
			// matches beginnings of title, tag and creator words.
			terms[i] = `(` + terms[i] + ` OR {title tags creator} : "` + w + `"*)`
		}
	}
	// bm25() is negative, better matches more negative: ascending order.
	// bm25() cannot be used next to a window function, hence the CTE.
	rows, err := e.db.QueryContext(ctx, `
WITH hits AS MATERIALIZED (SELECT rowid AS id, bm25(docs, 3.0, 2.0, 1.5, 1.0) AS rel FROM docs WHERE docs MATCH ?)
SELECT m.id, count(*) OVER () FROM hits JOIN meta m ON m.id = hits.id
WHERE m.kind = 'video'
ORDER BY hits.rel
	* (1 + ? * pow(0.5, min(max(? - m.created_at, 0) * 1.0 / ?, 60)))
	* (1 + ? * ln(1 + max(m.popularity, 0))), m.id DESC
LIMIT 10`, strings.Join(terms, " AND "), e.rank.FreshnessWeight, now.Unix(), e.rank.HalfLife.Seconds(), e.rank.PopularityWeight)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var ids []int64
	total := 0
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id, &total); err != nil {
			return nil, 0, err
		}
		ids = append(ids, id)
	}
	return ids, total, rows.Err()
}

func (e *fts5Engine) size(context.Context) (int64, error) {
	var n int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(e.path + suffix); err == nil {
			n += fi.Size()
		}
	}
	return n, nil
}

func (e *fts5Engine) close() error { return e.db.Close() }

// plainBleve is the baseline: a bare Bleve index as a user of the library
// would set it up from its documentation, with nothing of Blueprint's
// driver. The default index mapping (dynamic fields, the "standard"
// analyzer: Unicode word segmentation, lower-casing, English stop words;
// every text field also in the composite "_all" field), the same
// documents (title, description, tags, creator, created, popularity) in
// batches of the same size, and a match query over "_all" with
// fuzziness 1 and the AND operator (every word must match, as in
// Blueprint's drivers), ordered by Bleve's score. It has no prefix
// matching and no freshness or popularity in the ranking.
type plainBleve struct {
	idx  bleve.Index
	path string
}

func newPlainBleve(path string) (*plainBleve, error) {
	idx, err := bleve.New(path, bleve.NewIndexMapping())
	if err != nil {
		return nil, fmt.Errorf("bleve-plain: %w", err)
	}
	return &plainBleve{idx: idx, path: path}, nil
}

func (e *plainBleve) name() string { return "bleve-plain" }

type plainDoc struct {
	Title       string    `json:"title"`
	Description string    `json:"description"`
	Tags        []string  `json:"tags"`
	Creator     string    `json:"creator"`
	Created     time.Time `json:"created"`
	Popularity  int64     `json:"popularity"`
}

func (e *plainBleve) load(ctx context.Context, docs []search.Doc) error {
	for i := 0; i < len(docs); i += batchSize {
		b := e.idx.NewBatch()
		for _, d := range docs[i:min(i+batchSize, len(docs))] {
			if err := b.Index(strconv.FormatInt(d.ID, 10), plainDoc{d.Title, d.Description, d.Tags, d.Creator, d.CreatedAt, d.Popularity}); err != nil {
				return err
			}
		}
		if err := e.idx.Batch(b); err != nil {
			return err
		}
	}
	return nil
}

func (e *plainBleve) search(ctx context.Context, text string, _ time.Time) ([]int64, int, error) {
	q := bleve.NewMatchQuery(text)
	q.SetFuzziness(1)
	q.SetOperator(bquery.MatchQueryOperatorAnd)
	res, err := e.idx.SearchInContext(ctx, bleve.NewSearchRequestOptions(q, 10, 0, false))
	if err != nil {
		return nil, 0, err
	}
	ids := make([]int64, len(res.Hits))
	for i, h := range res.Hits {
		ids[i], _ = strconv.ParseInt(h.ID, 10, 64)
	}
	return ids, int(res.Total), nil
}

func (e *plainBleve) size(context.Context) (int64, error) { return dirSize(e.path) }
func (e *plainBleve) close() error                        { return e.idx.Close() }
