package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// TestPaymentLedgerOnPlatformPostgres: the payment package's SQL, in both
// of its dialects, runs on the platform store's PostgreSQL (migration
// 0005 and the rewriting connection): postings, the once-per-ref rule,
// the append-only triggers and the trial balance.
func TestPaymentLedgerOnPlatformPostgres(t *testing.T) {
	ctx := context.Background()
	db, err := sqlstore.OpenPostgres(ctx, testenv.StartPostgres(t, false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, d := range []payment.Dialect{payment.SQLite, payment.Postgres} {
		pdb := &payment.DB{W: db.W, R: db.R, Dialect: d, Outbox: outbox.Insert}
		l := payment.NewLedger(pdb, nil)
		ref := "payment:" + d.String()
		post := func() error {
			return db.Tx(ctx, func(tx *sql.Tx) error {
				return l.Post(ctx, tx, payment.Posting{Ref: ref, Kind: "tip", Currency: "EUR", Entries: []payment.Entry{
					{Debit: "provider:test:EUR", Credit: "creator:42:EUR", Amount: 950},
					{Debit: "provider:test:EUR", Credit: "fees:EUR", Amount: 50},
				}})
			})
		}
		if err := post(); err != nil {
			t.Fatalf("%s: post: %v", d, err)
		}
		if err := post(); !errors.Is(err, payment.ErrAlreadyPosted) {
			t.Fatalf("%s: second post: %v, want ErrAlreadyPosted", d, err)
		}
		tb, err := l.Verify(ctx)
		if err != nil || len(tb.Problems) > 0 || tb.Transactions != int64(i+1) || tb.Debits["EUR"] != int64(1000*(i+1)) {
			t.Fatalf("%s: trial balance %+v, %v", d, tb, err)
		}
		bal, err := l.Balance(ctx, nil, "creator:42:EUR")
		if err != nil || bal.Balance != int64(950*(i+1)) {
			t.Fatalf("%s: creator balance %+v, %v", d, bal, err)
		}
		pdb.Close()
	}
	if _, err := db.W.ExecContext(ctx, `DELETE FROM ledger_entries`); err == nil {
		t.Fatal("the ledger took a DELETE")
	}
}
