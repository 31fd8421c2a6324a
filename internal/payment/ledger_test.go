package payment_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/blueprint-media/blueprint/internal/payment"
)

// TestLedgerConformance runs the same ledger suite on the embedded SQLite
// store and on a throwaway PostgreSQL.
func TestLedgerConformance(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { ledgerSuite(t, sqliteDB) })
	t.Run("Postgres", func(t *testing.T) {
		pg := startPG(t)
		ledgerSuite(t, pg.open)
	})
}

func ledgerSuite(t *testing.T, open func(*testing.T) *payment.DB) {
	ctx := context.Background()
	post := func(db *payment.DB, l *payment.Ledger, p payment.Posting) error {
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Post(ctx, tx, p); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	tipPosting := func(ref string, amount, fee int64) payment.Posting {
		return payment.Posting{Ref: ref, Kind: "payment", Currency: "USD", Entries: []payment.Entry{
			{Debit: "provider:test:USD", Credit: "creator:7:USD", Amount: amount - fee},
			{Debit: "provider:test:USD", Credit: "fees:USD", Amount: fee},
		}}
	}
	newLedger := func(t *testing.T) (*payment.DB, *payment.Ledger) {
		db := open(t)
		e := newEnv(t, db, nil)
		return db, e.svc.Ledger()
	}

	t.Run("BalancesDerivedFromEntries", func(t *testing.T) {
		db, l := newLedger(t)
		for i := range 10 {
			if err := post(db, l, tipPosting(fmt.Sprint("payment:", i), 1000, 50)); err != nil {
				t.Fatal(err)
			}
		}
		err := post(db, l, payment.Posting{Ref: "payout:1", Kind: "payout", Currency: "USD", Entries: []payment.Entry{
			{Debit: "creator:7:USD", Credit: "payouts_in_transit:test:USD", Amount: 4000}}})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{"provider:test:USD": 10000, "creator:7:USD": 9500 - 4000, "fees:USD": 500, "payouts_in_transit:test:USD": 4000}
		for code, v := range want {
			b, err := l.Balance(ctx, nil, code)
			if err != nil || b.Balance != v {
				t.Errorf("balance %s = %d, %v; want %d", code, b.Balance, err, v)
			}
		}
		owned, err := l.Balances(ctx, 7)
		if err != nil || len(owned) != 1 || owned[0].Balance != 5500 {
			t.Fatalf("creator 7 balances = %+v, %v", owned, err)
		}
		tb, err := l.Verify(ctx)
		if err != nil || len(tb.Problems) > 0 {
			t.Fatalf("verify: %+v, %v", tb, err)
		}
		if tb.Debits["USD"] != 14000 || tb.Credits["USD"] != 14000 || tb.Transactions != 11 || tb.Entries != 21 {
			t.Fatalf("trial balance %+v", tb)
		}
		// The view agrees with the sums.
		var d, c int64
		if err := db.R.QueryRow(`SELECT debits, credits FROM ledger_balances WHERE code = 'creator:7:USD'`).Scan(&d, &c); err != nil || c-d != 5500 {
			t.Fatalf("ledger_balances view: %d %d %v", d, c, err)
		}
	})

	t.Run("PostsOncePerRef", func(t *testing.T) {
		db, l := newLedger(t)
		if err := post(db, l, tipPosting("payment:1", 1000, 50)); err != nil {
			t.Fatal(err)
		}
		err := post(db, l, tipPosting("payment:1", 1000, 50))
		if !errors.Is(err, payment.ErrAlreadyPosted) {
			t.Fatalf("second posting: %v", err)
		}
		if b, _ := l.Balance(ctx, nil, "provider:test:USD"); b.Balance != 1000 {
			t.Fatalf("balance after refused repeat = %d", b.Balance)
		}
	})

	t.Run("DatabaseRefusesBadEntries", func(t *testing.T) {
		db, l := newLedger(t)
		if err := post(db, l, tipPosting("payment:1", 1000, 50)); err != nil {
			t.Fatal(err)
		}
		if err := post(db, l, payment.Posting{Ref: "x:eur", Kind: "payment", Currency: "EUR", Entries: []payment.Entry{
			{Debit: "provider:test:EUR", Credit: "creator:7:EUR", Amount: 100}}}); err != nil {
			t.Fatal(err)
		}
		ids := map[string]int64{}
		rows, err := db.R.Query(`SELECT code, id FROM ledger_accounts`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var code string
			var id int64
			rows.Scan(&code, &id)
			ids[code] = id
		}
		rows.Close()
		var txID int64
		if err := db.R.QueryRow(`SELECT id FROM ledger_transactions WHERE ref = 'payment:1'`).Scan(&txID); err != nil {
			t.Fatal(err)
		}
		q := func(s string) string { return rebind(db, s) }
		// Each statement runs in its own transaction and must fail.
		bad := []struct {
			name string
			sql  string
			args []any
		}{
			{"zero amount", `INSERT INTO ledger_entries(tx_id, debit_account, credit_account, currency, amount) VALUES (?, ?, ?, 'USD', 0)`,
				[]any{txID, ids["provider:test:USD"], ids["creator:7:USD"]}},
			{"negative amount", `INSERT INTO ledger_entries(tx_id, debit_account, credit_account, currency, amount) VALUES (?, ?, ?, 'USD', -5)`,
				[]any{txID, ids["provider:test:USD"], ids["creator:7:USD"]}},
			{"one-sided entry", `INSERT INTO ledger_entries(tx_id, debit_account, currency, amount) VALUES (?, ?, 'USD', 5)`,
				[]any{txID, ids["provider:test:USD"]}},
			{"same account both sides", `INSERT INTO ledger_entries(tx_id, debit_account, credit_account, currency, amount) VALUES (?, ?, ?, 'USD', 5)`,
				[]any{txID, ids["provider:test:USD"], ids["provider:test:USD"]}},
			{"currency of another account", `INSERT INTO ledger_entries(tx_id, debit_account, credit_account, currency, amount) VALUES (?, ?, ?, 'USD', 5)`,
				[]any{txID, ids["provider:test:USD"], ids["creator:7:EUR"]}},
			{"unknown account", `INSERT INTO ledger_entries(tx_id, debit_account, credit_account, currency, amount) VALUES (?, ?, 424242, 'USD', 5)`,
				[]any{txID, ids["provider:test:USD"]}},
			{"unknown transaction", `INSERT INTO ledger_entries(tx_id, debit_account, credit_account, currency, amount) VALUES (424242, ?, ?, 'USD', 5)`,
				[]any{ids["provider:test:USD"], ids["creator:7:USD"]}},
			{"edit an entry", `UPDATE ledger_entries SET amount = amount + 1`, nil},
			{"move an entry", `UPDATE ledger_entries SET credit_account = ?`, []any{ids["fees:USD"]}},
			{"delete an entry", `DELETE FROM ledger_entries`, nil},
			{"delete a transaction", `DELETE FROM ledger_transactions`, nil},
			{"rename a transaction", `UPDATE ledger_transactions SET ref = 'other'`, nil},
			{"change an account's currency", `UPDATE ledger_accounts SET currency = 'EUR'`, nil},
			{"delete an account", `DELETE FROM ledger_accounts`, nil},
			{"duplicate ref", `INSERT INTO ledger_transactions(ref, kind, created_at) VALUES ('payment:1', 'payment', 0)`, nil},
		}
		for _, b := range bad {
			tx, err := db.W.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(q(b.sql), b.args...)
			if err == nil {
				err = tx.Commit()
			} else {
				tx.Rollback()
			}
			if err == nil {
				t.Errorf("%s: the database accepted it", b.name)
			}
		}
		tb, err := l.Verify(ctx)
		if err != nil || len(tb.Problems) > 0 || tb.Debits["USD"] != 1000 || tb.Credits["USD"] != 1000 || tb.Debits["EUR"] != 100 {
			t.Fatalf("after the attempts: %+v, %v", tb, err)
		}
	})

	t.Run("RollbackLeavesNothing", func(t *testing.T) {
		db, l := newLedger(t)
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Post(ctx, tx, tipPosting("payment:9", 1000, 50)); err != nil {
			t.Fatal(err)
		}
		tx.Rollback()
		// An account created in a rolled-back transaction is not
		// remembered: the next posting creates it again.
		if err := post(db, l, payment.Posting{Ref: "payment:10", Kind: "payment", Currency: "USD", Entries: []payment.Entry{
			{Debit: "provider:test:USD", Credit: "creator:8:USD", Amount: 300}}}); err != nil {
			t.Fatal(err)
		}
		if b, _ := l.Balance(ctx, nil, "creator:7:USD"); b.Balance != 0 {
			t.Fatalf("rolled-back posting visible: %d", b.Balance)
		}
		if b, _ := l.Balance(ctx, nil, "creator:8:USD"); b.Balance != 300 {
			t.Fatalf("creator 8 = %d", b.Balance)
		}
	})

	t.Run("ConcurrentPostings", func(t *testing.T) {
		db, l := newLedger(t)
		var wg sync.WaitGroup
		errc := make(chan error, 400)
		for g := range 8 {
			wg.Go(func() {
				for i := range 25 {
					p := payment.Posting{Ref: fmt.Sprintf("payment:%d:%d", g, i), Kind: "payment", Currency: "USD", Entries: []payment.Entry{
						{Debit: "provider:test:USD", Credit: fmt.Sprintf("creator:%d:USD", 100+i%3), Amount: int64(100 + i)},
						{Debit: "provider:test:USD", Credit: "fees:USD", Amount: 5},
					}}
					var err error
					for attempt := 0; attempt < 20; attempt++ {
						if err = post(db, l, p); err == nil || errors.Is(err, payment.ErrAlreadyPosted) {
							break
						}
					}
					if err != nil {
						errc <- err
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		tb, err := l.Verify(ctx)
		if err != nil || len(tb.Problems) > 0 || tb.Transactions != 200 {
			t.Fatalf("verify: %+v, %v", tb, err)
		}
		var sum int64
		for i := range 25 {
			sum += int64(100+i) + 5
		}
		if tb.Debits["USD"] != 8*sum {
			t.Fatalf("debits %d, want %d", tb.Debits["USD"], 8*sum)
		}
	})
}

// TestPostgresSchemaIdempotent applies the PostgreSQL schema twice.
func TestPostgresSchemaIdempotent(t *testing.T) {
	pg := startPG(t)
	db := pg.open(t)
	if err := payment.MigratePostgres(context.Background(), db.W); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.R.QueryRow(`SELECT COUNT(*) FROM pg_trigger WHERE tgname LIKE 'ledger_%'`).Scan(&n); err != nil || n != 6 {
		t.Fatalf("ledger triggers = %d, %v", n, err)
	}
	_ = sql.ErrNoRows
}
