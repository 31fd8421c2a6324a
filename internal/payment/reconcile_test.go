package payment_test

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/payment/testprovider"
)

func driftKinds(r payment.Reconciliation) []string {
	var out []string
	for _, d := range r.Drift {
		out = append(out, d.Kind)
	}
	sort.Strings(out)
	return out
}

func TestReconciliation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, sqliteDB(t), func(_ *payment.Config, tc *testprovider.Config) { tc.Deliver = nil })
	var ids []int64
	for i, pm := range []string{testprovider.CardInstant, testprovider.CardInstant, testprovider.CardVisa, testprovider.CardDeclined, testprovider.CardInstant} {
		r, err := e.tip(alice, fmt.Sprint("k", i), tipReq(int64(1000+i), pm))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, mustID(decodeIntent(t, r).ID))
	}
	rec, err := e.svc.Reconcile(ctx)
	if err != nil || len(rec.Drift) != 0 || rec.Checked != 5 || rec.ProviderTotals["USD"] != 1000+1001+1004 {
		t.Fatalf("clean run: %+v, %v", rec, err)
	}

	// Behind the provider: it settled, no webhook came (delivery off).
	e.settle()
	rec, err = e.svc.Reconcile(ctx)
	if err != nil || len(rec.Drift) != 0 || rec.Healed != 1 {
		t.Fatalf("healing run: %+v, %v", rec, err)
	}
	if got, _ := e.svc.Payment(ctx, alice, ids[2]); got.State != payment.Succeeded {
		t.Fatalf("not healed: %s", got.State)
	}

	// Real drift, injected behind the service's back.
	tpdb := e.tp.DB()
	// 1. The provider reversed a payment we booked as succeeded.
	if _, err := tpdb.Exec(`UPDATE tp_payments SET status = 'failed' WHERE intent_id = ?`, ids[0]); err != nil {
		t.Fatal(err)
	}
	// 2. The provider holds another amount than we booked.
	if _, err := tpdb.Exec(`UPDATE tp_payments SET amount = amount + 1 WHERE intent_id = ?`, ids[1]); err != nil {
		t.Fatal(err)
	}
	// 3. A payment at the provider that Blueprint never made.
	if _, err := tpdb.Exec(`INSERT INTO tp_payments(id, intent_id, amount, currency, payment_method, status, created_at, updated_at)
		VALUES ('tp_pi_stray', 0, 999, 'USD', 'pm_card_visa', 'succeeded', ?, ?)`, e.clock.Now().UnixMilli(), e.clock.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	// 4. A ledger posting for the declined payment (the ledger is
	// append-only, so the only way in is a new transaction).
	tx, _ := e.db.W.Begin()
	if err := e.svc.Ledger().Post(ctx, tx, payment.Posting{Ref: fmt.Sprint("payment:", ids[3]), Kind: "payment", Currency: "USD",
		Entries: []payment.Entry{{Debit: "provider:test:USD", Credit: fmt.Sprintf("creator:%d:USD", carol), Amount: 1003}}}); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	// 5. Our record of a payment lost its provider reference's object.
	if _, err := tpdb.Exec(`DELETE FROM tp_payments WHERE intent_id = ?`, ids[4]); err != nil {
		t.Fatal(err)
	}

	rec, err = e.svc.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{payment.DriftAmount, payment.DriftLedgerUnexpected, payment.DriftMissingAtProvider, payment.DriftState, payment.DriftUnknownLocally}
	sort.Strings(want)
	if got := driftKinds(rec); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("drift %v, want %v\n%+v", got, want, rec.Drift)
	}
	last, err := e.svc.LastReconciliation(ctx)
	if err != nil || last.ID != rec.ID || len(last.Drift) != len(want) {
		t.Fatalf("stored report %+v, %v", last, err)
	}
}
