package search

import "context"

// Index is a search index. Every driver passes the conformance suite in
// package searchtest.
//
// Upsert replaces documents by (Type, ID) and is idempotent: applying the
// same document twice leaves the index as applying it once, so an event
// applied again after a crash does no harm. Delete removes documents;
// deleting one that is absent is not an error. Search validates q (an
// errs.Invalid error names the bad parameter) and returns one page of hits
// ranked by Ranking.Blend of the driver's text relevance: every query word
// must match the title, tags, creator name or description, exactly or
// within Fuzziness(word) edits; the last word also matches as a prefix
// while it is being typed. A change is visible to Search when Upsert or
// Delete returns.
type Index interface {
	Upsert(ctx context.Context, docs ...Doc) error
	Delete(ctx context.Context, typ DocType, ids ...int64) error
	Search(ctx context.Context, q Query) (Result, error)
	// Count returns the number of documents.
	Count(ctx context.Context) (int64, error)
	// Driver names the driver ("bleve", "postgres").
	Driver() string
	Close() error
}
