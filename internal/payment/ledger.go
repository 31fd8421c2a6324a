package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Account types. An asset's balance is debits minus credits; a
// liability's and a revenue account's, credits minus debits.
const (
	Asset     = "asset"
	Liability = "liability"
	Revenue   = "revenue"
)

// Account codes. Each account holds one currency.
//
//	provider:<provider>:<CUR>           asset: money the provider holds for the platform
//	creator:<user id>:<CUR>             liability: what the platform owes a creator
//	fees:<CUR>                          revenue: the platform's fees
//	payouts_in_transit:<provider>:<CUR> liability: payouts sent, not yet confirmed paid
func providerAccount(provider, cur string) string { return "provider:" + provider + ":" + cur }
func creatorAccount(id int64, cur string) string {
	return "creator:" + strconv.FormatInt(id, 10) + ":" + cur
}
func feesAccount(cur string) string { return "fees:" + cur }
func transitAccount(provider, cur string) string {
	return "payouts_in_transit:" + provider + ":" + cur
}

// accountType derives an account's type and owner from its code.
func accountType(code string) (typ string, owner int64, err error) {
	parts := strings.Split(code, ":")
	switch {
	case len(parts) == 3 && parts[0] == "provider":
		return Asset, 0, nil
	case len(parts) == 3 && parts[0] == "creator":
		id, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || id <= 0 {
			return "", 0, fmt.Errorf("payment: ledger account %q: bad owner", code)
		}
		return Liability, id, nil
	case len(parts) == 2 && parts[0] == "fees":
		return Revenue, 0, nil
	case len(parts) == 3 && parts[0] == "payouts_in_transit":
		return Liability, 0, nil
	}
	return "", 0, fmt.Errorf("payment: unknown ledger account %q", code)
}

// Entry moves Amount (minor units, > 0) from the Debit account to the
// Credit account, both named by code.
type Entry struct {
	Debit, Credit string
	Amount        int64
}

// Posting is one ledger transaction: entries in one currency that are
// written together, at most once per Ref.
type Posting struct {
	Ref      string // "payment:<id>", "payout:<id>", ...
	Kind     string
	Currency string
	Entries  []Entry
}

// ErrAlreadyPosted is returned by Post when a transaction with the same Ref
// exists: each business event posts once.
var ErrAlreadyPosted = errors.New("payment: ledger transaction already posted")

// Ledger writes and reads the double-entry ledger.
type Ledger struct {
	db  *DB
	now func() time.Time
}

// NewLedger returns the ledger on db (for tools and tests; the service
// makes its own). now may be nil.
func NewLedger(db *DB, now func() time.Time) *Ledger {
	if now == nil {
		now = time.Now
	}
	return &Ledger{db: db, now: now}
}

// Post writes p inside tx. The schema makes every entry balanced and
// currency-consistent and refuses a second transaction with the same Ref.
func (l *Ledger) Post(ctx context.Context, tx *sql.Tx, p Posting) error {
	if len(p.Entries) == 0 {
		return errors.New("payment: ledger posting without entries")
	}
	now := ms(l.now())
	var txID int64
	err := l.db.queryRow(ctx, tx, `INSERT INTO ledger_transactions(ref, kind, created_at) VALUES (?, ?, ?)
		ON CONFLICT (ref) DO NOTHING RETURNING id`, p.Ref, p.Kind, now).Scan(&txID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrAlreadyPosted, p.Ref)
	}
	if err != nil {
		return fmt.Errorf("payment: ledger transaction %s: %w", p.Ref, err)
	}
	ids := map[string]int64{}
	for _, e := range p.Entries {
		for _, code := range []string{e.Debit, e.Credit} {
			if _, ok := ids[code]; ok {
				continue
			}
			id, err := l.account(ctx, tx, code, p.Currency)
			if err != nil {
				return err
			}
			ids[code] = id
		}
		if _, err := l.db.exec(ctx, tx, `INSERT INTO ledger_entries(tx_id, debit_account, credit_account, currency, amount) VALUES (?, ?, ?, ?, ?)`,
			txID, ids[e.Debit], ids[e.Credit], p.Currency, e.Amount); err != nil {
			return fmt.Errorf("payment: ledger entry of %s: %w", p.Ref, err)
		}
	}
	return nil
}

// account returns the ID of the account with code, creating it. IDs are not
// cached: an account created in a transaction that rolls back must not be
// remembered.
func (l *Ledger) account(ctx context.Context, tx *sql.Tx, code, cur string) (int64, error) {
	var id int64
	err := l.db.queryRow(ctx, tx, `SELECT id FROM ledger_accounts WHERE code = ?`, code).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("payment: ledger account %s: %w", code, err)
	}
	typ, owner, err := accountType(code)
	if err != nil {
		return 0, err
	}
	var ownerArg any
	if owner != 0 {
		ownerArg = owner
	}
	if _, err := l.db.exec(ctx, tx, `INSERT INTO ledger_accounts(code, type, currency, owner_id, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (code) DO NOTHING`, code, typ, cur, ownerArg, ms(l.now())); err != nil {
		return 0, fmt.Errorf("payment: ledger account %s: %w", code, err)
	}
	if err := l.db.queryRow(ctx, tx, `SELECT id FROM ledger_accounts WHERE code = ?`, code).Scan(&id); err != nil {
		return 0, fmt.Errorf("payment: ledger account %s: %w", code, err)
	}
	return id, nil
}

// AccountBalance is one account's totals.
type AccountBalance struct {
	Code     string `json:"account"`
	Type     string `json:"type"`
	Currency string `json:"currency"`
	Debits   int64  `json:"debits"`
	Credits  int64  `json:"credits"`
	// Balance is on the account's normal side: debits - credits for
	// assets, credits - debits otherwise.
	Balance int64 `json:"balance"`
}

func (b *AccountBalance) settle() {
	if b.Type == Asset {
		b.Balance = b.Debits - b.Credits
	} else {
		b.Balance = b.Credits - b.Debits
	}
}

const balanceColumns = `a.code, a.type, a.currency,
	COALESCE((SELECT SUM(e.amount) FROM ledger_entries e WHERE e.debit_account = a.id), 0),
	COALESCE((SELECT SUM(e.amount) FROM ledger_entries e WHERE e.credit_account = a.id), 0)`

// Balance returns the balance of the account with code, summed from its
// entries (zero for an account that does not exist yet). Pass tx to read
// inside a transaction, nil to read from the readers.
func (l *Ledger) Balance(ctx context.Context, tx *sql.Tx, code string) (AccountBalance, error) {
	var b AccountBalance
	err := l.db.queryRow(ctx, tx, `SELECT `+balanceColumns+` FROM ledger_accounts a WHERE a.code = ?`, code).
		Scan(&b.Code, &b.Type, &b.Currency, &b.Debits, &b.Credits)
	if errors.Is(err, sql.ErrNoRows) {
		typ, _, terr := accountType(code)
		if terr != nil {
			return b, terr
		}
		return AccountBalance{Code: code, Type: typ, Currency: code[strings.LastIndexByte(code, ':')+1:]}, nil
	}
	if err != nil {
		return b, fmt.Errorf("payment: balance of %s: %w", code, err)
	}
	b.settle()
	return b, nil
}

// Balances returns every account's balance, or only those owned by owner
// when owner is not 0, ordered by code.
func (l *Ledger) Balances(ctx context.Context, owner int64) ([]AccountBalance, error) {
	q := `SELECT ` + balanceColumns + ` FROM ledger_accounts a`
	var args []any
	if owner != 0 {
		q += ` WHERE a.owner_id = ?`
		args = append(args, owner)
	}
	rows, err := l.db.query(ctx, nil, q+` ORDER BY a.code`, args...)
	if err != nil {
		return nil, fmt.Errorf("payment: balances: %w", err)
	}
	defer rows.Close()
	var out []AccountBalance
	for rows.Next() {
		var b AccountBalance
		if err := rows.Scan(&b.Code, &b.Type, &b.Currency, &b.Debits, &b.Credits); err != nil {
			return nil, fmt.Errorf("payment: balances: %w", err)
		}
		b.settle()
		out = append(out, b)
	}
	return out, rows.Err()
}

// TrialBalance is the result of Verify.
type TrialBalance struct {
	// Debits and Credits are the totals per currency over all postings;
	// they are equal in a sound ledger.
	Debits, Credits map[string]int64
	Transactions    int64
	Entries         int64
	// Problems lists every broken invariant; empty in a sound ledger.
	Problems []string
}

// Verify checks the ledger's invariants from the entries themselves:
// total debits equal total credits in every currency, both accounts of an
// entry carry its currency, every transaction has entries, and no account
// is of an unknown kind. It reads through the database views, so it also
// proves the views agree with the tables.
func (l *Ledger) Verify(ctx context.Context) (TrialBalance, error) {
	tb := TrialBalance{Debits: map[string]int64{}, Credits: map[string]int64{}}
	rows, err := l.db.query(ctx, nil, `SELECT currency, COALESCE(SUM(debit), 0), COALESCE(SUM(credit), 0) FROM ledger_postings GROUP BY currency`)
	if err != nil {
		return tb, fmt.Errorf("payment: verify: %w", err)
	}
	for rows.Next() {
		var cur string
		var d, c int64
		if err := rows.Scan(&cur, &d, &c); err != nil {
			rows.Close()
			return tb, fmt.Errorf("payment: verify: %w", err)
		}
		tb.Debits[cur], tb.Credits[cur] = d, c
		if d != c {
			tb.Problems = append(tb.Problems, fmt.Sprintf("%s: debits %d != credits %d", cur, d, c))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return tb, fmt.Errorf("payment: verify: %w", err)
	}
	checks := []struct {
		what, q string
	}{
		{"entries whose accounts are in another currency", `SELECT COUNT(*) FROM ledger_entries e
			JOIN ledger_accounts d ON d.id = e.debit_account JOIN ledger_accounts c ON c.id = e.credit_account
			WHERE d.currency <> e.currency OR c.currency <> e.currency OR e.amount <= 0 OR e.debit_account = e.credit_account`},
		{"transactions without entries", `SELECT COUNT(*) FROM ledger_transactions t WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.tx_id = t.id)`},
		{"balances view disagreeing with the entries", `SELECT COUNT(*) FROM ledger_balances b WHERE b.debits <>
			COALESCE((SELECT SUM(amount) FROM ledger_entries e WHERE e.debit_account = b.account_id), 0)
			OR b.credits <> COALESCE((SELECT SUM(amount) FROM ledger_entries e WHERE e.credit_account = b.account_id), 0)`},
	}
	for _, c := range checks {
		var n int64
		if err := l.db.queryRow(ctx, nil, c.q).Scan(&n); err != nil {
			return tb, fmt.Errorf("payment: verify: %w", err)
		}
		if n > 0 {
			tb.Problems = append(tb.Problems, fmt.Sprintf("%d %s", n, c.what))
		}
	}
	if err := l.db.queryRow(ctx, nil, `SELECT (SELECT COUNT(*) FROM ledger_transactions), (SELECT COUNT(*) FROM ledger_entries)`).
		Scan(&tb.Transactions, &tb.Entries); err != nil {
		return tb, fmt.Errorf("payment: verify: %w", err)
	}
	return tb, nil
}

// postedAmount returns the total the ledger transaction ref moved (the
// sum of its entries), and whether ref exists.
func (l *Ledger) postedAmount(ctx context.Context, ref string) (int64, bool, error) {
	var n, amount int64
	err := l.db.queryRow(ctx, nil, `SELECT COUNT(DISTINCT t.id), COALESCE(SUM(e.amount), 0)
		FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.tx_id = t.id WHERE t.ref = ?`, ref).Scan(&n, &amount)
	if err != nil {
		return 0, false, fmt.Errorf("payment: ledger %s: %w", ref, err)
	}
	return amount, n > 0, nil
}
